"""Landmark detection speed per frame on real clips (dlib backend), at 256 px and at 720p.

    python -m benchmarks.landmark_speed [--data ../shared/data] [--frames 100] [--out JSON]

Prints the median and mean wall time of ``detector.detect`` (HOG box + 68-point shape) per
frame, one thread: on the whole frame, and tracking (``near=`` the previous frame's box, as
preprocessing and driving clips use it). Not a test: numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness import DEFAULT_DATA, load_average, write_result
from talking_heads.landmarks.detector import get_detector
from talking_heads.video import iter_frames

CLIPS = {"256 px": "clips/styletalk__Obama_clip1.mp4", "720p": "clips/liveportrait__s18.mp4"}


def time_clip(detector, frames: list[np.ndarray], track: bool) -> tuple[float, float, int]:
    detector.detect(frames[0])  # warm-up
    times, found, box = [], 0, None
    for frame in frames:
        start = time.perf_counter()
        result = detector.detect(frame, near=box if track else None)
        times.append(time.perf_counter() - start)
        found += result.found
        box = result.box
    return float(np.median(times)), float(np.mean(times)), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    detector = get_detector("dlib")
    start_load = load_average()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for label, clip in CLIPS.items():
        frames = list(iter_frames(args.data / clip, max_frames=args.frames))
        height, width = frames[0].shape[:2]
        for track in (False, True):
            median, mean, found = time_clip(detector, frames, track)
            mode = "tracking  " if track else "full frame"
            print(f"{label:>7} {width}x{height} {mode}: median {median * 1e3:.1f} ms, "
                  f"mean {mean * 1e3:.1f} ms per frame, face found in {found}/{len(frames)}")
            rows.append({"size": label, "clip": clip, "width": width, "height": height,
                         "tracking": track, "median_ms": round(median * 1e3, 2),
                         "mean_ms": round(mean * 1e3, 2), "found": found,
                         "frames": len(frames)})
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    write_result(args.out, {"benchmark": "landmark_speed", "backend": "dlib",
                            "load_average_start": start_load, "results": rows})


if __name__ == "__main__":
    main()
