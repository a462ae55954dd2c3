"""Landmark detection on real photos: dlib backend, face-alignment backend offline, no face."""

from __future__ import annotations

import email.message
import hashlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from talking_heads.images import bgr_to_rgb
from talking_heads.landmarks import detector as detector_module
from talking_heads.landmarks.detector import DetectorUnavailable, get_detector


def _read(path: Path) -> np.ndarray:
    return bgr_to_rgb(cv2.imread(str(path)))


@pytest.fixture(scope="module")
def dlib_detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> list[Path]:
    return sorted(photos_dir.glob("*/*.jpg"))


def _part_center(points: np.ndarray, start: int, stop: int) -> np.ndarray:
    return points[start:stop].mean(axis=0)


def test_dlib_finds_the_face_in_every_real_photo(dlib_detector, photos):
    assert len(photos) >= 50
    for path in photos:
        image = _read(path)
        result = dlib_detector.detect(image)
        assert result.found and result.num_faces >= 1, path.name
        points = result.points
        assert points.shape == (68, 2) and points.dtype == np.float32
        height, width = image.shape[:2]
        assert (points[:, 0] > -5).all() and (points[:, 0] < width + 5).all()
        # Anatomy in image coordinates: subject's right eye (36-41) is on the image's left,
        # eyes above the nose tip (30), nose tip above the mouth (48-59), mouth above the chin.
        right_eye, left_eye = _part_center(points, 36, 42), _part_center(points, 42, 48)
        mouth = _part_center(points, 48, 60)
        assert right_eye[0] < left_eye[0]
        assert max(right_eye[1], left_eye[1]) < points[30, 1] < mouth[1] < points[8, 1]
        # Points sit inside (a slightly enlarged) detector box.
        x0, y0, x1, y1 = result.box
        margin = 0.3 * (x1 - x0)
        assert (points[:, 0] > x0 - margin).all() and (points[:, 0] < x1 + margin).all()


def test_large_frame_points_match_the_small_photo(dlib_detector, photos):
    """A 720p frame is detected on a downscaled copy, points at full resolution."""
    image = _read(photos[0])
    small = dlib_detector.detect(image)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 600 x 600
    frame[60:660, 500:1100] = big
    large = dlib_detector.detect(frame)
    assert large.found and large.num_faces == 1
    expected = small.points * 4 + 1.5 + np.array([500, 60])  # pixel centres under 4x resize
    error = np.linalg.norm(large.points - expected, axis=1)
    inter_ocular = np.linalg.norm(expected[36] - expected[45])
    assert np.median(error) < 0.06 * inter_ocular


def test_several_faces_largest_wins_and_count_is_reported(dlib_detector, photos):
    a, b = _read(photos[0]), _read(photos[20])
    b_big = cv2.resize(b, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # 300 x 300
    canvas = np.full((300, 460, 3), 128, np.uint8)
    canvas[75:225, 0:150] = a
    canvas[:, 160:460] = b_big
    result = dlib_detector.detect(canvas)
    assert result.num_faces == 2
    assert result.points[:, 0].min() > 150  # the points belong to the larger, right-hand face


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_photo_without_a_face_gives_no_face(dlib_detector, name):
    image = getattr(skimage.data, name)()  # real photos: a coffee cup, a cat
    result = dlib_detector.detect(image)
    assert not result.found
    assert result.points is None and result.box is None and result.num_faces == 0


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown landmark detector"):
        get_detector("nope")


class _Served:
    """Stands in for the HTTP response torch.hub's download reads: ``payload``'s bytes."""

    def __init__(self, payload: bytes) -> None:
        self._payload = io.BytesIO(payload)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def info(self):
        return email.message.Message()  # no Content-Length

    def read(self, size: int = -1) -> bytes:
        return self._payload.read(size)


def test_face_alignment_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DetectorUnavailable, match="weights"):
        get_detector("face_alignment", download=False)

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    import torch.hub

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(DetectorUnavailable, match="could not be downloaded"):
        get_detector("face_alignment")


def test_downloaded_fan_weights_must_match_their_sha256(tmp_path, monkeypatch):
    """A file other than the published one is refused and leaves nothing in the cache."""
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    served = b"not the 2D-FAN weights"
    monkeypatch.setattr(torch.hub, "urlopen", lambda request: _Served(served))
    with pytest.raises(DetectorUnavailable, match="SHA-256"):
        get_detector("face_alignment")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    # The same download with the served file's own digest goes into place.
    monkeypatch.setattr(detector_module, "FAN_WEIGHTS_SHA256", hashlib.sha256(served).hexdigest())
    path = detector_module._ensure_fan_weights(download=True)
    assert path == detector_module.fan_weights_path() and path.read_bytes() == served


@pytest.fixture(scope="module")
def fan_torch_home(tmp_path_factory):
    """A TORCH_HOME holding a stand-in 2D-FAN checkpoint (the real architecture, seeded random
    weights) under the file name face-alignment looks for."""
    import torch
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    target = home / "hub" / "checkpoints" / Path(detector_module.FAN_WEIGHTS_URL).name
    target.parent.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), target)
    return home


def test_face_alignment_backend_runs_its_real_code_path(fan_torch_home, photos, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(fan_torch_home))
    assert detector_module.fan_weights_path().is_file()
    fan = get_detector("face_alignment", download=False)
    assert fan.name == "face_alignment"
    image = _read(photos[0])
    result = fan.detect(image)
    assert result.found and result.num_faces == 1
    assert result.points.shape == (68, 2) and result.points.dtype == np.float32
    # Random weights give random heat-map peaks, but FAN maps them back into its crop around
    # the face box (side ~2x the box), so they land near the face.
    x0, y0, x1, y1 = result.box
    side = x1 - x0
    assert (result.points[:, 0] > x0 - side).all() and (result.points[:, 0] < x1 + side).all()
    assert (result.points[:, 1] > y0 - side).all() and (result.points[:, 1] < y1 + side).all()
    assert not fan.detect(skimage.data.coffee()).found


def test_tracking_near_the_previous_box_matches_full_frame_detection(dlib_detector,
                                                                      shared_data: Path):
    from talking_heads.video import iter_frames

    frames = list(iter_frames(shared_data / "clips" / "liveportrait__s18.mp4", max_frames=20))
    box = None
    for frame in frames:
        full = dlib_detector.detect(frame)
        tracked = dlib_detector.detect(frame, near=box)
        assert full.found and tracked.found
        inter_ocular = np.linalg.norm(full.points[36] - full.points[45])
        error = np.linalg.norm(tracked.points - full.points, axis=1)
        assert np.median(error) < 0.05 * inter_ocular
        box = tracked.box
    # A stale hint far from the face (top-left corner) falls back to the whole frame.
    lost = dlib_detector.detect(frames[-1], near=(0.0, 0.0, 60.0, 60.0))
    assert lost.found
    assert np.linalg.norm(lost.points - dlib_detector.detect(frames[-1]).points, axis=1).max() < 1


def test_tracking_a_small_face_gives_the_same_answer_every_time(dlib_detector, photos):
    """A face under ``track_face`` px is searched at scale 1 in a strided view of the frame;
    dlib read such views inconsistently (different boxes, or none, from one call to the next)."""
    frame = np.full((288, 360, 3), 40, np.uint8)
    frame[90:190, 130:230] = cv2.resize(_read(photos[0]), (100, 100))  # a face under 100 px
    box = dlib_detector.detect(frame).box
    assert max(box[2] - box[0], box[3] - box[1]) < dlib_detector.track_face
    answers = {(dlib_detector.detect(frame, near=box).box) for _ in range(30)}
    assert len(answers) == 1 and None not in answers
