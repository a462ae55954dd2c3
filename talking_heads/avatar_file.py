"""An Avatar as one downloadable file: safetensors tensors + JSON in the header metadata.

Layout (all little-endian, read with ``safetensors``, nothing is unpickled):

- metadata ``talking_heads.avatar``: JSON {format_version, mode, model (ModelConfig dict),
  weights_digest (``weights.weights_digest`` of the model it was made with), info, photos}.
- ``psi`` float32 (1, P): psi-hat = P e_new (FF) or the fine-tuned psi' (FT);
  ``embedding`` float32 (1, N): e_new; ``points`` float32 (T, 68, 2): source landmarks in
  image pixels; ``transforms`` float64 (T, 2, 3): image -> crop; ``photo.XX`` uint8
  (H, W, 3): the source photos (raw pixels, so loading decodes no image format);
  FT only: ``generator.<name>``, this person's copy of G.

A file is checked before any tensor is used: its size, the safetensors header, the metadata,
the model config, the weights digest, then every tensor's name, dtype, shape and finiteness.
Each failure is an ``AvatarFileError`` that names the problem.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from talking_heads.config import ModelConfig
from talking_heads.landmarks.align import CropTransform

METADATA_KEY = "talking_heads.avatar"
FILE_FORMAT = 1
MAX_HEADER_BYTES = 1 << 20   # the JSON header of an avatar is a few kB
MAX_PHOTO_SIDE = 4096
MAX_SOURCE_PHOTOS = 32
SUFFIX = ".avatar.safetensors"


class AvatarFileError(ValueError):
    """An avatar file that cannot be used here; the message says why."""


def write(avatar, path: str | Path) -> Path:
    """Save ``avatar`` (see the module docstring) into one file; returns its path."""
    path = Path(path)
    sources = avatar.sources
    tensors = {"psi": avatar.psi.detach().cpu().float().contiguous(),
               "embedding": avatar.embedding.detach().cpu().float().contiguous(),
               "points": torch.from_numpy(np.ascontiguousarray(sources.points, np.float32)),
               "transforms": torch.from_numpy(np.stack([t.matrix for t in sources.transforms])
                                              .astype(np.float64))}
    for index, photo in enumerate(sources.photos):
        tensors[f"photo.{index:02d}"] = torch.from_numpy(np.ascontiguousarray(photo, np.uint8))
    if avatar.mode == "ft":
        tensors.update({f"generator.{k}": v.detach().cpu().contiguous()
                        for k, v in avatar.generator.state_dict().items()})
    meta = {"format_version": FILE_FORMAT, "mode": avatar.mode,
            "model": avatar.config.to_dict(), "weights_digest": avatar.weights_digest,
            "info": avatar.info, "photos": len(sources.photos)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def _describe(config: ModelConfig) -> str:
    return f"'{config.name}' ({config.generator} generator, {config.image_size} px)"


def _header(path: Path, max_bytes: int) -> dict:
    """The safetensors JSON header, after checking the file's size and framing."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise AvatarFileError(f"the avatar file cannot be read ({error.strerror})") from error
    if size > max_bytes:
        raise AvatarFileError(f"the avatar file is {size / 2**20:.1f} MB; at most "
                              f"{max_bytes / 2**20:.0f} MB is accepted")
    with open(path, "rb") as stream:
        head = stream.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
            raise AvatarFileError("not an avatar file: it is not in safetensors format")
        try:
            header = json.loads(stream.read(length))
        except (UnicodeDecodeError, ValueError) as error:
            raise AvatarFileError("not an avatar file: it is not in safetensors format") \
                from error
    if not isinstance(header, dict):
        raise AvatarFileError("not an avatar file: it is not in safetensors format")
    return header


def _metadata(header: dict) -> dict:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if not isinstance(raw, str):
        raise AvatarFileError("a safetensors file, but not a talking-heads avatar (no avatar "
                              "metadata): make one with /adapt or the Adapt button")
    try:
        meta = json.loads(raw)
    except ValueError as error:
        raise AvatarFileError("the avatar metadata is not valid JSON") from error
    if not isinstance(meta, dict) or meta.get("format_version") != FILE_FORMAT:
        raise AvatarFileError(f"unsupported avatar format "
                              f"{meta.get('format_version') if isinstance(meta, dict) else '?'}"
                              f" (this server reads format {FILE_FORMAT})")
    return meta


def _check_model(meta: dict, model, weights_digest: str) -> None:
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise AvatarFileError("the avatar names a model config this server does not know") \
            from error
    if config != model.config:
        raise AvatarFileError(f"this avatar was made for the model {_describe(config)}; this "
                              f"server runs {_describe(model.config)}: adapt the photos again")
    digest = meta.get("weights_digest")
    if digest != weights_digest:
        theirs = f"{digest[:12]}…" if isinstance(digest, str) else "none recorded"
        raise AvatarFileError(f"this avatar was made with other weights (digest {theirs}; this "
                              f"server's weights are {weights_digest[:12]}…): it would render "
                              "garbage, so adapt the photos again")
    if meta.get("mode") not in ("ff", "ft"):
        raise AvatarFileError(f"unknown avatar mode {meta.get('mode')!r}")


def _expected(meta: dict, model, header: dict) -> dict[str, tuple[str, tuple | None]]:
    """name -> (safetensors dtype, shape or None for a photo) of every tensor that must be
    there."""
    count = meta.get("photos")
    if not isinstance(count, int) or not 1 <= count <= MAX_SOURCE_PHOTOS:
        raise AvatarFileError(f"the avatar records {count!r} source photos")
    psi_dim = model.generator.psi_dim
    expected = {"psi": ("F32", (1, psi_dim)), "embedding": ("F32", (1, model.config.embed_dim)),
                "points": ("F32", (count, 68, 2)), "transforms": ("F64", (count, 2, 3))}
    expected.update({f"photo.{i:02d}": ("U8", None) for i in range(count)})
    if meta["mode"] == "ft":
        dtypes = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
                  torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
                  torch.uint8: "U8", torch.bool: "BOOL"}
        expected.update({f"generator.{k}": (dtypes.get(v.dtype, str(v.dtype)), tuple(v.shape))
                         for k, v in model.generator.state_dict().items()})
    names = set(header) - {"__metadata__"}
    missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:4])}" + (" …" if len(missing) > 4 else "")]
                 if missing else [])
        parts += ([f"unexpected {', '.join(unexpected[:4])}"
                   + (" …" if len(unexpected) > 4 else "")] if unexpected else [])
        raise AvatarFileError(f"the avatar file has the wrong tensors ({'; '.join(parts)})")
    for name, (dtype, shape) in expected.items():
        entry = header[name]
        got_shape = tuple(entry.get("shape", ())) if isinstance(entry, dict) else ()
        got_dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if shape is None:  # a photo: (H, W, 3) uint8 of a sane size
            ok = (got_dtype == "U8" and len(got_shape) == 3 and got_shape[2] == 3
                  and all(16 <= side <= MAX_PHOTO_SIDE for side in got_shape[:2]))
            wanted = f"uint8 (H, W, 3), sides 16-{MAX_PHOTO_SIDE}"
        else:
            ok = got_dtype == dtype and got_shape == shape
            wanted = f"{dtype} {shape}"
        if not ok:
            raise AvatarFileError(f"tensor {name} in the avatar file is {got_dtype} "
                                  f"{got_shape}, expected {wanted}")
    return expected


def _check_transform(transform: CropTransform, photo: np.ndarray, index: int) -> None:
    """A crop transform as ``crop_transform`` makes them: orientation-preserving, and a crop
    side between 8 image pixels and 16 times the photo's longer side (a mutated matrix would
    otherwise reach OpenCV's warp with a degenerate or absurd scale)."""
    det = float(np.linalg.det(transform.matrix[:, :2]))
    longest = max(photo.shape[:2]) if photo.ndim >= 2 else 0
    if not det > 0 or not 8.0 <= transform.side <= 16.0 * max(longest, 1):
        raise AvatarFileError(f"photo {index}'s crop transform in the avatar file is not a "
                              f"valid face crop (determinant {det:.3g})")


def read(path: str | Path, model, weights_digest: str, max_bytes: int):
    """Validate and load an avatar file for ``model`` (whose weights have ``weights_digest``)."""
    from talking_heads.avatar import Avatar, _sources, generator_for

    path = Path(path)
    header = _header(path, max_bytes)
    meta = _metadata(header)
    _check_model(meta, model, weights_digest)
    _expected(meta, model, header)
    try:
        with safe_open(str(path), framework="pt") as stream:
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors' own framing errors
        raise AvatarFileError(f"the avatar file is damaged ({type(error).__name__})") from error
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AvatarFileError(f"tensor {name} in the avatar file has NaN or infinite values")
    size = model.config.image_size
    count = meta["photos"]
    photos = [tensors[f"photo.{i:02d}"].numpy() for i in range(count)]
    transforms = [CropTransform(m, size) for m in tensors["transforms"].numpy()]
    for index, (transform, photo) in enumerate(zip(transforms, photos), start=1):
        _check_transform(transform, photo, index)
    device = next(model.parameters()).device
    generator = generator_for(model, meta["mode"], tensors)
    sources = _sources(photos, transforms, tensors["points"].numpy())
    info = meta.get("info") if isinstance(meta.get("info"), dict) else {}
    return Avatar(model.config, meta["mode"], generator, tensors["psi"].to(device),
                  tensors["embedding"].to(device), sources, info,
                  weights_digest=weights_digest)
