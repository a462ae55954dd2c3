"""End-to-end seconds and peak memory of the animation pipeline (run by hand, not a test).

    python benchmarks/animate.py [--preset talking] [--photo examples/astronaut.jpg]
                                 [--modes ff ft] [--steps 100] [--threads 0] [--out FILE.json]

Each mode runs in a fresh Python process (so that its peak resident memory is its own):
weights are resolved as the app does (Hub -> checkpoints/ -> untrained), one photo is animated
with a whole preset (about 10 s), and the process reports

- ``request_s``: ``Animator.animate`` wall time (what one app request costs: detect, adapt,
  render, encode), with the per-stage split,
- ``process_s``: the whole process, imports and weight loading included (what the CLI costs),
- ``peak_rss_mib``: the process's peak resident memory (``ru_maxrss``),
- the load average before the run, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_one(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    sys.path.insert(0, str(PROJECT_ROOT))
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from talking_heads.pipeline import (AnimateOptions, Animator, driving_from_preset,
                                        load_photo)

    load_before = os.getloadavg()[0]
    animator = Animator.from_environment("cpu")
    photo = load_photo(args.photo)
    driving = driving_from_preset(args.preset)
    options = AnimateOptions(mode=args.mode, steps=args.steps)
    with tempfile.TemporaryDirectory() as folder:
        result = animator.animate([photo], driving, Path(folder) / "out.mp4", options)
    t = result.timings
    return {
        "mode": args.mode, "steps": args.steps if args.mode == "ft" else 0,
        "preset": args.preset, "frames": result.frames, "fps": result.fps,
        "seconds_of_video": round(result.frames / result.fps, 2),
        "weights": result.weights_label, "model": animator.model.config.name,
        "image_size": animator.model.config.image_size,
        "torch_threads": torch.get_num_threads(),
        "request_s": round(t.total, 2),
        "stages_s": {"detect": round(t.detect, 2), "adapt": round(t.adapt, 2),
                     "render": round(t.render, 2), "encode": round(t.encode, 2)},
        "process_s": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average_before": round(load_before, 2),
        "notes": list(result.notes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="talking")
    parser.add_argument("--photo", type=Path, default=PROJECT_ROOT / "examples" / "astronaut.jpg")
    parser.add_argument("--modes", nargs="+", default=["ff", "ft"], choices=["ff", "ft"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # internal: one mode, this process
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(run_one(args)))
        return 0
    results = []
    for mode in args.modes:
        command = [sys.executable, __file__, "--mode", mode, "--preset", args.preset,
                   "--photo", str(args.photo), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
