"""Drawing on frames for users: the visible "synthetic" label and detected-face previews."""

from __future__ import annotations

import cv2
import numpy as np

from talking_heads.images import to_rgb_uint8
from talking_heads.landmarks.rasterize import FACE_PARTS

LABEL_TEXT = "SYNTHETIC"


def draw_label(frame: np.ndarray, text: str = LABEL_TEXT) -> np.ndarray:
    """A small white-on-dark label in the bottom-left corner, sized to the frame height."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    scale = max(0.35, height / 720.0 * 0.8)
    thickness = max(1, int(round(scale * 1.6)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, thickness)
    pad = max(3, int(round(text_h * 0.4)))
    x0, y1 = pad, height - pad
    box = (x0, y1 - text_h - baseline - 2 * pad, min(width - 1, x0 + text_w + 2 * pad), y1)
    region = out[box[1]:box[3], box[0]:box[2]].astype(np.float32)
    out[box[1]:box[3], box[0]:box[2]] = (0.4 * region).astype(np.uint8)  # darkened backdrop
    cv2.putText(out, text, (x0 + pad, y1 - pad - baseline), font, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)
    return out


def draw_face(photo: np.ndarray, points: np.ndarray | None, box=None,
              max_side: int = 512) -> np.ndarray:
    """Preview of a detection: the photo (downscaled to ``max_side``) with the face box and
    the 68 landmarks drawn in the landmark-image colours."""
    image = to_rgb_uint8(photo)
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    image = np.array(image, dtype=np.uint8, copy=True)  # never draw on the caller's photo
    if box is not None:
        x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
        cv2.rectangle(image, (x0, y0), (x1, y1), (255, 255, 255), 1, cv2.LINE_AA)
    if points is not None:
        radius = max(1, int(round(max(image.shape[:2]) / 256)))
        p = np.asarray(points, dtype=np.float64) * scale
        for part in FACE_PARTS:
            for index in part.indices:
                centre = (int(round(p[index, 0])), int(round(p[index, 1])))
                cv2.circle(image, centre, radius, part.color, -1, cv2.LINE_AA)
    return image
