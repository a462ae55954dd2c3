"""A real clip as a Y4M file, for Chromium's fake camera (``--use-file-for-fake-video-capture``).

Y4M is a header line and raw planar I420 frames, so no encoder is needed: OpenCV converts
RGB to I420 and the frames are written as they are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from talking_heads import video


def write_y4m(clip: Path, out: Path, seconds: float = 4.0, size: tuple[int, int] = (640, 360),
              fps: int = 15) -> Path:
    """The first ``seconds`` of ``clip``, letterboxed to ``size`` (even sides), at ``fps``."""
    width, height = size
    source_fps = video.video_fps(clip)
    step = max(1, round(source_fps / fps))
    frames = list(video.iter_frames(clip, max_frames=int(seconds * source_fps)))[::step]
    with open(out, "wb") as stream:
        stream.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            scale = min(width / frame.shape[1], height / frame.shape[0])
            small = cv2.resize(frame, (int(frame.shape[1] * scale) // 2 * 2,
                                       int(frame.shape[0] * scale) // 2 * 2),
                               interpolation=cv2.INTER_AREA)
            canvas = np.zeros((height, width, 3), np.uint8)
            y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
            canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
            stream.write(b"FRAME\n")
            stream.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420).tobytes())
    return out
