"""Live driving: a webcam drives an adapted person one frame at a time.

For each frame: landmarks are tracked (the detector searches around the previous face box
first, so the full-frame HOG search runs only when the face is lost); the points are taken in
the first frame's face crop, smoothed a little against detector jitter, and moved onto the
avatar's face by relative motion against the *first* frame (``landmarks.retarget``); then one
frame is rendered (y(t) -> ``Avatar.render``) and labelled. No state outlives the session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from talking_heads.avatar import Avatar
from talking_heads.compositing import compose_frame
from talking_heads.landmarks import retarget
from talking_heads.landmarks.align import CropTransform, crop_transform
from talking_heads.rendering import render_crops

SMOOTHING = 0.5        # weight of the new frame's landmarks (1: no smoothing)
MAX_INPUT_SIDE = 640   # larger webcam frames are scaled down before tracking


@dataclass(frozen=True)
class LiveFrame:
    """One rendered frame and what it cost (seconds)."""

    image: np.ndarray      # uint8 (H, W, 3): the avatar, labelled
    found: bool            # a face was found in this webcam frame
    detect_s: float
    render_s: float


class LiveDriver:
    """Per-session driver: ``step(webcam_frame) -> LiveFrame``."""

    def __init__(self, avatar: Avatar, detector, label: bool = True,
                 smoothing: float = SMOOTHING) -> None:
        self.avatar, self.detector, self.label = avatar, detector, label
        self.smoothing = smoothing
        self._box = None                        # previous face box (tracking)
        self._transform: CropTransform | None = None  # first frame's crop
        self._reference: np.ndarray | None = None     # first frame's points in that crop
        self._points: np.ndarray | None = None        # smoothed current points in the crop
        self._last: np.ndarray | None = None
        self.frames = 0

    @property
    def started(self) -> bool:
        """A face has been seen: the motion is measured against that first frame."""
        return self._reference is not None

    def _track(self, frame: np.ndarray) -> np.ndarray | None:
        """Landmarks (68, 2) in the first frame's crop pixels, or None (no face)."""
        detection = self.detector.detect(frame, near=self._box)
        if not detection.found:
            self._box = None  # search the whole frame next time
            return None
        self._box = detection.box
        if self._transform is None:
            self._transform = crop_transform(detection.points, self.avatar.config.image_size)
        points = self._transform.points_to_crop(detection.points).astype(np.float32)
        if self._points is None:
            self._reference = points
            self._points = points
        else:
            self._points = (self.smoothing * points + (1 - self.smoothing) * self._points)
        return self._points

    def step(self, frame: np.ndarray) -> LiveFrame:
        """Track, retarget against the first frame and render one frame."""
        tick = time.perf_counter()
        frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        scale = MAX_INPUT_SIDE / max(frame.shape[:2])
        if scale < 1.0:
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        points = self._track(frame)
        detected = time.perf_counter()
        if points is None:
            image = self._last if self._last is not None else self._still()
            return LiveFrame(image, False, detected - tick, 0.0)
        source = self.avatar.sources.crop_points[0]
        target = retarget.relative_motion(source, np.stack([self._reference, points]),
                                          reference=0)[1]  # (68, 2)
        crop = render_crops(self.avatar, target[None])[0]
        self._last = compose_frame(self.avatar, crop, paste_back_=False, label=self.label)
        self.frames += 1
        return LiveFrame(self._last, True, detected - tick, time.perf_counter() - detected)

    def _still(self) -> np.ndarray:
        """Before any face was seen: the avatar's own photo crop, labelled."""
        return compose_frame(self.avatar, self.avatar.sources.crops[0], paste_back_=False,
                             label=self.label)
