"""End-to-end seconds to animate a photo with a 10 s driving clip (not a test).

    python -m benchmarks.bench_end_to_end --config cpu [--mode ff] [--seconds 10]

The app's path (``pipeline.Animator``): photo detection + crop, FF (or FT) adaptation, the
driving clip's landmarks (decode + dlib per frame), relative motion, G in batches of 8, paste
back into the photo, H.264 + AAC encoding. The driving clip is a real 30 fps clip cut to
``--seconds``. Per-stage seconds come from the pipeline's own ``Timings``; driving-landmark
extraction is timed separately and included in the total.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.harness import DEFAULT_DATA, build_model, load_average, write_result
from talking_heads.landmarks.detector import get_detector
from talking_heads.pipeline import AnimateOptions, Animator, driving_from_video, load_photo
from talking_heads.weights import WeightsSource

DRIVING_CLIP = "clips/styletalk__happyenglish_clip2.mp4"  # dev split, 13 s at 30 fps
PHOTO_PERSON = "photos/johns/John_Simm"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu", help="ModelConfig preset (random weights)")
    parser.add_argument("--checkpoint", default=None, help="trained weights instead")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mode", choices=["ff", "ft"], default="ff")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = load_average()
    model = build_model(args.config, args.checkpoint)
    source = WeightsSource("bundled" if args.checkpoint else "untrained",
                           Path(args.checkpoint) if args.checkpoint else None)
    animator = Animator(model, source, detector=get_detector("dlib"))
    photo = load_photo(sorted((args.data / PHOTO_PERSON).glob("*.jpg"))[0])
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        driving = driving_from_video(args.data / DRIVING_CLIP, animator.detector, args.seconds)
        driving_seconds = time.perf_counter() - start
        result = animator.animate([photo], driving, Path(folder) / "out.mp4",
                                  AnimateOptions(mode=args.mode))
        total = time.perf_counter() - start
    t = result.timings
    write_result(args.out, {
        "benchmark": "end_to_end", "config": model.config.name, "mode": args.mode,
        "weights": args.checkpoint or "random init", "clip_seconds": args.seconds,
        "frames": result.frames, "fps": result.fps, "seconds_total": round(total, 2),
        "seconds": {"driving_landmarks": round(driving_seconds, 2),
                    "photo_detect": round(t.detect, 2), "adapt": round(t.adapt, 2),
                    "render": round(t.render, 2), "encode": round(t.encode, 2)},
        "load_average_start": load_start})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
