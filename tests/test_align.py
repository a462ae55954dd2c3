"""Face crops on real photos and a real clip: framing, round trips, paste-back, stability."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from talking_heads.images import bgr_to_rgb
from talking_heads.landmarks.align import (CropConfig, CropTransform, crop_transform, paste_back,
                                           smooth_transforms)
from talking_heads.landmarks.detector import get_detector


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def photo(photos_dir: Path, detector):
    image = bgr_to_rgb(cv2.imread(str(sorted(photos_dir.glob("*/*.jpg"))[0])))
    return image, detector.detect(image).points


def test_crop_is_face_centred_with_margin(photo):
    image, points = photo
    config = CropConfig()
    transform = crop_transform(points, 256, config)
    crop_points = transform.points_to_crop(points)
    low, high = crop_points.min(axis=0), crop_points.max(axis=0)
    extent = (high - low).max()
    assert extent == pytest.approx(256 / config.extent_scale, rel=1e-3)
    center = (low + high) / 2
    assert center[0] == pytest.approx(127.5, abs=0.5)
    # Moved up for hair: the face sits below the crop centre, the chin still inside the crop.
    assert center[1] == pytest.approx(127.5 + config.shift_up * 256, abs=0.5)
    assert low.min() > 0 and high.max() < 255
    crop = transform.warp_image(image)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8


def test_transform_is_a_similarity_and_round_trips(photo):
    _, points = photo
    transform = crop_transform(points, 256)
    linear = transform.matrix[:2, :2]
    assert linear[0, 1] == 0 and linear[1, 0] == 0 and linear[0, 0] == linear[1, 1]
    back = transform.points_to_image(transform.points_to_crop(points))
    np.testing.assert_allclose(back, points, atol=1e-3)
    rebuilt = CropTransform.from_center(transform.center, transform.side, 256)
    np.testing.assert_allclose(rebuilt.matrix, transform.matrix, atol=1e-9)


def test_warp_samples_the_image_where_the_points_say(photo):
    image, points = photo
    transform = crop_transform(points, 256)
    crop = transform.warp_image(image).astype(np.float32)
    inner = points[17:]  # brows, nose, eyes, mouth: inside the photo, unlike parts of the jaw
    rows, cols = np.round(transform.points_to_crop(inner)).astype(int).T[::-1]
    ours = crop[rows, cols]
    rows, cols = np.round(inner).astype(int).T[::-1]
    theirs = image.astype(np.float32)[rows, cols]
    assert np.abs(ours - theirs).mean() < 12


def test_downscaled_crop_of_a_large_frame_matches(photo):
    """720p-sized input takes the anti-aliased path; the crop matches the small photo's."""
    image, points = photo
    big = cv2.resize(image, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)  # 900 x 900
    big_points = points * 6 + 2.5
    small_crop = crop_transform(points, 128).warp_image(image).astype(np.float32)
    big_crop = crop_transform(big_points, 128).warp_image(big).astype(np.float32)
    assert np.abs(small_crop - big_crop)[16:-16, 16:-16].mean() < 6


def _face_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return mask.astype(bool)


def test_crop_then_paste_back_preserves_the_face(photo):
    image, points = photo
    # Put the photo into a bigger frame so that part of the frame lies outside the crop.
    frame = np.full((400, 500, 3), 40, np.uint8)
    frame[100:250, 200:350] = image
    frame_points = points + np.array([200, 100], np.float32)
    transform = crop_transform(frame_points, 256)
    crop = transform.warp_image(frame)
    face = _face_mask(frame.shape[:2], frame_points)

    restored = paste_back(frame, crop, transform)
    error = np.abs(restored.astype(np.int16) - frame.astype(np.int16))
    assert error[face].mean() < 3.0
    # Far outside the crop the frame is untouched.
    x0, y0 = transform.points_to_image(np.array([[0.0, 0.0]]))[0]
    assert (restored[: max(0, int(y0) - 2)] == frame[: max(0, int(y0) - 2)]).all()

    # A changed crop (inverted colours) shows up in the face, feathered towards the edges.
    pasted = paste_back(frame, 255 - crop, transform)
    assert np.abs(pasted[face].astype(np.int16) - (255 - frame[face]).astype(np.int16)).mean() < 3
    assert (pasted[: max(0, int(y0) - 2)] == frame[: max(0, int(y0) - 2)]).all()


def test_video_crops_are_temporally_stable(shared_data: Path, detector):
    """On a real clip, smoothing removes per-frame jitter of the crop but follows the head."""
    path = shared_data / "clips" / "face_recognition__short_hamilton_clip.mp4"
    transforms = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index < 120:  # the first shot is a wide one with faces too small to detect
                continue
            if index >= 200:
                break
            result = detector.detect(frame.to_ndarray(format="rgb24"))
            if result.found:
                transforms.append(crop_transform(result.points, 256))
    assert len(transforms) >= 60
    smooth = smooth_transforms(transforms)
    raw_c = np.stack([t.center for t in transforms])
    smooth_c = np.stack([t.center for t in smooth])

    def jitter(c: np.ndarray) -> float:  # mean size of the second difference, image pixels
        return float(np.linalg.norm(np.diff(c, n=2, axis=0), axis=1).mean())

    assert jitter(smooth_c) < 0.3 * jitter(raw_c)
    side = np.mean([t.side for t in transforms])
    assert np.linalg.norm(smooth_c - raw_c, axis=1).mean() < 0.03 * side
    raw_s = np.log([t.side for t in transforms])
    smooth_s = np.log([t.side for t in smooth])
    assert np.abs(np.diff(smooth_s, 2)).mean() < 0.3 * np.abs(np.diff(raw_s, 2)).mean()


def test_smoothing_never_blends_across_a_cut(photo):
    _, points = photo
    first = crop_transform(points, 256)
    second = crop_transform(points * 2.0 + 300, 256)  # another shot: elsewhere, twice as big
    track = [first] * 10 + [second] * 10
    smooth = smooth_transforms(track)
    for raw, smoothed in zip(track, smooth):
        np.testing.assert_allclose(smoothed.matrix, raw.matrix, atol=1e-6)
