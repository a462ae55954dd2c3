"""Relative motion: the source keeps its shape and takes the driving displacement."""

from __future__ import annotations

import numpy as np
import pytest

from talking_heads.landmarks import retarget


def _face(seed: int, centre=(128.0, 128.0), radius=60.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.asarray(centre) + radius * rng.uniform(-1, 1, size=(68, 2))).astype(np.float32)


def test_reference_frame_maps_to_source_exactly():
    source = _face(0)
    driving = np.stack([_face(1, centre=(40, 50), radius=20) + t for t in range(5)])
    out = retarget.relative_motion(source, driving, reference=2)
    np.testing.assert_allclose(out[2], source, atol=1e-4)
    assert out.shape == (5, 68, 2)


def test_displacement_is_scaled_by_face_size():
    source = _face(0, radius=60)
    base = _face(1, centre=(40, 50), radius=20)
    driving = np.stack([base, base + np.array([2.0, -1.0], np.float32)])
    out = retarget.relative_motion(source, driving, reference="first")
    scale = retarget.face_scale(source) / retarget.face_scale(base)
    expected = np.broadcast_to(scale * np.array([2.0, -1.0]), (68, 2))
    np.testing.assert_allclose(out[1] - out[0], expected, atol=1e-3)
    # The source shape is kept: the output differs from the source by a pure translation.
    np.testing.assert_allclose(retarget.normalise_shape(out[1]),
                               retarget.normalise_shape(source), atol=1e-4)


def test_absolute_motion_keeps_driver_shape_at_source_position():
    source = _face(0)
    driving = _face(1, centre=(30, 30), radius=10)[None]
    out = retarget.absolute_motion(source, driving)[0]
    np.testing.assert_allclose(out.mean(0), source.mean(0), atol=1e-3)
    assert retarget.face_scale(out) == pytest.approx(retarget.face_scale(source), rel=1e-4)
    np.testing.assert_allclose(retarget.normalise_shape(out),
                               retarget.normalise_shape(driving[0]), atol=1e-4)


def test_closest_frame_finds_the_matching_expression():
    source = _face(0)
    # Frame 3 has the source's shape, moved and shrunk; the others are other shapes.
    frames = [_face(10 + i) for i in range(6)]
    frames[3] = (source - source.mean(0)) * 0.4 + np.array([20.0, 30.0])
    assert retarget.closest_frame(source, np.stack(frames)) == 3


def test_smoothing_reduces_jitter_and_keeps_length():
    rng = np.random.default_rng(0)
    clean = np.repeat(_face(0)[None], 50, axis=0)
    noisy = clean + rng.normal(0, 2.0, clean.shape).astype(np.float32)
    smooth = retarget.smooth_track(noisy, sigma=2.0)
    assert smooth.shape == noisy.shape
    assert np.abs(smooth - clean).mean() < 0.5 * np.abs(noisy - clean).mean()


def test_fill_missing_interpolates_gaps():
    track = np.zeros((5, 68, 2), np.float32)
    track[0], track[4] = 0.0, 4.0
    found = np.array([True, False, False, False, True])
    filled = retarget.fill_missing(track, found)
    np.testing.assert_allclose(filled[:, 0, 0], [0, 1, 2, 3, 4])
    with pytest.raises(ValueError):
        retarget.fill_missing(track, np.zeros(5, bool))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        retarget.relative_motion(np.zeros((5, 2)), np.zeros((3, 68, 2)))
