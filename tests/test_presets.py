"""Preset driving motions: compact, pickle-free landmark tracks of about 10 s."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from talking_heads import presets
from talking_heads.landmarks import retarget

from conftest import PROJECT_ROOT


def test_presets_cover_the_advertised_motions():
    names = presets.preset_names()
    for wanted in ("talking", "nodding", "turning", "smiling"):
        assert wanted in names


@pytest.mark.parametrize("name", presets.preset_names())
def test_each_preset_is_a_compact_10s_track_inside_the_crop(name):
    preset = presets.load_preset(name)
    assert preset.points.shape == (preset.num_frames, 68, 2)
    assert 9.5 <= preset.duration <= 10.5
    assert 0.0 < preset.points.min() and preset.points.max() < 1.0
    file = presets.PRESET_DIR / f"{name}.npz"
    assert file.stat().st_size < 100 * 1024
    with np.load(file, allow_pickle=False) as data:  # raises if anything needed pickle
        assert data["points"].dtype == np.float16
    assert preset.description and preset.source


def _motion(track: np.ndarray, index: int, axis: int) -> float:
    """Range of a point's position over time, relative to the face size."""
    scale = float(np.median(retarget.face_scale(track)))
    return float(np.ptp(track[:, index, axis]) / scale)


def test_presets_move_the_way_their_names_say():
    nod = presets.load_preset("nodding").points
    turn = presets.load_preset("turning").points
    talk = presets.load_preset("talking").points
    nose_tip = 30
    assert _motion(nod, nose_tip, 1) > 2 * _motion(nod, nose_tip, 0)     # vertical
    assert _motion(turn, nose_tip, 0) > 2 * _motion(turn, nose_tip, 1)   # horizontal
    mouth_gap = np.linalg.norm(talk[:, 62] - talk[:, 66], axis=-1) / retarget.face_scale(talk)
    assert np.ptp(mouth_gap) > 0.1, "the talking preset must open and close the mouth"


def test_points_in_crop_scales_with_the_crop():
    preset = presets.load_preset("talking")
    small, large = preset.points_in_crop(128), preset.points_in_crop(256)
    np.testing.assert_allclose((large + 0.5) / 256, (small + 0.5) / 128, atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    points = np.random.default_rng(0).uniform(0.2, 0.8, (25, 68, 2)).astype(np.float32)
    preset = presets.Preset("wave", "a test", "random", 25.0, points)
    presets.save_preset(preset, tmp_path)
    loaded = presets.load_preset("wave", tmp_path)
    assert loaded.fps == 25.0 and loaded.num_frames == 25
    np.testing.assert_allclose(loaded.points, points, atol=1e-3)  # float16 storage
    with pytest.raises(KeyError, match="unknown preset"):
        presets.load_preset("../wave", tmp_path)


def test_talking_preset_is_reproduced_by_the_project_preprocessing(shared_data):
    """The stored track is what the project's detector and crop give on the train clip."""
    spec = importlib.util.spec_from_file_location("make_presets",
                                                  PROJECT_ROOT / "scripts" / "make_presets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_presets"] = module
    spec.loader.exec_module(module)
    from talking_heads.landmarks.detector import get_detector

    clip = next(p for p in module.CLIP_PRESETS if p.name == "talking")
    track, fps, missing = module.clip_track(shared_data / clip.clip, clip.start, 300,
                                            get_detector("dlib"))
    stored = presets.load_preset("talking")
    assert fps == stored.fps and missing == 0
    # Crop smoothing looks ahead, so compare the whole track (float16 storage: ~1e-4).
    assert np.abs(track - stored.points).max() < 2e-3
