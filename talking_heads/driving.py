"""Driving motion for the pipeline: a preset track, or landmarks detected in a driving clip.

Either way the result is a ``Driving``: 68 points per frame in crop-normalised coordinates
(see ``talking_heads.presets``), the frame rate and the clip's audio. ``driving_landmarks``
turns it into the landmarks to render for an adapted person, with relative motion
(``landmarks.retarget``) by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from talking_heads import presets, video
from talking_heads.avatar import Avatar, NoFaceError
from talking_heads.landmarks import retarget
from talking_heads.landmarks.align import crop_transform, smooth_transforms

Progress = Callable[[float, str], None]
DETECT_SIDE = 640           # driving frames are decoded at most this large for detection
DEFAULT_MAX_SECONDS = 20.0  # driving clips are cut to this length by default


@dataclass(frozen=True)
class Driving:
    """Driving landmarks: ``points`` float32 (T, 68, 2) crop-normalised, at ``fps``."""

    points: np.ndarray
    fps: float
    audio: video.AudioTrack | None
    description: str
    notes: tuple[str, ...] = ()


def driving_from_preset(name: str, max_seconds: float | None = None) -> Driving:
    """A preset track (optionally cut to ``max_seconds``): no detector pass, no audio."""
    preset = presets.load_preset(name)
    points = preset.points
    if max_seconds is not None:
        points = points[:max(1, int(round(max_seconds * preset.fps)))]
    return Driving(points, preset.fps, None, f"preset '{name}' ({preset.description})")


def driving_from_video(path: str | Path, detector, max_seconds: float = DEFAULT_MAX_SECONDS,
                       progress: Progress | None = None) -> Driving:
    """Per-frame landmarks of a driving clip in smoothed crops, plus its audio."""
    report = progress or (lambda fraction, message: None)
    fps = video.video_fps(path)
    limit = max(1, int(round(max_seconds * fps)))
    points, found = [], []
    for index, frame in enumerate(video.iter_frames(path, max_frames=limit, max_side=DETECT_SIDE)):
        detection = detector.detect(frame)
        found.append(detection.found)
        points.append(detection.points if detection.found else np.zeros((68, 2), np.float32))
        if index % 10 == 0:
            report(index / limit, f"driving clip: landmarks of frame {index + 1}")
    if not found or not any(found):
        raise NoFaceError("no face found in the driving video")
    track = retarget.fill_missing(np.stack(points), np.array(found))  # (T, 68, 2) pixels
    transforms = smooth_transforms([crop_transform(p, 256) for p in track])
    in_crop = np.stack([t.points_to_crop(p) for t, p in zip(transforms, track)])
    in_crop = retarget.smooth_track(in_crop, sigma=1.0)
    notes = []
    missing = len(found) - int(sum(found))
    if missing:
        notes.append(f"{missing} of {len(found)} driving frames had no face (interpolated)")
    if len(found) == limit and video.probe(path).duration > max_seconds + 0.5 / fps:
        notes.append(f"driving clip cut to its first {max_seconds:g} s")
    audio = video.read_audio(path, max_seconds=len(found) / fps)
    return Driving(presets.normalise_points(in_crop, 256), fps, audio,
                   f"uploaded clip ({len(found)} frames)", tuple(notes))


def driving_landmarks(avatar: Avatar, driving: Driving, relative: bool) -> np.ndarray:
    """Landmarks to render, in the avatar's crop pixels: (T, 68, 2)."""
    size = avatar.config.image_size
    track = driving.points.astype(np.float32) * size - 0.5  # crop-normalised -> crop pixels
    if not relative:
        return track
    return retarget.relative_motion(avatar.sources.crop_points[0], track)
