"""Source photos before adaptation: reading, size limits, face checks and detector previews.

Everything here runs before any network: it decides whether the photos can be used at all
and says why not (``NoFaceError`` / ``InputError`` naming "photo N (name)").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from talking_heads.avatar import NoFaceError
from talking_heads.evaluation.identity import SAME_PERSON_DISTANCE
from talking_heads.inputs import InputError, read_photo
from talking_heads.landmarks.detector import Detection
from talking_heads.limits import Limits
from talking_heads.overlay import draw_face

MAX_PHOTOS = Limits().max_photos


@dataclass(frozen=True)
class FacePreview:
    """One source photo as seen by the detector (for the UI)."""

    image: np.ndarray   # uint8 (h, w, 3), box and landmarks drawn
    found: bool
    caption: str


def load_photo(path: str | Path, limits: Limits = Limits()) -> np.ndarray:
    """An image file -> uint8 (H, W, 3) RGB, upright (see ``inputs.read_photo``)."""
    return read_photo(path, limits=limits).image


def limit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so that the longer side is at most ``max_side`` (never upscales)."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1.0:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


class CachedDetector:
    """Wraps a detector so that the same photo is never detected twice (preview, Avatar)."""

    def __init__(self, detector) -> None:
        self.detector, self.name = detector, detector.name
        self._cache: dict[bytes, Detection] = {}

    def detect(self, image_rgb: np.ndarray) -> Detection:
        image = np.ascontiguousarray(image_rgb)
        key = hashlib.blake2b(image.data, digest_size=16).digest() + str(image.shape).encode()
        if key not in self._cache:
            self._cache[key] = self.detector.detect(image)
        return self._cache[key]


def preview_faces(photos: list[np.ndarray], detector) -> list[FacePreview]:
    """Detect the largest face of each photo and draw its box and 68 landmarks."""
    previews = []
    for index, photo in enumerate(photos, start=1):
        detection = detector.detect(photo)
        if not detection.found:
            caption = f"photo {index}: no face found"
        elif detection.num_faces > 1:
            caption = f"photo {index}: {detection.num_faces} faces, the largest is used"
        else:
            caption = f"photo {index}: face found"
        previews.append(FacePreview(draw_face(photo, detection.points, detection.box),
                                    detection.found, caption))
    return previews


def photo_label(index: int, names: list[str] | None) -> str:
    """"photo 2 (me.jpg)" for messages; ``index`` counts from 1."""
    return f"photo {index}" + (f" ({names[index - 1]})" if names else "")


def check_faces(photos: list[np.ndarray], detector, limits: Limits,
                names: list[str] | None = None) -> tuple[list[Detection], list[str]]:
    """Detect the face of every photo; raise for a missing or too small face.

    Returns the detections and notes (several faces in a photo). ``NoFaceError`` /
    ``InputError`` name the photo."""
    detections, notes = [], []
    for index, photo in enumerate(photos, start=1):
        label = photo_label(index, names)
        detection = detector.detect(photo)
        if not detection.found:
            raise NoFaceError(f"no face found in {label}{_painting_hint(photo)}")
        x0, y0, x1, y1 = detection.box
        side = min(x1 - x0, y1 - y0)
        if side < limits.min_face_px:
            raise InputError(f"the face in {label} is too small ({side:.0f} px; at least "
                             f"{limits.min_face_px} px): use a closer or larger photo")
        if detection.num_faces > 1:
            notes.append(f"{label}: {detection.num_faces} faces, the largest is used")
        detections.append(detection)
    return detections, notes


def _painting_hint(photo: np.ndarray) -> str:
    """Why the detector may have missed a face, in words a visitor can act on."""
    height, width = photo.shape[:2]
    if min(height, width) < 160:
        return f" (the photo is only {width}x{height} px; faces need about 80 px or more)"
    return (": the detector (dlib HOG, trained on photographs) needs a frontal or slightly "
            "turned face with both eyes visible; strongly stylised paintings, profiles and "
            "faces under heavy shadow are often missed")


class IdentityCheck:
    """Warns when a photo seems to show someone else than photo 1 (dlib's descriptor and its
    0.6 verification distance; a warning only, since recognition can be wrong)."""

    def __init__(self) -> None:
        self._identity = None  # dlib face descriptor, loaded when several photos are given

    def notes(self, photos: list[np.ndarray], detections: list[Detection]) -> list[str]:
        if len(photos) < 2:
            return []
        if self._identity is None:
            from talking_heads.evaluation.identity import shared_identity

            self._identity = shared_identity()  # one locked instance, whichever thread asks
        descriptors = [self._identity.descriptor(photo, detection.box)
                       for photo, detection in zip(photos, detections)]
        notes = []
        for index, descriptor in enumerate(descriptors[1:], start=2):
            distance = float(np.linalg.norm(descriptor - descriptors[0]))
            if distance >= SAME_PERSON_DISTANCE:
                notes.append(f"photo {index} may show a different person than photo 1 (face "
                             f"descriptor distance {distance:.2f} >= {SAME_PERSON_DISTANCE})")
        return notes
