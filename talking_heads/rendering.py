"""Driving landmarks -> generated crops -> frames -> mp4, in batches without gradients.

y(t) = rasterize(target points); x-hat(t) = ``Avatar.render(y, points)`` (the warp design also
needs the target points); then ``compositing`` makes the output frame, and ``video.Mp4Writer``
encodes as it goes, so memory holds one batch, never the whole video.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from talking_heads import video
from talking_heads.avatar import Avatar
from talking_heads.compositing import compose, driving_panels, side_by_side
from talking_heads.driving import Driving
from talking_heads.images import image_to_tensor, tensor_to_image
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.options import AnimateOptions, FrameSink, Progress


def render_crops(avatar: Avatar, targets: np.ndarray) -> np.ndarray:
    """Target landmarks (B, 68, 2) in the avatar's crop pixels -> crops uint8 (B, S, S, 3)."""
    size = avatar.config.image_size
    y = image_to_tensor(np.stack([rasterize(p, size) for p in targets]))  # (B, 3, S, S)
    with torch.inference_mode():
        return tensor_to_image(avatar.render(y, targets))  # (B, S, S, 3)


def iter_frames(avatar: Avatar, targets: np.ndarray, driving: Driving,
                options: AnimateOptions) -> Iterator[tuple[int, list[np.ndarray], float]]:
    """(frames done, output frames of this batch, render seconds) batch by batch."""
    panels = driving_panels(driving) if options.layout == "side_by_side" else None
    for first in range(0, len(targets), options.batch_size):
        tick = time.perf_counter()
        batch = targets[first:first + options.batch_size]
        frames = compose(avatar, render_crops(avatar, batch), options)
        if panels is not None:
            frames = [side_by_side(next(panels), frame) for frame in frames]
        yield first + len(batch), frames, time.perf_counter() - tick


def write_video(avatar: Avatar, targets: np.ndarray, driving: Driving, out_path: str | Path,
                options: AnimateOptions, report: Progress,
                on_frame: FrameSink | None = None) -> tuple[float, float]:
    """y(t) -> G -> frames -> mp4 with the driving audio; returns (render, encode) seconds.

    ``on_frame`` receives the last frame of every batch as soon as it exists (the app shows
    it while the rest renders)."""
    render_time = encode_time = 0.0
    count = len(targets)
    with video.Mp4Writer(out_path, driving.fps, audio=driving.audio) as writer:
        for done, frames, seconds in iter_frames(avatar, targets, driving, options):
            render_time += seconds
            tick = time.perf_counter()
            for frame in frames:
                writer.write(frame)
            encode_time += time.perf_counter() - tick
            if on_frame is not None:
                on_frame(frames[-1])
            report(0.97 * done / count, f"render: frame {done}/{count} (encoding as it goes)")
        report(0.98, "encode: finishing the mp4 (audio, index)")
        tick = time.perf_counter()
    encode_time += time.perf_counter() - tick  # flushing the encoder and muxing the audio
    return render_time, encode_time


def first_frame(avatar: Avatar, driving: Driving, options: AnimateOptions) -> np.ndarray:
    """The output's first frame alone (an early look while a slower avatar is made)."""
    from talking_heads.driving import driving_landmarks

    targets = driving_landmarks(avatar, driving, options.relative_motion)[:1]  # (1, 68, 2)
    one = Driving(driving.points[:1], driving.fps, None, driving.description,
                  clip=driving.clip)
    return next(iter_frames(avatar, targets, one, options))[1][0]
