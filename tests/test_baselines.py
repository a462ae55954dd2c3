"""Copy and piecewise-affine warp baselines on a real photo with its detected landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial import Delaunay

from talking_heads.evaluation.baselines import (
    border_points,
    copy_baseline,
    nearest_frame,
    piecewise_affine_warp,
    warp_baseline,
)
from talking_heads.landmarks.detector import get_detector


@pytest.fixture(scope="module")
def face(photos_dir):
    path = sorted(photos_dir.rglob("*.jpg"))[0]
    image = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (256, 256))
    detection = get_detector("dlib").detect(image)
    assert detection.found
    return image, detection.points.astype(np.float64)


def test_identity_warp_returns_the_image(face):
    image, points = face
    assert np.array_equal(piecewise_affine_warp(image, points, points), image)


def test_translated_landmarks_move_the_face_exactly(face):
    image, points = face
    target = points + np.array([5.0, 3.0])
    warped = piecewise_affine_warp(image, points, target)
    shifted = np.roll(image, (3, 5), axis=(0, 1))
    # Inside triangles spanned by landmarks only, the warp is the pure translation.
    triangulation = Delaunay(np.concatenate([target, border_points(256, 256)]))
    yy, xx = np.mgrid[0:256, 0:256]
    simplex = triangulation.find_simplex(np.stack([xx.ravel(), yy.ravel()], axis=1))
    face_only = ((simplex >= 0) & (triangulation.simplices[simplex].max(axis=1) < 68))
    face_only = face_only.reshape(256, 256)
    assert face_only.sum() > 20000
    assert np.array_equal(warped[face_only], shifted[face_only])
    # The image border is fixed: the corners do not move.
    for y, x in [(0, 0), (0, 255), (255, 0), (255, 255)]:
        assert np.array_equal(warped[y, x], image[y, x])


def test_warp_moves_the_mouth_where_the_detector_sees_it(photos_dir):
    # Open the jaw by 10 px on three real photos; dlib must see the mouth move down with it.
    detector = get_detector("dlib")
    paths = sorted(photos_dir.rglob("*.jpg"))
    shifts = []
    for path in (paths[10], paths[20], paths[30]):
        image = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (256, 256))
        points = detector.detect(image).points.astype(np.float64)
        target = points.copy()
        target[48:68, 1] += 10.0  # mouth
        target[5:12, 1] += 10.0  # chin
        found = detector.detect(piecewise_affine_warp(image, points, target))
        assert found.found
        shifts.append(found.points[48:68, 1].mean() - points[48:68, 1].mean())
        assert abs(found.points[36:48, 1].mean() - points[36:48, 1].mean()) < 2.0  # eyes stay
    assert 7.0 < np.mean(shifts) < 13.0


def test_nearest_frame_and_copy(face):
    image, points = face
    sources = np.stack([points + 20.0, points + 1.0, points - 9.0])  # (3, 68, 2)
    images = np.stack([np.zeros_like(image), image, np.full_like(image, 255)])
    assert nearest_frame(sources, points) == 1
    assert np.array_equal(copy_baseline(images, sources, points), image)
    warped = warp_baseline(images, sources, points)
    assert warped.shape == image.shape and warped.dtype == np.uint8
    with pytest.raises(ValueError):
        nearest_frame(points, points)
