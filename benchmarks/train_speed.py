"""Meta-learning steps per second for a few settings (not a test; run by hand).

    python benchmarks/train_speed.py --data preprocessed --config cpu --steps 6 \
        --variant batch=2,k=4 --variant batch=2,k=8 --variant batch=1,k=4,d_steps=1

Each variant builds a fresh trainer on the real preprocessed data (content loss as configured),
runs one warm-up step and then times ``--steps`` steps of ``MetaTrainer.train_step`` (no
sampling, evaluation or checkpoints). Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from talking_heads.training import distributed
from talking_heads.training.config import TrainConfig
from talking_heads.training.episodes import EpisodeStream
from talking_heads.training.meta_train import MetaTrainer, open_datasets

KEYS = {"batch": "batch_size", "k": "k", "d_steps": "d_steps", "content_size": "content_size",
        "face": "content_face", "amp": "amp", "threads": "threads", "workers": "num_workers"}


def _variant(base: TrainConfig, text: str) -> TrainConfig:
    values = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        field = KEYS[key]
        if field == "content_face":
            values[field] = value.lower() in ("1", "true", "yes")
        elif field == "amp":
            values[field] = value
        elif field == "content_size" and value == "none":
            values[field] = None
        else:
            values[field] = int(value)
    return dataclasses.replace(base, **values)


DEFAULT_THREADS = torch.get_num_threads()


def measure(cfg: TrainConfig, data: Path, steps: int) -> dict:
    info = distributed.setup("cpu")
    torch.set_num_threads(cfg.threads or DEFAULT_THREADS)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = MetaTrainer(cfg, *open_datasets(data, cfg), Path(run_dir), info)
        stream = EpisodeStream(trainer.train_set, cfg, info)
        trainer.train_step(next(stream))  # warm-up
        batches = [next(stream) for _ in range(steps)]  # data loading is not what we time
        start = time.perf_counter()
        for batch in batches:
            losses = trainer.train_step(batch)
        seconds = (time.perf_counter() - start) / steps
        stream.close()
    return {"batch": cfg.batch_size, "k": cfg.k, "d_steps": cfg.d_steps,
            "content_size": cfg.content_size, "face": cfg.content_face, "amp": cfg.amp,
            "threads": torch.get_num_threads(), "s_per_step": round(seconds, 3),
            "steps_per_s": round(1.0 / seconds, 3),
            "target_frames_per_s": round(cfg.batch_size / seconds, 3),
            "generator_loss": round(losses.generator, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variant", action="append", default=[],
                        help="comma-separated overrides, e.g. batch=1,k=8,d_steps=1,face=0")
    args = parser.parse_args()
    base = TrainConfig.preset(args.config)
    for text in args.variant or [""]:
        result = measure(_variant(base, text), args.data, args.steps)
        print(json.dumps({"variant": text or "preset", **result}), flush=True)


if __name__ == "__main__":
    main()
