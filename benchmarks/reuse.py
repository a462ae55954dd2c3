"""Adapt once, drive many times: seconds of a first request (detect + FT + render) against a
second motion on the kept FT avatar (render only), as the Space does within one session
(run by hand, not a test).

    python benchmarks/reuse.py [--photo examples/mona_lisa.jpg] [--steps 100]
                               [--first talking] [--second nodding] [--threads 1] [--out F]

Weights are resolved as the app does. Both requests render a whole preset, pasted back with
the label, into an mp4. Wall and CPU seconds (this process) are both recorded, since the
machine may be shared; with ``--threads 1`` the CPU seconds are what an idle core would take.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import PROJECT_ROOT, load_average, write_result  # noqa: E402


def _timed(run):
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=PROJECT_ROOT / "examples" / "mona_lisa.jpg")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--first", default="talking")
    parser.add_argument("--second", default="nodding")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from talking_heads.faces import load_photo
    from talking_heads.options import AnimateOptions
    from talking_heads.pipeline import Animator, driving_from_preset

    animator = Animator.from_environment("cpu")
    photo = load_photo(args.photo)
    options = AnimateOptions(mode="ft", steps=args.steps)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as folder:
        first_driving = driving_from_preset(args.first)
        adapted, adapt_wall, adapt_cpu = _timed(
            lambda: animator.adapt([photo], "ft", args.steps))
        first, render_wall, render_cpu = _timed(lambda: animator.drive(
            adapted.avatar, first_driving, Path(folder) / "first.mp4", options, adapted=adapted))
        second_driving = driving_from_preset(args.second)
        second, second_wall, second_cpu = _timed(lambda: animator.drive(
            adapted.avatar, second_driving, Path(folder) / "second.mp4", options))
    write_result(args.out, {
        "benchmark": "reuse", "photo": args.photo.name, "weights": animator.weights_label,
        "model": animator.model.config.name, "ft_steps": adapted.avatar.info.get("steps"),
        "torch_threads": torch.get_num_threads(),
        "first_request": {"preset": args.first, "frames": first.frames,
                          "wall_s": round(adapt_wall + render_wall, 2),
                          "cpu_s": round(adapt_cpu + render_cpu, 2),
                          "adapt_wall_s": adapt_wall, "render_wall_s": render_wall},
        "second_motion_reused": {"preset": args.second, "frames": second.frames,
                                 "wall_s": second_wall, "cpu_s": second_cpu},
        "load_average_before": load_before,
    })


if __name__ == "__main__":
    main()
