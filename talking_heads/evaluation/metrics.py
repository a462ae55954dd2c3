"""Image metrics of the self-reenactment protocol (Zakharov et al. 2019, Sec. 5.1 / Table 1).

All functions take images in the project's convention (uint8 (H, W, 3) RGB, see
``talking_heads.images``) and compare a generated frame x-hat with the ground truth x.

- ``ssim``: structural similarity (Wang et al. 2004) with an 11x11 Gaussian window,
  sigma 1.5, K1 = 0.01, K2 = 0.03, dynamic range 255, computed *per RGB channel* over the
  'valid' region (windows entirely inside the image) and averaged over channels. This matches
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=2)``.
- ``psnr``: 10 log10(255^2 / MSE) over all pixels and channels, capped at ``PSNR_CAP_DB`` so
  that identical images give a finite number that can be averaged.
- ``landmark_error``: mean point-to-point distance of the 68 points, normalised by the
  distance between the outer eye corners (iBUG points 36 and 45) of the reference.
- ``frechet_distance``: Frechet distance between Gaussians fitted to two feature sets (the
  formula of FID; which features are used must be named by the caller, e.g. "FD-dlib").
"""

from __future__ import annotations

import cv2
import numpy as np

PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
OUTER_EYE_CORNERS = (36, 45)  # iBUG 68: left eye outer corner, right eye outer corner


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) images of equal shape, got {a.shape}, {b.shape}")


def _gaussian_filter_valid(image: np.ndarray) -> np.ndarray:
    """Separable 11x11 Gaussian (sigma 1.5) filter keeping only windows inside the image."""
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)  # (11, 1), sums to 1
    filtered = cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    pad = SSIM_WINDOW // 2
    return filtered[pad:-pad, pad:-pad]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 RGB images, per channel then averaged (see module docstring)."""
    _check_pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW} px on each side")
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    values = []
    for channel in range(3):
        x = a[:, :, channel].astype(np.float64)
        y = b[:, :, channel].astype(np.float64)
        mu_x, mu_y = _gaussian_filter_valid(x), _gaussian_filter_valid(y)
        var_x = _gaussian_filter_valid(x * x) - mu_x * mu_x
        var_y = _gaussian_filter_valid(y * y) - mu_y * mu_y
        cov = _gaussian_filter_valid(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        denominator = (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)
        values.append(float(np.mean(numerator / denominator)))
    return float(np.mean(values))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 RGB images, capped at ``PSNR_CAP_DB``."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * np.log10(255.0 ** 2 / mse)))


def outer_eye_distance(points: np.ndarray) -> float:
    """Distance between the outer eye corners of (68, 2) landmarks (the normaliser)."""
    left, right = OUTER_EYE_CORNERS
    return float(np.linalg.norm(points[right] - points[left]))


def landmark_error(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean 68-point distance between ``points`` and ``reference`` / outer-eye distance of the
    reference (the "NME" of face alignment with inter-ocular normalisation)."""
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if points.shape != (68, 2) or reference.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}, {reference.shape}")
    scale = outer_eye_distance(reference)
    if scale <= 0.0:
        raise ValueError("reference landmarks have coincident outer eye corners")
    return float(np.mean(np.linalg.norm(points - reference, axis=1)) / scale)


def cosine_similarity(u: np.ndarray, v: np.ndarray) -> float:
    """cos(u, v) of two 1-D feature vectors (CSIM when they are identity embeddings)."""
    u = np.asarray(u, dtype=np.float64).ravel()
    v = np.asarray(v, dtype=np.float64).ravel()
    norm = np.linalg.norm(u) * np.linalg.norm(v)
    if norm == 0.0:
        raise ValueError("cosine similarity of a zero vector")
    return float(np.dot(u, v) / norm)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two (n, d) feature sets.

    With fewer samples than dimensions the covariances are singular and the value is biased
    upwards (as FID is); compare numbers only at equal sample counts.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"expected two (n >= 2, d) feature sets, got {a.shape}, {b.shape}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues) of the symmetric PSD matrix
    # S_a^(1/2) S_b S_a^(1/2); eigh on symmetric matrices stays real even when S is singular.
    eigvals_a, eigvecs_a = np.linalg.eigh(cov_a)
    sqrt_a = (eigvecs_a * np.sqrt(np.clip(eigvals_a, 0.0, None))) @ eigvecs_a.T
    middle = sqrt_a @ cov_b @ sqrt_a
    eigvals = np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)
    trace_sqrt = float(np.sum(np.sqrt(eigvals)))
    distance = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                     - 2 * trace_sqrt)
    return max(distance, 0.0)
