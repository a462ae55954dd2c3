"""Generated face crops -> the frames people see: pasted back into the photo (or the crop
alone), the visible "synthetic" label, and the optional side-by-side driving panel."""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from talking_heads import video
from talking_heads.avatar import Avatar
from talking_heads.driving import Driving
from talking_heads.landmarks.align import CropTransform, paste_back
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.options import AnimateOptions
from talking_heads.overlay import draw_label

MIN_CROP_OUTPUT = 256    # crop-only output is upscaled to at least this side
PANEL_DRAW_SIDE = 256    # landmark drawings are rasterized at this side, then scaled


def paste_into_photo(photo: np.ndarray, crop: np.ndarray, transform: CropTransform) -> np.ndarray:
    """``align.paste_back`` restricted to the crop's footprint in the photo (same pixels,
    several times cheaper on large photos, since nothing outside the footprint changes)."""
    size = transform.size
    corners = transform.points_to_image(np.array([[0, 0], [size, 0], [0, size], [size, size]],
                                                 np.float64) - 0.5)  # (4, 2)
    height, width = photo.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 2, 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 3, 0, [width, height])
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    local = CropTransform(transform.matrix @ shift, size)  # sub-image pixels -> crop pixels
    out[y0:y1, x0:x1] = paste_back(photo[y0:y1, x0:x1], crop, local)
    return out


def compose_frame(avatar: Avatar, crop: np.ndarray, paste_back_: bool = True,
                  label: bool = True) -> np.ndarray:
    """One generated crop (S, S, 3) -> the output frame (pasted back or upscaled), labelled."""
    if paste_back_:
        frame = paste_into_photo(avatar.sources.photos[0], crop, avatar.sources.transforms[0])
    else:
        side = max(MIN_CROP_OUTPUT, crop.shape[0])
        frame = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
    return draw_label(frame) if label else frame


def compose(avatar: Avatar, crops: np.ndarray, options: AnimateOptions) -> list[np.ndarray]:
    """Generated crops (B, S, S, 3) -> output frames."""
    return [compose_frame(avatar, crop, options.paste_back, options.label) for crop in crops]


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """Scale ``image`` to ``height`` rows, keeping its aspect ratio."""
    if image.shape[0] == height:
        return image
    width = max(2, int(round(image.shape[1] * height / image.shape[0])))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA
                      if image.shape[0] > height else cv2.INTER_LINEAR)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The driving panel scaled to the result's height, left of it (one frame)."""
    return np.concatenate([fit_height(left, right.shape[0]), right], axis=1)


def landmark_drawing(points: np.ndarray, size: int = PANEL_DRAW_SIDE) -> np.ndarray:
    """Crop-normalised (68, 2) driving points -> the landmark image y at ``size`` px."""
    return rasterize(points.astype(np.float32) * size - 0.5, size)


def driving_panels(driving: Driving, max_side: int = 640) -> Iterator[np.ndarray]:
    """The driving motion frame by frame at ``driving.fps``: the clip itself when it came from
    one (decoded again, the frame shown at each output time), else its landmark drawing."""
    count = len(driving.points)
    if driving.clip is None:
        for points in driving.points:
            yield landmark_drawing(points)
        return
    frames = video.iter_timed_frames(driving.clip, max_seconds=count / driving.fps + 1.0,
                                     max_side=max_side)
    current = next(frames, None)
    upcoming = next(frames, None)
    for index in range(count):
        time = index / driving.fps
        while upcoming is not None and upcoming.time <= time + 1e-6:
            current, upcoming = upcoming, next(frames, None)
        if current is None:  # nothing decodable: fall back to the drawing
            yield landmark_drawing(driving.points[index])
        else:
            yield current.image
