"""Landmark images: colours per part, geometry, and the left/right flip convention."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from talking_heads.images import bgr_to_rgb
from talking_heads.landmarks.align import crop_transform
from talking_heads.landmarks.detector import get_detector
from talking_heads.landmarks.rasterize import (FACE_PARTS, FLIP_PERMUTATION, flip_points,
                                               line_width, rasterize)


@pytest.fixture(scope="module")
def crop_points(photos_dir: Path) -> np.ndarray:
    image = bgr_to_rgb(cv2.imread(str(sorted(photos_dir.glob("*/*.jpg"))[3])))
    points = get_detector("dlib").detect(image).points
    return crop_transform(points, 256).points_to_crop(points)


def test_parts_cover_all_68_points_once_with_distinct_colours():
    indices = [i for part in FACE_PARTS for i in part.indices]
    assert sorted(indices) == list(range(68))
    assert len({part.color for part in FACE_PARTS}) == len(FACE_PARTS)
    closed = {part.name for part in FACE_PARTS if part.closed}
    assert closed == {"right_eye", "left_eye", "outer_lips", "inner_lips"}


def test_black_background_and_part_colours_on_real_landmarks(crop_points):
    image = rasterize(crop_points, 256)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    drawn = image.any(axis=2)
    assert 0.01 < drawn.mean() < 0.15  # thin lines on black
    assert (image[:20, :20] == 0).all()
    for part in FACE_PARTS:
        a, b = crop_points[part.indices[0]], crop_points[part.indices[1]]
        x, y = np.round((a + b) / 2).astype(int)
        patch = image[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).astype(int)  # (9, 3)
        distance = np.abs(patch - np.array(part.color)).max(axis=1)
        assert distance.min() <= 40, part.name


def test_geometry_lines_follow_the_points():
    """A single segment drawn from known points: pixels lie on it, nothing off it."""
    points = np.full((68, 2), -100.0, np.float32)  # everything off-canvas ...
    points[0:17] = np.stack([np.linspace(20, 220, 17), np.full(17, 200.0)], axis=1)  # ... but jaw
    image = rasterize(points, 256)
    ys, xs = np.nonzero(image.any(axis=2))
    assert xs.min() >= 17 and xs.max() <= 223
    assert ys.min() >= 200 - line_width(256) and ys.max() <= 200 + line_width(256)
    assert (image[200, 30:210] == (0, 255, 0)).all()


def test_closed_parts_are_closed():
    points = np.full((68, 2), -100.0, np.float32)
    square = np.array([[50, 50], [150, 50], [150, 150], [50, 150]], np.float32)
    points[36:42] = np.concatenate([square, square[-1:], square[-1:]])  # right eye, 6 points
    image = rasterize(points, 256)
    # Closing segment (50,150) -> (50,50) is drawn in the right eye's colour.
    assert (image[60:140, 50] == (0, 255, 255)).all()


def test_line_width_scales_with_size(crop_points):
    small = rasterize(crop_points * 0.5, 128)
    large = rasterize(crop_points, 256)
    assert line_width(128) == 1 and line_width(256) == 2
    # Same drawing at half scale covers about a quarter of the pixels... of a twice-as-thin line.
    ratio = small.any(axis=2).sum() / large.any(axis=2).sum()
    assert 0.15 < ratio < 0.4


def test_flip_swaps_left_and_right(crop_points):
    assert sorted(FLIP_PERMUTATION.tolist()) == list(range(68))
    np.testing.assert_array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(68))
    flipped = flip_points(crop_points, 256)
    # After the flip the subject's right eye (36-41) is still on the image's left.
    assert flipped[36:42, 0].mean() < flipped[42:48, 0].mean()
    assert flipped[0, 0] < flipped[16, 0]
    # The flipped landmark image has the same lines as the mirrored one, but left and right
    # parts keep their own colours: the right eye's colour stays on the image's left.
    mirrored = rasterize(crop_points, 256)[:, ::-1]
    direct = rasterize(flipped, 256)
    same_lines = mirrored.any(axis=2) == direct.any(axis=2)
    assert same_lines.mean() > 0.99
    right_eye_colour = np.all(direct == (0, 255, 255), axis=2)
    assert right_eye_colour.sum() > 20
    assert np.nonzero(right_eye_colour)[1].max() < 128
    assert np.nonzero(np.all(mirrored == (0, 255, 255), axis=2))[1].min() >= 128
