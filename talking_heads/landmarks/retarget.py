"""Relative motion: move the *source* face's landmarks by the *driving* face's motion.

Driving the generator G with another person's landmark images y(t) transfers that person's
face shape along with the motion (Zakharov et al. 2019, Sec. 5, limitations). The common fix
(FOMM's and LivePortrait's "relative motion") keeps the source shape and adds only the driving
displacement relative to a reference driving frame:

    y_src(t) = p_src + s * (p_drv(t) - p_drv(ref)),

where ``s`` aligns the driving face's size to the source's. Scale and translation are the only
alignment, so head turns and nods of the driving clip still show up as landmark motion.

All point arrays are float (..., 68, 2) in one common frame (e.g. crop pixels).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

NUM_POINTS = 68


def _check_points(points: np.ndarray, name: str, track: bool) -> np.ndarray:
    array = np.asarray(points, dtype=np.float32)
    expected = 3 if track else 2
    if array.ndim != expected or array.shape[-2:] != (NUM_POINTS, 2):
        shape = "(T, 68, 2)" if track else "(68, 2)"
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def face_scale(points: np.ndarray) -> np.ndarray:
    """Root-mean-square distance of the points from their centroid: (..., 68, 2) -> (...)."""
    centred = points - points.mean(axis=-2, keepdims=True)
    return np.sqrt((centred ** 2).sum(axis=-1).mean(axis=-1))


def normalise_shape(points: np.ndarray) -> np.ndarray:
    """Remove position and size: centroid at 0, RMS radius 1. (..., 68, 2) -> same shape."""
    centred = points - points.mean(axis=-2, keepdims=True)
    return centred / np.maximum(face_scale(points), 1e-6)[..., None, None]


def closest_frame(source: np.ndarray, driving: np.ndarray) -> int:
    """Index of the driving frame whose normalised shape is nearest the source's.

    Used as the reference frame: the source photo's expression is matched to the driving
    frame that looks most like it, so ``p_drv(t) - p_drv(ref)`` starts from a similar pose.
    """
    source = _check_points(source, "source", track=False)
    driving = _check_points(driving, "driving", track=True)
    distances = np.abs(normalise_shape(driving) - normalise_shape(source)[None]).sum(axis=(1, 2))
    return int(np.argmin(distances))


def _reference(source: np.ndarray, driving: np.ndarray, reference: int | str) -> int:
    if reference == "closest":
        return closest_frame(source, driving)
    if reference == "first":
        return 0
    if isinstance(reference, (int, np.integer)) and 0 <= reference < len(driving):
        return int(reference)
    raise ValueError(f"reference must be 'closest', 'first' or a frame index, got {reference!r}")


def relative_motion(source: np.ndarray, driving: np.ndarray,
                    reference: int | str = "closest") -> np.ndarray:
    """Source shape moved by the driving motion: (68, 2), (T, 68, 2) -> (T, 68, 2).

    ``s`` = face_scale(source) / face_scale(driving[ref]); the displacement of every driving
    frame from the reference frame is scaled by ``s`` and added to the source points.
    """
    source = _check_points(source, "source", track=False)
    driving = _check_points(driving, "driving", track=True)
    ref = _reference(source, driving, reference)
    scale = face_scale(source) / max(float(face_scale(driving[ref])), 1e-6)
    return source[None] + scale * (driving - driving[ref][None])  # (T, 68, 2)


def absolute_motion(source: np.ndarray, driving: np.ndarray,
                    reference: int | str = "closest") -> np.ndarray:
    """Driving points placed onto the source face (scale + translation only).

    The driving face's own shape is kept (this is the paper's plain reenactment, which shows
    the driver's face shape); only its size and position follow the source.
    """
    source = _check_points(source, "source", track=False)
    driving = _check_points(driving, "driving", track=True)
    ref = _reference(source, driving, reference)
    scale = face_scale(source) / max(float(face_scale(driving[ref])), 1e-6)
    centre_src = source.mean(axis=0)
    centre_ref = driving[ref].mean(axis=0)
    return centre_src + scale * (driving - centre_ref)  # (T, 68, 2)


def smooth_track(points: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Temporal Gaussian smoothing of a landmark track (detector jitter), (T, 68, 2).

    ``sigma`` is in frames; 0 returns the track unchanged. Edges repeat the end frames.
    """
    track = _check_points(points, "points", track=True)
    if sigma <= 0 or len(track) < 2:
        return track.copy()
    return gaussian_filter1d(track, sigma=sigma, axis=0, mode="nearest").astype(np.float32)


def fill_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a detection by linear interpolation over time. (T, 68, 2), (T,).

    Frames before the first (after the last) detection repeat it. Raises if none were found.
    """
    track = np.asarray(points, dtype=np.float32).copy()
    found = np.asarray(found, dtype=bool)
    if track.shape[0] != found.shape[0]:
        raise ValueError("points and found must have the same length")
    if not found.any():
        raise ValueError("no frame has a detected face")
    times = np.arange(len(track))
    known = times[found]
    flat = track.reshape(len(track), -1)  # (T, 136)
    for column in range(flat.shape[1]):
        flat[:, column] = np.interp(times, known, flat[found, column])
    return flat.reshape(track.shape)  # (T, 68, 2)
