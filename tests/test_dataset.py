"""K+1-frame episodes from real preprocessed clips: shapes, splits, consistency, augmentation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from talking_heads.data import preprocess
from talking_heads.data.dataset import (Augmentation, EpisodeDataset, collate_episodes,
                                        list_clips, load_clip, resize_sample)
from talking_heads.images import image_to_tensor, tensor_to_image
from talking_heads.landmarks.detector import get_detector
from talking_heads.landmarks.rasterize import rasterize

TRAIN_CLIP, DEV_CLIP = "lipnet__bbaf2n", "lipnet__swiz3n"  # GRID corpus, 75 frames each


@pytest.fixture(scope="module")
def root(shared_data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("episodes")
    specs = [s for s in preprocess.read_manifest(shared_data / "manifest.csv")
             if s.clip_id in (TRAIN_CLIP, DEV_CLIP)]
    detector = get_detector("dlib")
    for spec in specs:  # in-process: the same steps as `preprocess.run`, without worker start-up
        crops, points, stats = preprocess.crop_clip(spec.path, detector, 256)
        preprocess.write_clip(out, spec, crops, points, stats, 256, detector.name)
    return out


def test_episode_shapes_ranges_and_index(root: Path):
    dataset = EpisodeDataset(root, split="train", k=8, seed=0)
    assert dataset.num_videos == len(dataset) == 1 and dataset.clip_ids == [TRAIN_CLIP]
    episode = dataset[0]
    assert episode.frames.shape == episode.landmarks.shape == (8, 3, 256, 256)
    assert episode.target_frame.shape == episode.target_landmarks.shape == (3, 256, 256)
    assert episode.video_index.dtype == torch.int64 and int(episode.video_index) == 0
    for tensor in (episode.frames, episode.landmarks, episode.target_frame):
        assert tensor.dtype == torch.float32
        assert tensor.min() >= -1 and tensor.max() <= 1
    assert episode.landmarks.min() == -1  # black background


def _frame_index(clip_frames: np.ndarray, image: np.ndarray) -> int:
    matches = np.nonzero((clip_frames == image[None]).all(axis=(1, 2, 3)))[0]
    assert len(matches) >= 1
    return int(matches[0])


def test_frames_are_distinct_and_landmarks_belong_to_their_frames(root: Path):
    dataset = EpisodeDataset(root, split="train", k=8, seed=1)
    clip = load_clip(root, TRAIN_CLIP)
    episode = dataset[0]
    images = tensor_to_image(torch.cat([episode.frames, episode.target_frame[None]]))
    landmark_images = tensor_to_image(torch.cat([episode.landmarks,
                                                 episode.target_landmarks[None]]))
    indices = [_frame_index(np.asarray(clip.frames), image) for image in images]
    assert len(set(indices)) == 9  # K + 1 different frames of the one video
    for index, drawn in zip(indices, landmark_images):
        np.testing.assert_array_equal(drawn, rasterize(clip.landmarks[index], 256))


def test_split_is_honoured_and_indices_are_contiguous(root: Path):
    train = EpisodeDataset(root, split="train", k=4)
    dev = EpisodeDataset(root, split="dev", k=4)
    assert train.clip_ids == [TRAIN_CLIP] and dev.clip_ids == [DEV_CLIP]
    assert not set(train.identities) & set(dev.identities)
    assert [int(dev[i].video_index) for i in range(len(dev))] == list(range(dev.num_videos))
    with pytest.raises(ValueError, match="split"):
        EpisodeDataset(root, split="test")


def test_identity_in_two_splits_is_refused(root: Path, tmp_path: Path):
    for clip in (TRAIN_CLIP, DEV_CLIP):
        (tmp_path / clip).mkdir()
        shutil.copy(root / clip / "meta.json", tmp_path / clip / "meta.json")
    meta_path = tmp_path / DEV_CLIP / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["identity"] = json.loads((root / TRAIN_CLIP / "meta.json").read_text())["identity"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="more than one split"):
        list_clips(tmp_path)


def test_clips_shorter_than_k_plus_one_are_left_out(root: Path):
    with pytest.raises(ValueError, match="at least 101 frames"):
        EpisodeDataset(root, split="train", k=100)


def test_smaller_image_size_rasterizes_at_that_size(root: Path):
    dataset = EpisodeDataset(root, split="train", k=2, image_size=128, seed=3)
    episode = dataset[0]
    assert episode.frames.shape == episode.landmarks.shape == (2, 3, 128, 128)
    clip = load_clip(root, TRAIN_CLIP)
    crop, points = resize_sample(clip.frames[10], clip.landmarks[10], 128)
    assert crop.shape == (128, 128, 3)
    np.testing.assert_allclose(points, (clip.landmarks[10] + 0.5) / 2 - 0.5, atol=1e-5)
    # The episode's landmark image is drawn at 128 px from the scaled points (1 px lines),
    # not a downscaled 256 px drawing.
    small = [resize_sample(f, p, 128) for f, p in zip(clip.frames, clip.landmarks)]
    image = tensor_to_image(episode.target_frame)
    index = _frame_index(np.stack([c for c, _ in small]), image)
    drawn = tensor_to_image(episode.target_landmarks)
    np.testing.assert_array_equal(drawn, rasterize(small[index][1], 128))


def test_seeded_datasets_repeat_and_collate_batches(root: Path):
    a = EpisodeDataset(root, split="train", k=3, augment=True, seed=7)
    b = EpisodeDataset(root, split="train", k=3, augment=True, seed=7)
    first, second = a[0], b[0]
    assert torch.equal(first.frames, second.frames)
    assert torch.equal(first.target_landmarks, second.target_landmarks)
    batch = collate_episodes([a[0], a[0]])
    assert batch.frames.shape == (2, 3, 3, 256, 256)
    assert batch.target_frame.shape == (2, 3, 256, 256) and batch.video_index.shape == (2,)


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_keeps_image_and_landmarks_consistent(root: Path, flip: bool):
    """Detecting on the augmented crop finds the augmented points, index for index (so a flip
    must swap the subject's left and right points)."""
    clip = load_clip(root, TRAIN_CLIP)
    crop, points = np.asarray(clip.frames[20]), np.asarray(clip.landmarks[20])
    augmentation = Augmentation(flip=flip, zoom=1.05, shift=(6.0, -4.0))
    new_crop, new_points = augmentation.apply(crop, points)
    detected = get_detector("dlib").detect(new_crop).points
    inter_ocular = np.linalg.norm(new_points[36] - new_points[45])
    error = np.linalg.norm(detected - new_points, axis=1)
    assert np.median(error) < 0.1 * inter_ocular
    assert (new_points[36:42, 0].mean() < new_points[42:48, 0].mean())
    assert image_to_tensor(new_crop).shape == (3, 256, 256)
