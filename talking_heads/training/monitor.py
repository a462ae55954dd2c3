"""Watching a run learn: dev metrics over time, PNG sample grids, a JSONL log.

Dev metrics are feed-forward (FF) self-reenactment on a few *fixed* episodes of the ``dev``
split (identities never trained on): e = mean E over K frames, psi-hat = P e,
x-hat = G(y_t, psi-hat), compared with x_t by L1 (on [-1, 1] pixels), PSNR and SSIM (the
definitions of ``talking_heads.evaluation.metrics``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from talking_heads.evaluation.metrics import psnr, ssim
from talking_heads.images import rgb_to_bgr, tensor_to_image
from talking_heads.models import TalkingHeadModel


@dataclass
class DevMetrics:
    """FF reconstruction quality on the fixed dev episodes (means over episodes)."""

    l1: float    # mean |x-hat - x| on [-1, 1] pixels (lower is better)
    psnr: float  # dB (higher is better)
    ssim: float  # (higher is better)


@dataclass
class FixedEpisodes:
    """A few episodes stacked once: frames/landmarks (B, K, 3, H, W), targets (B, 3, H, W),
    points (B, K, 68, 2) and target_points (B, 68, 2) in crop pixels."""

    frames: torch.Tensor
    landmarks: torch.Tensor
    target_frame: torch.Tensor
    target_landmarks: torch.Tensor
    points: torch.Tensor
    target_points: torch.Tensor


@torch.no_grad()
def feed_forward(model: TalkingHeadModel, episodes: FixedEpisodes) -> torch.Tensor:
    """x-hat = G(y_t, P mean_k E(x_k, y_k)) for each episode: (B, 3, H, W)."""
    was_training = model.training
    model.eval()
    _, fake = model.reenact(episodes.frames, episodes.landmarks, episodes.points,
                            episodes.target_landmarks, episodes.target_points)
    model.train(was_training)
    return fake


def dev_metrics(model: TalkingHeadModel, episodes: FixedEpisodes) -> tuple[DevMetrics, torch.Tensor]:
    """Metrics of FF reconstructions, and the reconstructions themselves (for the grid)."""
    fake = feed_forward(model, episodes)
    real = episodes.target_frame
    l1 = float((fake - real).abs().mean())
    fake_images, real_images = tensor_to_image(fake), tensor_to_image(real)  # (B, H, W, 3)
    psnrs = [psnr(a, b) for a, b in zip(fake_images, real_images)]
    ssims = [ssim(a, b) for a, b in zip(fake_images, real_images)]
    return DevMetrics(l1=l1, psnr=float(np.mean(psnrs)), ssim=float(np.mean(ssims))), fake


def sample_grid(landmarks: torch.Tensor, generated: torch.Tensor,
                real: torch.Tensor) -> np.ndarray:
    """One row per sample: landmark image y | generated x-hat | real x. uint8 (B*H, 3*W, 3)."""
    rows = [np.concatenate([tensor_to_image(y), tensor_to_image(g), tensor_to_image(x)], axis=1)
            for y, g, x in zip(landmarks, generated, real)]
    return np.concatenate(rows, axis=0)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), rgb_to_bgr(image)):
        raise OSError(f"could not write {path}")


class JsonlLog:
    """Append-only log: one JSON object per line (kind, step, time (Unix seconds), values)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, step: int, **values) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self, kind: str | None = None) -> list[dict]:
        if not self.path.is_file():
            return []
        records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [r for r in records if kind is None or r["kind"] == kind]


def metrics_record(metrics: DevMetrics) -> dict:
    return asdict(metrics)
