"""Landmark images y_i(t): 68 iBUG points -> coloured line segments on black.

The paper (Sec. 3.1) rasterises the landmarks "using a predefined set of colors to connect
certain landmarks with line segments". This module is the project's one convention, used for
meta-training, fine-tuning and driving alike:

=========== ========== ======= ===============
part        indices    closed  colour (R, G, B)
=========== ========== ======= ===============
jaw         0-16       no      (0, 255, 0)
right brow  17-21      no      (255, 0, 0)
left brow   22-26      no      (0, 0, 255)
nose bridge 27-30      no      (255, 255, 0)
nose base   31-35      no      (255, 0, 255)
right eye   36-41      yes     (0, 255, 255)
left eye    42-47      yes     (255, 128, 0)
outer lips  48-59      yes     (128, 0, 255)
inner lips  60-67      yes     (255, 255, 255)
=========== ========== ======= ===============

"Right" is the subject's right (the image's left in a frontal photo), as in iBUG 300-W.
Lines are anti-aliased, ``line_width(size)`` pixels wide (2 at 256 px), drawn at the target
resolution so they stay crisp; later parts are drawn over earlier ones.
A horizontal flip of an image must also permute the points with ``FLIP_PERMUTATION`` so that
the subject's right stays "right" (and keeps its colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FacePart:
    name: str
    indices: tuple[int, ...]
    closed: bool
    color: tuple[int, int, int]  # RGB


FACE_PARTS: tuple[FacePart, ...] = (
    FacePart("jaw", tuple(range(0, 17)), False, (0, 255, 0)),
    FacePart("right_brow", tuple(range(17, 22)), False, (255, 0, 0)),
    FacePart("left_brow", tuple(range(22, 27)), False, (0, 0, 255)),
    FacePart("nose_bridge", tuple(range(27, 31)), False, (255, 255, 0)),
    FacePart("nose_base", tuple(range(31, 36)), False, (255, 0, 255)),
    FacePart("right_eye", tuple(range(36, 42)), True, (0, 255, 255)),
    FacePart("left_eye", tuple(range(42, 48)), True, (255, 128, 0)),
    FacePart("outer_lips", tuple(range(48, 60)), True, (128, 0, 255)),
    FacePart("inner_lips", tuple(range(60, 68)), True, (255, 255, 255)),
)


def _flip_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]                        # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                  # brows
    pairs += [(31, 35), (32, 34)]                                  # nose base
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]    # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]                        # inner lips
    perm = np.arange(68)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# flipped_points = mirror(points)[FLIP_PERMUTATION]: index i of the result is the mirror image
# of the point that played the mirrored role (e.g. the right eye's outer corner 36 <- 45).
FLIP_PERMUTATION: np.ndarray = _flip_permutation()


def flip_points(points: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of a horizontally flipped image of ``width`` pixels, indices kept iBUG-valid."""
    p = np.asarray(points, dtype=np.float32).copy()
    p[:, 0] = (width - 1) - p[:, 0]
    return p[FLIP_PERMUTATION]


def line_width(size: int) -> int:
    """Line thickness in pixels for a ``size``-pixel landmark image (2 at 256, 1 at 128)."""
    return max(1, int(round(size / 128)))


_SHIFT = 4  # cv2 sub-pixel bits: points drawn with 1/16 px precision


def rasterize(points: np.ndarray, size: int, thickness: int | None = None) -> np.ndarray:
    """(68, 2) points in crop pixels -> uint8 (size, size, 3) RGB landmark image y."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) points, got {p.shape}")
    width = line_width(size) if thickness is None else thickness
    canvas = np.zeros((size, size, 3), np.uint8)
    fixed = np.round(p * (1 << _SHIFT)).astype(np.int32)  # (68, 2) fixed-point pixels
    for part in FACE_PARTS:
        polyline = fixed[list(part.indices)].reshape(-1, 1, 2)  # (n, 1, 2) as OpenCV wants
        cv2.polylines(canvas, [polyline], part.closed, part.color, width, cv2.LINE_AA, _SHIFT)
    return canvas
