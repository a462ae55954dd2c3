"""One real clip preprocessed end to end through the CLI; resumable; atomic clip folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from talking_heads.__main__ import main as cli
from talking_heads.data import preprocess
from talking_heads.landmarks.detector import get_detector

CLIP = "lipnet__bbaf2n"  # 75 frames, 360 x 288, GRID corpus


@pytest.fixture(scope="module")
def processed(shared_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preprocessed")
    code = cli(["preprocess", "--manifest", str(shared_data / "manifest.csv"), "--out", str(out),
                "--workers", "1", "--clips", CLIP])
    assert code == 0
    return out


def test_real_clip_end_to_end(processed: Path, shared_data: Path):
    folder = processed / CLIP
    frames = np.load(folder / "frames.npy")
    points = np.load(folder / "landmarks.npy")
    meta = json.loads((folder / "meta.json").read_text())
    row = next(r for r in csv.DictReader(open(shared_data / "manifest.csv"))
               if Path(r["file"]).stem == CLIP)
    assert meta["identity"] == row["identity"] and meta["split"] == row["split"]
    assert meta["fps"] == pytest.approx(float(row["fps"]), abs=0.01)
    assert meta["source_file"] == row["file"] and meta["size"] == 256
    assert meta["total_frames"] == int(row["frames"])
    assert meta["kept"] + meta["skipped"] == meta["total_frames"]
    assert len(meta["frame_indices"]) == meta["kept"] == len(frames) == len(points)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (256, 256, 3)
    assert points.dtype == np.float32 and points.shape[1:] == (68, 2)
    assert meta["kept"] >= 70  # a frontal studio clip: (nearly) every frame has the face
    # Crops are face-centred; the stored points describe the stored crop: detecting again on
    # the crop finds the same face where the points say it is.
    centers = (points.min(axis=1) + points.max(axis=1)) / 2  # (N, 2)
    assert np.abs(centers[:, 0] - 127.5).max() < 12
    detector = get_detector("dlib")
    for i in (0, len(frames) // 2, len(frames) - 1):
        again = detector.detect(frames[i]).points
        inter_ocular = np.linalg.norm(points[i, 36] - points[i, 45])
        assert np.median(np.linalg.norm(again - points[i], axis=1)) < 0.1 * inter_ocular
    index = json.loads((processed / "index.json").read_text())
    assert [c["clip"] for c in index["clips"]] == [CLIP]


def test_rerun_skips_finished_clips(processed: Path, shared_data: Path, capsys):
    before = (processed / CLIP / "frames.npy").stat().st_mtime_ns
    specs = [s for s in preprocess.read_manifest(shared_data / "manifest.csv")
             if s.clip_id == CLIP]
    results = preprocess.run(specs, processed, workers=1, progress=False)
    assert results == []
    assert (processed / CLIP / "frames.npy").stat().st_mtime_ns == before


def test_workers_are_spawned_not_forked(tmp_path: Path, monkeypatch):
    """A forked worker inherits OpenCV's thread pool from a test process that already used it,
    but not its threads: it hung for good in _init_worker's ``cv2.setNumThreads(1)``
    (pthread_cond_destroy waiting for those threads), and the whole suite with it."""
    seen = []

    class Recorder:
        def __init__(self, max_workers, mp_context=None, **kwargs):
            seen.append(mp_context.get_start_method() if mp_context else None)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(preprocess, "ProcessPoolExecutor", Recorder)
    assert preprocess.run([], tmp_path, workers=2, progress=False) == []
    assert seen == ["spawn"]


def test_unfinished_clip_is_redone_and_temp_folders_cleared(tmp_path: Path, shared_data: Path):
    specs = [s for s in preprocess.read_manifest(shared_data / "manifest.csv")
             if s.clip_id == CLIP]
    (tmp_path / CLIP).mkdir()  # a folder without meta.json: killed before the rename
    (tmp_path / f"{preprocess.TEMP_PREFIX}{CLIP}").mkdir()
    assert not preprocess.is_done(tmp_path, CLIP)
    results = preprocess.run(specs, tmp_path, workers=1, progress=False)
    assert [r.clip_id for r in results] == [CLIP] and results[0].error is None
    assert preprocess.is_done(tmp_path, CLIP)
    assert not list(tmp_path.glob(f"{preprocess.TEMP_PREFIX}*"))


def test_frames_without_a_face_are_skipped_and_counted(tmp_path: Path, photos_dir: Path):
    """A clip whose middle frames show no face (a real photo of coffee) keeps face frames only."""
    import cv2
    import skimage.data

    from talking_heads.video import write_mp4

    face = np.zeros((288, 360, 3), np.uint8)
    photo = sorted(photos_dir.glob("*/*.jpg"))[0]
    face[60:210, 100:250] = cv2.imread(str(photo))[:, :, ::-1]
    coffee = np.ascontiguousarray(skimage.data.coffee()[:288, :360])
    clip = [face] * 6 + [coffee] * 4 + [face] * 6
    path = tmp_path / "mixed.mp4"
    write_mp4(path, clip, fps=25.0)
    crops, points, stats = preprocess.crop_clip(path, get_detector("dlib"), 128)
    assert stats["total_frames"] == 16 and stats["skipped"] == 4
    assert stats["frame_indices"] == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]
    assert crops.shape == (12, 128, 128, 3) and points.shape == (12, 68, 2)


def test_shots_of_another_person_are_dropped(tmp_path: Path, photos_dir: Path):
    """A cutaway to someone else (another real person's photo) is left out of the clip; the
    main person, in a different photo after the cut, is kept."""
    import cv2

    from talking_heads.evaluation.identity import FaceIdentity
    from talking_heads.video import write_mp4

    people = sorted(p for p in photos_dir.iterdir() if p.is_dir())
    main_photos = sorted(people[0].glob("*.jpg"))
    other_photo = sorted(people[1].glob("*.jpg"))[0]

    def frame(photo: Path, x: int) -> np.ndarray:
        canvas = np.full((288, 480, 3), 30, np.uint8)
        canvas[70:220, x:x + 150] = cv2.imread(str(photo))[:, :, ::-1]
        return canvas

    clip = [frame(main_photos[0], 40)] * 8 + [frame(other_photo, 290)] * 5 \
        + [frame(main_photos[1], 60)] * 8
    path = tmp_path / "cutaway.mp4"
    write_mp4(path, clip, fps=25.0)
    crops, _, stats = preprocess.crop_clip(path, get_detector("dlib"), 128, FaceIdentity())
    assert stats["other_person_frames"] == 5 and stats["shots"] == 2
    assert stats["frame_indices"] == list(range(8)) + list(range(13, 21))
    assert stats["skipped"] == 5 and len(crops) == 16


def test_a_clip_is_cropped_without_holding_its_frames(shared_data: Path):
    """Memory holds the crops and a few decoded frames, not every full-resolution frame
    (a minute of 1080p would be about 9 GB): the clip is decoded twice instead."""
    import tracemalloc

    from talking_heads.video import iter_frames

    path = shared_data / "clips" / f"{CLIP}.mpg"
    frame_bytes = next(iter_frames(path)).nbytes
    detector = get_detector("dlib")
    tracemalloc.start()
    try:
        crops, points, stats = preprocess.crop_clip(path, detector, 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats["total_frames"] == 75 and len(crops) == 75
    # The output, held twice while it is assembled, plus a few frames in flight.
    assert peak < 3 * (crops.nbytes + points.nbytes) + 10 * frame_bytes
    assert peak < stats["total_frames"] * frame_bytes / 2  # far below keeping them all
