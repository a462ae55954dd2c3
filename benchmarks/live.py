"""Live driving speed: server-side frames per second and latency of ``LiveDriver.step``
(track the landmarks near the previous box, relative motion against the first frame, render
one frame, label it), on the frames of a real clip standing in for a webcam (run by hand).

    python benchmarks/live.py [--clip clips/lipnet__swiz3n.mpg] [--photo examples/mona_lisa.jpg]
                              [--frames 150] [--threads 2] [--out FILE.json]

Weights are resolved as the app does (``checkpoints/DEFAULT``). The clip is decoded first,
scaled to at most 640 px (a webcam frame), so decoding is not timed; the first 10 frames warm
up and are not counted. Latency here is the server's time per frame; the browser adds the
round trip and Gradio's ``stream_every`` interval (``app.LIVE_EVERY_S``).

On a shared machine wall time measures the other jobs as much as this one, so each frame's
CPU time in this thread is recorded too: with ``--threads 1`` every kernel (dlib, torch) runs
in the calling thread, and ``cpu_ms`` is what the frame costs one otherwise idle core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import DEFAULT_DATA, PROJECT_ROOT, load_average, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="clips/lipnet__swiz3n.mpg", help="under the data dir")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photo", type=Path, default=PROJECT_ROOT / "examples" / "mona_lisa.jpg")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from talking_heads import video
    from talking_heads.faces import load_photo
    from talking_heads.live import LiveDriver
    from talking_heads.pipeline import Animator

    animator = Animator.from_environment("cpu")
    avatar = animator.adapt([load_photo(args.photo)], "ff").avatar
    frames = list(video.iter_frames(args.data / args.clip, max_frames=args.frames + args.warmup,
                                    max_side=640))
    while len(frames) < args.frames + args.warmup:  # a short clip: play it back and forth
        frames += frames[::-1]
    frames = frames[:args.frames + args.warmup]
    load_before = load_average()
    driver = LiveDriver(avatar, animator.detector)
    steps, cpu, detect, render, found = [], [], [], [], 0
    for index, frame in enumerate(frames):
        tick, cpu_tick = time.perf_counter(), time.thread_time()
        out = driver.step(frame)
        spent = time.perf_counter() - tick
        if index >= args.warmup:
            steps.append(spent)
            cpu.append(time.thread_time() - cpu_tick)
            detect.append(out.detect_s)
            render.append(out.render_s)
            found += out.found
    steps_ms, cpu_ms = np.array(steps) * 1000, np.array(cpu) * 1000
    write_result(args.out, {
        "benchmark": "live", "clip": args.clip, "frame_size": list(frames[0].shape[:2]),
        "photo": args.photo.name, "weights": animator.weights_label,
        "model": animator.model.config.name, "image_size": animator.model.config.image_size,
        "frames": len(steps), "faces_found": found,
        "fps": round(len(steps) / sum(steps), 1),
        "latency_ms": {"mean": round(float(steps_ms.mean()), 1),
                       "p50": round(float(np.percentile(steps_ms, 50)), 1),
                       "p95": round(float(np.percentile(steps_ms, 95)), 1),
                       "max": round(float(steps_ms.max()), 1)},
        "cpu_ms": {"mean": round(float(cpu_ms.mean()), 1),
                   "p95": round(float(np.percentile(cpu_ms, 95)), 1)},
        "fps_one_idle_core": round(1000 / float(cpu_ms.mean()), 1),
        "torch_threads": torch.get_num_threads(),
        "track_ms_mean": round(1000 * float(np.mean(detect)), 1),
        "render_ms_mean": round(1000 * float(np.mean(render)), 1),
        "load_average_before": load_before, "load_average_after": load_average(),
    })


if __name__ == "__main__":
    main()
