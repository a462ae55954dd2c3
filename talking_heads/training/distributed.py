"""One code path for single-process and torchrun (DistributedDataParallel) training.

``torchrun --nproc_per_node=N -m talking_heads train ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; ``setup()`` then joins the process group (nccl on CUDA, gloo on CPU) and picks the
process's device. Without those variables it is a plain single process. Rank 0 alone writes
checkpoints, samples and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> DistInfo:
    """Join the torchrun process group if there is one; choose this process's device.

    ``device``: "cpu", "cuda" or None (CUDA when available)."""
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, info: DistInfo) -> nn.Module:
    """DDP wrapper when distributed, the module itself otherwise.

    Buffers (spectral-norm power-iteration vectors) are broadcast from rank 0 on every forward
    so that the replicas stay identical."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=True)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over all processes (for logging only)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    tensor /= info.world_size
    return {k: float(v) for k, v in zip(keys, tensor.tolist())}


def parameter_checksum(modules: list[nn.Module]) -> torch.Tensor:
    """float64 (2,) fingerprint of all parameters and buffers (sum and sum of |.| weighted by
    position), used to check that DDP replicas are identical."""
    total = torch.zeros(2, dtype=torch.float64)
    for module in modules:
        for i, tensor in enumerate(list(module.parameters()) + list(module.buffers())):
            flat = tensor.detach().double().flatten().cpu()
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64) / flat.numel()
            total[0] += flat.sum()
            total[1] += (flat.abs() * weights).sum() * (i + 1)
    return total


def replica_spread(modules: list[nn.Module], info: DistInfo) -> float:
    """Largest difference between the ranks' parameter checksums (0.0 when identical)."""
    local = parameter_checksum(modules).to(info.device)
    if not info.enabled:
        return 0.0
    gathered = [torch.zeros_like(local) for _ in range(info.world_size)]
    dist.all_gather(gathered, local)
    stacked = torch.stack(gathered)  # (world_size, 2)
    return float((stacked - stacked[0]).abs().max())
