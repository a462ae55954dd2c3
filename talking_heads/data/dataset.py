"""K+1-frame episodes for meta-learning (Zakharov et al. 2019, Sec. 3.2).

An episode of video i: K frames x_i(s_1..s_K) with their landmark images y_i(s_k) for the
embedder E, one more frame x_i(t) with y_i(t) as the generator's target, and the index i of the
video for the discriminator's projection W_i. Item ``i`` of ``EpisodeDataset`` is an episode
of video ``i`` with freshly drawn frames, so ``len(dataset) == num_videos``.

Video indices are contiguous 0..num_videos-1 over the clips of the chosen split, in sorted
clip-id order. Splits come from the manifest (``meta.json``); they hold whole identities, and
an identity found in both splits is an error. Landmark images are drawn at the output size
(``talking_heads.landmarks.rasterize``), so lines stay crisp when ``image_size`` < 256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from talking_heads.images import image_to_tensor
from talking_heads.landmarks.rasterize import flip_points, rasterize

SPLITS = ("train", "dev")


@dataclass
class Episode:
    """One episode (or a batch of them after ``collate_episodes``: a leading B dim).

    frames (K, 3, H, W) and landmarks (K, 3, H, W) for E; target_frame (3, H, W) and
    target_landmarks (3, H, W) for G and D; all float32 in [-1, 1]. video_index: int64 ().
    points (K, 68, 2) and target_points (68, 2): the same frames' landmarks in crop pixels
    (float32), which the warp generator's closed-form warp reads.
    """

    frames: torch.Tensor
    landmarks: torch.Tensor
    target_frame: torch.Tensor
    target_landmarks: torch.Tensor
    video_index: torch.Tensor
    points: torch.Tensor
    target_points: torch.Tensor


def collate_episodes(episodes: list[Episode]) -> Episode:
    """Stack episodes: (K, 3, H, W) -> (B, K, 3, H, W), (3, H, W) -> (B, 3, H, W), () -> (B,)."""
    return Episode(**{f.name: torch.stack([getattr(e, f.name) for e in episodes])
                      for f in fields(Episode)})


@dataclass(frozen=True)
class ClipData:
    """A whole preprocessed clip: crops uint8 (N, S, S, 3), points float32 (N, 68, 2) in crop
    pixels, and its meta.json."""

    frames: np.ndarray
    landmarks: np.ndarray
    meta: dict


def read_meta(root: Path, clip_id: str) -> dict:
    return json.loads((Path(root) / clip_id / "meta.json").read_text())


def load_clip(root: str | Path, clip_id: str, mmap: bool = True) -> ClipData:
    """One preprocessed clip, memory-mapped by default (evaluation and fine-tuning)."""
    folder = Path(root) / clip_id
    mode = "r" if mmap else None
    return ClipData(frames=np.load(folder / "frames.npy", mmap_mode=mode),
                    landmarks=np.load(folder / "landmarks.npy", mmap_mode=mode),
                    meta=read_meta(root, clip_id))


def list_clips(root: str | Path) -> list[dict]:
    """meta.json of every finished clip under ``root`` (unfinished ``.tmp-*`` folders ignored)."""
    metas = [json.loads(p.read_text()) for p in sorted(Path(root).glob("*/meta.json"))
             if not p.parent.name.startswith(".")]
    splits = {}
    for meta in metas:
        splits.setdefault(meta["identity"], set()).add(meta["split"])
    leaking = sorted(identity for identity, s in splits.items() if len(s) > 1)
    if leaking:
        raise ValueError(f"identities in more than one split: {leaking}")
    return metas


def held_out_identities(root: str | Path, count: int, seed: int) -> set[str]:
    """``count`` train identities drawn with ``seed``: the ``val`` subset that picks the best
    checkpoint, so that the dev split stays untouched for reporting."""
    train = sorted({m["identity"] for m in list_clips(root) if m["split"] == "train"})
    if count <= 0:
        return set()
    if count >= len(train):
        raise ValueError(f"cannot hold out {count} of {len(train)} train identities")
    rng = np.random.default_rng(seed)
    return {train[i] for i in rng.choice(len(train), size=count, replace=False)}


def resize_sample(crop: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop (S, S, 3) and its points -> ``size`` pixels (area resize, pixel-centre aware)."""
    source = crop.shape[0]
    if source == size:  # copies: stored clips are read-only memory maps
        return np.array(crop), np.array(points, np.float32)
    factor = size / source
    resized = cv2.resize(np.asarray(crop), (size, size), interpolation=cv2.INTER_AREA)
    return resized, ((np.asarray(points, np.float32) + 0.5) * factor - 0.5).astype(np.float32)


@dataclass(frozen=True)
class Augmentation:
    """One random draw, applied identically to every frame of an episode so that the K frames
    and the target stay one consistent video; images and points move together."""

    flip: bool
    zoom: float      # > 1 zooms in
    shift: tuple[float, float]  # crop pixels

    def apply(self, crop: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = crop.shape[0]
        if self.flip:
            crop = np.ascontiguousarray(crop[:, ::-1])
            points = flip_points(points, size)  # also swaps left/right point indices
        half = (size - 1) / 2.0
        matrix = np.array([[self.zoom, 0.0, half - self.zoom * half + self.shift[0]],
                           [0.0, self.zoom, half - self.zoom * half + self.shift[1]]])
        crop = cv2.warpAffine(crop, matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        points = (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
        return crop, points


def draw_augmentation(rng, size: int, max_zoom: float = 0.06,
                      max_shift: float = 0.03) -> Augmentation:
    """Horizontal flip half of the time, zoom in 1 +- max_zoom, shift +- max_shift * size."""
    shift = rng.uniform(-max_shift, max_shift, size=2) * size
    return Augmentation(flip=bool(rng.random() < 0.5),
                        zoom=float(1.0 + rng.uniform(-max_zoom, max_zoom)),
                        shift=(float(shift[0]), float(shift[1])))


class EpisodeDataset(Dataset):
    """Item i -> ``Episode`` of video i with K + 1 distinct random frames.

    ``seed=None`` draws from numpy's global generator (seeded per DataLoader worker by the
    trainer); an int gives the dataset its own reproducible generator."""

    def __init__(self, root: str | Path, split: str = "train", k: int = 8,
                 image_size: int = 256, augment: bool = False, seed: int | None = None,
                 identities: set[str] | None = None, exclude: set[str] | None = None):
        """``identities`` keeps only those people, ``exclude`` leaves those out (a held-out
        ``val`` subset of the train split for model selection)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split, self.k = Path(root), split, int(k)
        self.image_size, self.augment = int(image_size), bool(augment)
        metas = [m for m in list_clips(self.root) if m["split"] == split
                 and (identities is None or m["identity"] in identities)
                 and (exclude is None or m["identity"] not in exclude)]
        # A clip needs K + 1 distinct frames; shorter ones cannot form an episode.
        self.too_short = sorted(m["clip"] for m in metas if m["kept"] < self.k + 1)
        self.metas = sorted((m for m in metas if m["kept"] >= self.k + 1),
                            key=lambda m: m["clip"])
        if not self.metas:
            raise ValueError(f"no {split!r} clips with at least {self.k + 1} frames in {root}")
        self.clip_ids = [m["clip"] for m in self.metas]
        self.identities = sorted({m["identity"] for m in self.metas})
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._clips: dict[int, ClipData] = {}

    @property
    def num_videos(self) -> int:
        return len(self.metas)

    def __len__(self) -> int:
        return self.num_videos

    def clip(self, video_index: int) -> ClipData:
        if video_index not in self._clips:  # opened lazily: memmaps are per worker process
            self._clips[video_index] = load_clip(self.root, self.clip_ids[video_index])
        return self._clips[video_index]

    def sample(self, clip: ClipData, index: int, augmentation: Augmentation | None):
        """Frame ``index`` of a clip -> (image tensor (3, H, W), landmark tensor (3, H, W),
        points (68, 2) in crop pixels)."""
        crop, points = resize_sample(clip.frames[index], clip.landmarks[index], self.image_size)
        if augmentation is not None:
            crop, points = augmentation.apply(crop, points)
        return (image_to_tensor(crop), image_to_tensor(rasterize(points, self.image_size)),
                torch.from_numpy(np.asarray(points, np.float32)))

    def __getitem__(self, video_index: int) -> Episode:
        rng = self._rng if self._rng is not None else np.random
        clip = self.clip(int(video_index))
        chosen = rng.choice(len(clip.frames), size=self.k + 1, replace=False)
        augmentation = draw_augmentation(rng, self.image_size) if self.augment else None
        pairs = [self.sample(clip, int(i), augmentation) for i in chosen]
        images = torch.stack([p[0] for p in pairs])  # (K + 1, 3, H, W)
        landmarks = torch.stack([p[1] for p in pairs])  # (K + 1, 3, H, W)
        points = torch.stack([p[2] for p in pairs])  # (K + 1, 68, 2)
        return Episode(frames=images[:-1], landmarks=landmarks[:-1], target_frame=images[-1],
                       target_landmarks=landmarks[-1],
                       video_index=torch.tensor(int(video_index), dtype=torch.int64),
                       points=points[:-1], target_points=points[-1])
