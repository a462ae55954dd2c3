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

import av
import numpy as np

from talking_heads import presets, video
from talking_heads.avatar import Avatar, NoFaceError
from talking_heads.inputs import InputError, check_clip
from talking_heads.landmarks import retarget
from talking_heads.landmarks.align import crop_transform, smooth_transforms
from talking_heads.limits import Limits
from talking_heads.overlay import draw_face

Progress = Callable[[float, str], None]
DEFAULT_MAX_SECONDS = Limits().max_driving_seconds  # driving clips are cut to this by default


@dataclass(frozen=True)
class Driving:
    """Driving landmarks: ``points`` float32 (T, 68, 2) crop-normalised, at ``fps``."""

    points: np.ndarray
    fps: float
    audio: video.AudioTrack | None
    description: str
    notes: tuple[str, ...] = ()
    clip: Path | None = None   # the driving video, when the motion came from one


def driving_from_preset(name: str, max_seconds: float | None = None) -> Driving:
    """A preset track (optionally cut to ``max_seconds``): no detector pass, no audio."""
    preset = presets.load_preset(name)
    points = preset.points
    if max_seconds is not None:
        points = points[:max(1, int(round(max_seconds * preset.fps)))]
    return Driving(points, preset.fps, None, f"preset '{name}' ({preset.description})")


def _resample(times: np.ndarray, track: np.ndarray, fps: float, count: int) -> np.ndarray:
    """Landmarks at decoded frame times -> ``count`` frames at a constant ``fps`` (linear)."""
    grid = np.arange(count) / fps
    flat = track.reshape(len(track), -1)  # (N, 136)
    out = np.stack([np.interp(grid, times, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    return out.reshape(count, *track.shape[1:]).astype(np.float32)  # (count, 68, 2)


def driving_from_video(path: str | Path, detector, max_seconds: float = DEFAULT_MAX_SECONDS,
                       progress: Progress | None = None, limits: Limits | None = None,
                       on_frame: Callable[[np.ndarray], None] | None = None) -> Driving:
    """Per-frame landmarks of a driving clip in smoothed crops, plus its audio.

    Timing comes from each frame's timestamp, so variable-frame-rate clips play at their real
    speed: the track is resampled to a constant rate (the clip's average, at most
    ``limits.max_driving_fps``). Frames without a face get landmarks interpolated from their
    neighbours (held at the ends); the notes say how many. The clip is cut to ``max_seconds``
    and ``limits.max_driving_frames``; ``InputError`` if it is not a readable video.
    ``on_frame`` receives every tenth analysed frame with its landmarks drawn (progress).
    """
    limits = limits or Limits()
    report = progress or (lambda fraction, message: None)
    max_seconds = min(max_seconds, limits.max_driving_seconds)
    clip = check_clip(path, limits)
    fps = min(video.video_fps(path), limits.max_driving_fps)
    budget = min(limits.max_driving_frames, max(1, int(round(max_seconds * fps))))
    times, points, found, source_size = [], [], [], None
    damaged = False
    try:
        for index, frame in enumerate(video.iter_timed_frames(
                path, max_seconds=max_seconds, max_frames=4 * budget,
                max_side=limits.driving_side)):
            detection = detector.detect(frame.image)
            times.append(frame.time)
            found.append(detection.found)
            points.append(detection.points if detection.found else np.zeros((68, 2), np.float32))
            source_size = source_size or (frame.source_size, frame.image.shape[1::-1])
            if index % 10 == 0:
                report(min(0.99, frame.time / max_seconds),
                       f"driving clip: landmarks of frame {index + 1}")
                if on_frame is not None:
                    on_frame(draw_face(frame.image, detection.points, detection.box))
    except av.error.FFmpegError:  # a damaged tail: keep what was decoded before it
        if not times:
            raise InputError(f"the driving video ({Path(path).name}) cannot be decoded")
        damaged = True
    if not any(found):
        raise NoFaceError("no face found in the driving video")
    track = retarget.fill_missing(np.stack(points), np.array(found))  # (N, 68, 2) pixels
    span = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0 / fps)
    count = max(1, min(budget, int(round(span * fps))))
    track = _resample(np.array(times), track, fps, count)  # (T, 68, 2) at a constant fps
    transforms = smooth_transforms([crop_transform(p, 256) for p in track])
    in_crop = np.stack([t.points_to_crop(p) for t, p in zip(transforms, track)])
    in_crop = retarget.smooth_track(in_crop, sigma=1.0)
    notes = []
    missing = len(found) - int(sum(found))
    if missing:
        notes.append(f"{missing} of {len(found)} driving frames had no face (landmarks "
                     "interpolated from the nearest frames with a face)")
    gaps = np.diff(times)
    if len(gaps) > 2 and gaps.max() > 1.5 * np.median(gaps):
        notes.append(f"variable frame rate: motion resampled to {fps:.3g} fps by timestamp")
    seconds = count / fps
    # A file cut short can also just end early without an error from the decoder.
    expected = min(clip.duration, max_seconds)
    damaged = damaged or (len(times) < 4 * budget
                          and times[-1] < expected - max(3.0 / fps, 0.25))
    if damaged:
        notes.append(f"the driving video is damaged after {times[-1]:.1f} s (of "
                     f"{clip.duration:.1f} s): only the part before that is used")
    elif clip.duration > seconds + 1.5 / fps:
        notes.append(f"driving clip cut to its first {seconds:.3g} s (of {clip.duration:.1f} s;"
                     f" limits: {max_seconds:g} s, {limits.max_driving_frames} frames)")
    (width, height), (small_w, small_h) = source_size
    if (width, height) != (small_w, small_h):
        notes.append(f"driving frames {width}x{height} analysed at {small_w}x{small_h}")
    audio = video.read_audio(path, max_seconds=seconds) if clip.has_audio else None
    if audio is None:
        notes.append("the driving video has no audio: the result is silent")
    return Driving(presets.normalise_points(in_crop, 256), fps, audio,
                   f"uploaded clip ({len(found)} frames)", tuple(notes), Path(path))


def driving_landmarks(avatar: Avatar, driving: Driving, relative: bool) -> np.ndarray:
    """Landmarks to render, in the avatar's crop pixels: (T, 68, 2)."""
    size = avatar.config.image_size
    track = driving.points.astype(np.float32) * size - 0.5  # crop-normalised -> crop pixels
    if not relative:
        return track
    return retarget.relative_motion(avatar.sources.crop_points[0], track)
