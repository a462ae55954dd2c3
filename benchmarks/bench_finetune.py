"""Seconds for 100 fine-tuning (FT) steps at T = 1 and T = 8 real crops (not a test).

    python -m benchmarks.bench_finetune --config warp [--steps 100] [--measure-steps N]

FT as the app runs it: ``training.finetune.run_finetune`` with the paper's L_CNT (VGG16 +
FaceNet) and a discriminator of the same config (random weights: speed does not depend on
their values), ``FinetuneConfig.for_model`` defaults (the app's). The T crops come from a
real dev clip. One warm-up step is excluded (first-call allocation). With ``--measure-steps N < --steps`` only N
steps are timed and the seconds for ``--steps`` are extrapolated linearly (and marked so in the
JSON): the paper model needs many minutes per 100 steps on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import DEFAULT_DATA, build_model, load_average, write_result
from talking_heads.images import image_to_tensor
from talking_heads.landmarks.align import crop_transform, smooth_transforms
from talking_heads.landmarks.detector import get_detector
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.models import ProjectionDiscriminator
from talking_heads.training.config import FinetuneConfig
from talking_heads.training.finetune import finetune_amp, finetune_overlap, run_finetune
from talking_heads.video import iter_frames

CLIP = "clips/dpe__s.mp4"  # dev split, 256x256


def real_crops(path: Path, count: int, size: int) -> tuple[torch.Tensor, ...]:
    """``count`` crops x, landmark images y and points (T, 68, 2), spread over the clip's
    first 64 frames."""
    detector = get_detector("dlib")
    frames = list(iter_frames(path, max_frames=64))
    picked = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    points = [detector.detect(f).points for f in picked]
    transforms = smooth_transforms([crop_transform(p, size) for p in points])
    x = np.stack([t.warp_image(f) for t, f in zip(transforms, picked)])
    in_crop = np.stack([t.points_to_crop(p) for t, p in zip(transforms, points)])
    y = np.stack([rasterize(p, size) for p in in_crop])
    return (image_to_tensor(x), image_to_tensor(y),  # (T, 3, S, S) each
            torch.from_numpy(in_crop.astype(np.float32)))


def time_finetune(model, discriminator, x, y, points, steps: int,
                  config) -> tuple[float, list[float]]:
    """Wall seconds of ``steps`` FT steps (after a one-step warm-up run, which also loads
    L_CNT's networks as the app does) and each step's seconds (from the progress callback,
    which ``run_finetune`` calls after every step)."""
    run_finetune(model, x, y, 1, discriminator=discriminator, points=points, config=config)
    marks = [time.perf_counter()]
    result = run_finetune(model, x, y, steps, discriminator=discriminator,
                          points=points, config=config,
                          progress=lambda fraction, message: marks.append(time.perf_counter()))
    seconds = time.perf_counter() - marks[0]
    assert result.steps == steps and not result.content_only
    return seconds, list(np.diff(marks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="warp", help="ModelConfig preset (random weights)")
    parser.add_argument("--checkpoint", default=None, help="trained weights instead")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--measure-steps", type=int, default=None,
                        help="time this many steps and extrapolate to --steps")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--overlap", choices=["auto", "on", "off"], default="auto",
                        help="FinetuneConfig.overlap: the step's parts on two threads "
                             "(auto: the app's choice)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = load_average()
    model = build_model(args.config, args.checkpoint)
    torch.manual_seed(0)
    discriminator = ProjectionDiscriminator(model.config, num_videos=1).eval()
    config = FinetuneConfig.for_model(model.config)  # what the app uses for this design
    if args.overlap != "auto":
        config = dataclasses.replace(config, overlap=args.overlap == "on")
    measured = args.measure_steps or args.steps
    seconds, steps_median = {}, {}
    for t in args.shots:
        x, y, points = real_crops(args.data / CLIP, t, model.config.image_size)
        seconds[t], per_step = time_finetune(model, discriminator, x, y, points, measured,
                                             config)
        steps_median[t] = float(np.median(per_step))
    write_result(args.out, {
        "benchmark": "finetune", "config": model.config.name,
        "weights": args.checkpoint or "random init", "steps": args.steps,
        "measured_steps": measured, "extrapolated": measured != args.steps,
        "finetune_config": config.to_dict(),
        "amp_resolved": finetune_amp(config.amp, torch.device("cpu")),
        "overlap_resolved": finetune_overlap(config.overlap, torch.device("cpu")),
        "seconds_per_step": {f"T{t}": round(s / measured, 3) for t, s in seconds.items()},
        "seconds_for_steps": {f"T{t}": round(s / measured * args.steps, 1)
                              for t, s in seconds.items()},
        "median_step_seconds": {f"T{t}": round(s, 3) for t, s in steps_median.items()},
        "load_average_start": load_start})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
