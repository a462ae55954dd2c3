"""Export a training run's weights into a bundled checkpoint folder (safetensors + JSON).

    python scripts/export_checkpoint.py runs/cpu/best checkpoints/cpu [--fp16]

Copies ``config.json`` and ``training.json`` and re-writes ``model.safetensors`` (E, G) and
``discriminator.safetensors`` (V, w0, b; used by fine-tuning), optionally as float16 to halve
the download. The loaders copy tensors into float32 parameters, so fp16 files load unchanged;
``--check`` reports how far the fp16 generator's output moves from the fp32 one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FILES = ("model.safetensors", "discriminator.safetensors")


def export(source: Path, target: Path, fp16: bool) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "training.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    for name in FILES:
        if not (source / name).is_file():
            continue
        state = load_file(str(source / name))
        if fp16:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_file({k: v.contiguous() for k, v in state.items()}, str(target / name),
                  metadata={"format": "pt"})


def output_change(source: Path, target: Path) -> float:
    """Max |fp32 - exported| generator output (in [-1, 1] units) on a fixed random input."""
    from talking_heads.models import TalkingHeadModel

    reference, exported = (TalkingHeadModel.from_pretrained(p).eval() for p in (source, target))
    size = reference.config.image_size
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 2, 3, size, size, generator=generator) * 2 - 1
    landmarks = torch.rand(1, 2, 3, size, size, generator=generator) * 2 - 1
    points = size * (0.3 + 0.4 * torch.rand(1, 2, 68, 2, generator=generator))  # (1, K, 68, 2)
    with torch.no_grad():
        outputs = [model.reenact(frames, landmarks, points, landmarks[:, 0], points[:, 1])[1]
                   for model in (reference, exported)]
    return float((outputs[0] - outputs[1]).abs().max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="exported run folder, e.g. runs/cpu/best")
    parser.add_argument("target", type=Path, help="checkpoint folder, e.g. checkpoints/cpu")
    parser.add_argument("--fp16", action="store_true", help="store float16 tensors")
    parser.add_argument("--check", action="store_true", help="report the output change")
    args = parser.parse_args(argv)
    export(args.source, args.target, args.fp16)
    if args.check:
        print(f"max |output change| = {output_change(args.source, args.target):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
