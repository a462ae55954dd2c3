"""Metrics of the evaluation protocol, checked against hand-computable cases and references."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from talking_heads.evaluation.metrics import (
    PSNR_CAP_DB,
    cosine_similarity,
    frechet_distance,
    landmark_error,
    psnr,
    ssim,
)


def _photo(photos_dir, index: int = 0, size: int = 128) -> np.ndarray:
    path = sorted(p for p in photos_dir.rglob("*.jpg"))[index]
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def test_ssim_of_constant_images_is_the_luminance_term():
    # Constant images have zero variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1).
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 150, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 150 + c1) / (100 ** 2 + 150 ** 2 + c1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_matches_skimage_gaussian_reference(photos_dir):
    clean = _photo(photos_dir)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 20, clean.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    reference = structural_similarity(clean, noisy, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=255,
                                      channel_axis=2)
    assert ssim(clean, noisy) == pytest.approx(reference, abs=1e-6)
    assert 0.2 < ssim(clean, noisy) < 0.95


def test_ssim_ranks_degradations(photos_dir):
    clean = _photo(photos_dir)
    light = cv2.GaussianBlur(clean, (3, 3), 0.8)
    heavy = cv2.GaussianBlur(clean, (15, 15), 5.0)
    other = _photo(photos_dir, index=20)
    assert ssim(clean, light) > ssim(clean, heavy) > ssim(clean, other)


def test_psnr_hand_checked():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 10, np.uint8)  # MSE = 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert psnr(a, a) == PSNR_CAP_DB


def test_landmark_error_is_normalised_by_outer_eye_distance():
    rng = np.random.default_rng(1)
    reference = rng.uniform(50, 200, size=(68, 2))
    reference[36] = (80.0, 100.0)
    reference[45] = (180.0, 100.0)  # outer-eye distance 100
    shifted = reference + np.array([3.0, 4.0])  # every point moves by 5 px
    assert landmark_error(shifted, reference) == pytest.approx(0.05)
    assert landmark_error(reference, reference) == 0.0
    with pytest.raises(ValueError):
        landmark_error(reference[:67], reference)


def test_cosine_similarity():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)


def test_frechet_distance_of_gaussians():
    # Same covariance, means 3 apart on one axis: distance = 9 (+ sampling noise).
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4000, 4))
    b = rng.normal(size=(4000, 4)) + np.array([3.0, 0, 0, 0])
    assert frechet_distance(a, b) == pytest.approx(9.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Scaled by 2: Tr(S + 4S - 2 * 2S) = Tr(S) = 4 per unit variance.
    assert frechet_distance(a, 2 * a) == pytest.approx(4.0 + np.sum(a.mean(0) ** 2), rel=0.05)


def test_vgg_perceptual_distance_ranks_degradations(photos_dir):
    from talking_heads.evaluation.perceptual import load_vgg_features
    from talking_heads.evaluation.scoring import perceptual_distance

    vgg = load_vgg_features(size=64)
    clean, other = _photo(photos_dir), _photo(photos_dir, index=20)
    blurred = cv2.GaussianBlur(clean, (7, 7), 2.0)
    ref = vgg.features(clean[None])
    assert perceptual_distance(vgg.features(clean[None]), ref) == 0.0
    assert 0.0 < perceptual_distance(vgg.features(blurred[None]), ref) < \
        perceptual_distance(vgg.features(other[None]), ref)
