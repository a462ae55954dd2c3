"""Training pairs for fine-tuning the warp design on T photos of one person (section 3.3).

The warp generator renders a target from a *source*; trained on a photo as its own source
it would learn the identity map. So each step draws targets and gives each one a source that
differs from it:

- T = 1: the target is a random geometric augmentation of the photo (rotation, zoom, shift;
  image and points move together) and the source is the photo itself;
- T > 1: the target is photo j, mildly augmented, and its source is the nearest of the other
  T - 1 photos (as at render time, when each frame takes the nearest source).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from talking_heads.images import image_to_tensor, tensor_to_image
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.models.warp import Sources


@dataclass(frozen=True)
class AugmentRange:
    """Random similarity transforms about the crop centre."""

    rotation: float = 8.0  # degrees, +-
    zoom: float = 0.08     # relative, +-
    shift: float = 0.04    # fraction of the crop side, +-


@dataclass
class PairBatch:
    """Targets x, y (B, 3, S, S), their points (B, 68, 2) and the sources to render them from."""

    images: torch.Tensor
    landmarks: torch.Tensor
    points: torch.Tensor
    sources: Sources


def augment(image: np.ndarray, points: np.ndarray, rng: np.random.Generator,
            limits: AugmentRange) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (S, S, 3) crop and (68, 2) points -> the same under one random similarity."""
    size = image.shape[0]
    half = (size - 1) / 2.0
    angle = rng.uniform(-limits.rotation, limits.rotation)
    scale = 1.0 + rng.uniform(-limits.zoom, limits.zoom)
    matrix = cv2.getRotationMatrix2D((half, half), angle, scale)
    matrix[:, 2] += rng.uniform(-limits.shift, limits.shift, size=2) * size
    warped = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return warped, (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


class PairSampler:
    """Draws ``PairBatch``es from T crops (T, 3, S, S) in [-1, 1] and points (T, 68, 2).

    ``pool`` None: every draw augments afresh. ``pool`` N: N pairs are drawn once (the targets
    cycle through the T photos) and every draw picks from them, so that the fine-tuning loop
    can compute the targets' content features once (``draw`` returns the pool indices)."""

    def __init__(self, frames: torch.Tensor, points: torch.Tensor, seed: int = 0,
                 limits: AugmentRange = AugmentRange(), pool: int | None = None,
                 targets: list[int] | None = None) -> None:
        if frames.dim() != 4 or points.shape != (frames.shape[0], 68, 2):
            raise ValueError(f"expected (T, 3, S, S) crops and (T, 68, 2) points, got "
                             f"{tuple(frames.shape)}, {tuple(points.shape)}")
        if pool is not None and pool < 1:
            raise ValueError(f"pool must be at least 1, got {pool}")
        self.frames, self.points = frames, points.float()
        self.crops = tensor_to_image(frames)  # uint8 (T, S, S, 3)
        self.landmarks = image_to_tensor(np.stack([rasterize(p, frames.shape[-1])
                                                   for p in self.points.cpu().numpy()]))
        self.landmarks = self.landmarks.to(frames.device)
        self.rng = np.random.default_rng(seed)
        self.limits = limits
        count = frames.shape[0]
        # the photos that may be targets (all by default); every photo stays a source
        self.targets = np.arange(count) if targets is None else np.asarray(targets)
        if len(self.targets) == 0 or not set(self.targets.tolist()) <= set(range(count)):
            raise ValueError(f"targets must be photo indices below {count}, got {targets}")
        self.pool = (None if pool is None
                     else self.make(self.targets[np.arange(pool) % len(self.targets)]))
        self.last_indices: np.ndarray | None = None  # pool rows of the last draw

    def draw(self, batch: int) -> PairBatch:
        if self.pool is not None:
            size = len(self.pool.images)
            rows = (self.rng.permutation(size)[:batch] if batch <= size
                    else self.rng.integers(size, size=batch))
            self.last_indices = rows
            return self.take(rows)
        pick = len(self.targets)
        chosen = (self.rng.permutation(pick)[:batch] if batch <= pick
                  else self.rng.integers(pick, size=batch))
        return self.make(self.targets[chosen])

    def take(self, rows: np.ndarray) -> PairBatch:
        """Rows of the pool as a batch."""
        pool, index = self.pool, torch.as_tensor(rows, device=self.frames.device)
        s = pool.sources
        if s.shared_by_batch:
            sources = Sources.shared(self.frames, self.landmarks, self.points, len(rows))
        else:
            sources = Sources(s.images[index], s.landmarks[index], s.points[index])
        return PairBatch(pool.images[index], pool.landmarks[index], pool.points[index], sources)

    def make(self, chosen: np.ndarray) -> PairBatch:
        """Freshly augmented targets of the photos ``chosen`` with their sources."""
        count, size, device = self.frames.shape[0], self.frames.shape[-1], self.frames.device
        images, points = [], []
        for j in chosen:
            image, moved = augment(self.crops[j], self.points[j].cpu().numpy(), self.rng,
                                   self.limits)
            images.append(image)
            points.append(moved)
        points_t = torch.from_numpy(np.stack(points)).to(device)  # (B, 68, 2)
        landmarks = image_to_tensor(np.stack([rasterize(p, size) for p in points])).to(device)
        if count == 1:
            sources = Sources.shared(self.frames, self.landmarks, self.points, len(chosen))
        else:  # each target j: the other T - 1 photos (the nearest is used when rendering)
            others = torch.stack([torch.tensor([i for i in range(count) if i != j])
                                  for j in chosen]).to(device)  # (B, T - 1)
            sources = Sources(self.frames[others], self.landmarks[others], self.points[others])
        return PairBatch(image_to_tensor(np.stack(images)).to(device), landmarks, points_t,
                         sources)
