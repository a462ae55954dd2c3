"""Feeding episodes to the trainer: an endless, seeded, rank-aware stream, and fixed sets.

Meta-learning samples a random video per episode (with replacement, as in the paper's
episodic training), so there are no epochs: ``EpisodeStream`` draws video indices from a
generator seeded by (seed, rank, start step), which makes each DDP rank see different
episodes and a resumed run continue with fresh ones.
"""

from __future__ import annotations

import random
from dataclasses import fields, replace
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from talking_heads.training.config import TrainConfig
from talking_heads.training.distributed import DistInfo
from talking_heads.training.monitor import FixedEpisodes


class RandomVideoSampler(Sampler[int]):
    """Endless uniform video indices from a private generator."""

    def __init__(self, num_items: int, seed: int) -> None:
        if num_items <= 0:
            raise ValueError("the dataset is empty")
        self.num_items, self.seed = num_items, seed

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            yield from torch.randint(self.num_items, (1024,), generator=generator).tolist()


def collate(items: list):
    """Episodes -> one batched Episode: tensor fields stacked on a new dim 0 ((B, K, ...)),
    other fields listed. Same result as ``data.dataset.collate_episodes``, for any dataclass."""
    first = items[0]
    values = {}
    for f in fields(first):
        column = [getattr(item, f.name) for item in items]
        values[f.name] = torch.stack(column) if torch.is_tensor(column[0]) else column
    return type(first)(**values)


def _seed_worker(worker_id: int) -> None:
    """Each worker's numpy / random from torch's per-worker seed (torch seeds only itself)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class EpisodeStream:
    """``next(stream)`` -> a collated Episode batch (B, K, ...), forever."""

    def __init__(self, dataset, cfg: TrainConfig, info: DistInfo, start_step: int = 0) -> None:
        seed = (cfg.seed * 1_000_003 + info.rank * 7919 + start_step) % 2**31
        np.random.seed(seed)  # frame choice and augmentation when loading in this process
        random.seed(seed)
        self._loader = DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=RandomVideoSampler(len(dataset), seed),
            collate_fn=collate, num_workers=cfg.num_workers, drop_last=True,
            worker_init_fn=_seed_worker, persistent_workers=cfg.num_workers > 0,
            prefetch_factor=2 if cfg.num_workers > 0 else None,
            # forked workers inherit torch's thread pools and locks mid-use (a known deadlock);
            # spawned ones start clean, once, since the workers persist
            multiprocessing_context="spawn" if cfg.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(seed))  # base seed of the workers
        self._iter = iter(self._loader)

    def __next__(self):
        return next(self._iter)

    def close(self) -> None:
        self._iter = None  # shuts the worker processes down
        self._loader = None


def to_device(batch, device: torch.device):
    """Move every tensor field of an Episode batch to ``device``."""
    if device.type == "cpu":
        return batch
    return replace(batch, **{f.name: getattr(batch, f.name).to(device, non_blocking=True)
                             for f in fields(batch) if torch.is_tensor(getattr(batch, f.name))})


def fixed_episodes(dataset, count: int, seed: int, device: torch.device) -> FixedEpisodes:
    """``count`` episodes spread over the dataset's videos, drawn once with a fixed seed."""
    state = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        n = len(dataset)
        indices = [int(i * n / count) % n for i in range(count)]
        batch = collate([dataset[i] for i in indices])
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])
    return FixedEpisodes(frames=batch.frames.to(device), landmarks=batch.landmarks.to(device),
                         target_frame=batch.target_frame.to(device),
                         target_landmarks=batch.target_landmarks.to(device),
                         points=batch.points.to(device),
                         target_points=batch.target_points.to(device))
