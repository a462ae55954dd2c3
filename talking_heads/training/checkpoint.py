"""Resumable training state and the exported weights of a run.

Two kinds of files:

- *Training state* (``last.pt``, ``best.pt`` in the run dir): E, G, D (with the per-video W),
  both Adam states, the step and the torch RNG. Our own files, written with ``torch.save`` and
  read back with ``torch.load(weights_only=True)`` (no code runs on load). Writes are atomic
  (temp file + ``os.replace``), so a kill mid-write leaves the previous checkpoint intact.
- *Exported weights* (``best/``, ``last/`` folders): ``config.json`` + ``model.safetensors``
  (E and G, via ``TalkingHeadModel.save_pretrained``) and, beside them, the optional
  ``discriminator.safetensors`` holding V, w0 and b (never W, whose rows belong to training
  videos). Fine-tuning uses it to initialise D' (w' = w0 + e_new); inference ignores it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from talking_heads.config import ModelConfig
from talking_heads.models import ProjectionDiscriminator, TalkingHeadModel

DISCRIMINATOR_NAME = "discriminator.safetensors"
_PER_VIDEO_KEYS = ("W.weight",)


def atomic_write(path: Path, write) -> None:
    """Call ``write(temp_path)`` then rename the temp file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(temp))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def save_training_state(path: Path, state: dict) -> None:
    """Atomically ``torch.save`` a dict of tensors / state dicts / plain values."""
    atomic_write(path, lambda temp: torch.save(state, temp))


def load_training_state(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read our own training state; ``weights_only=True`` refuses anything but tensors and
    plain containers."""
    return torch.load(path, map_location=map_location, weights_only=True)


def save_discriminator(directory: Path, discriminator: ProjectionDiscriminator) -> Path:
    """Write V, w0, b (not W) as ``discriminator.safetensors`` into ``directory``."""
    state = {k: v.detach().contiguous().cpu() for k, v in discriminator.state_dict().items()
             if k not in _PER_VIDEO_KEYS}
    target = Path(directory) / DISCRIMINATOR_NAME
    atomic_write(target, lambda temp: save_file(state, str(temp), metadata={"format": "pt"}))
    return target


def load_discriminator(dir_or_repo_id: str | Path, config: ModelConfig,
                       revision: str | None = None) -> ProjectionDiscriminator | None:
    """The shipped discriminator beside a model, or None when there is none.

    The result has a single dummy W row (unused: fine-tuning builds w' = w0 + e_new)."""
    path = Path(dir_or_repo_id)
    if path.is_dir():
        file = path / DISCRIMINATOR_NAME
        if not file.is_file():
            return None
    else:
        file = _hub_file(str(dir_or_repo_id), revision)
        if file is None:
            return None
    discriminator = ProjectionDiscriminator(config, num_videos=1)
    state = load_file(str(file))
    missing, unexpected = discriminator.load_state_dict(state, strict=False)
    if unexpected or set(missing) - set(_PER_VIDEO_KEYS):
        raise ValueError(f"{file} does not match the model config: missing {missing}, "
                         f"unexpected {unexpected}")
    return discriminator.eval()


def _hub_file(repo_id: str, revision: str | None) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, DISCRIMINATOR_NAME, revision=revision))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def export_weights(directory: Path, model: TalkingHeadModel,
                   discriminator: ProjectionDiscriminator, info: dict) -> Path:
    """Inference weights + optional discriminator + ``training.json`` (step, metrics)."""
    directory = Path(directory)
    model.save_pretrained(directory)
    save_discriminator(directory, discriminator)
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / "training.json", lambda temp: temp.write_text(text))
    return directory


def remap_video_rows(state: dict, old_ids: list[str], new_ids: list[str],
                     fresh_w: torch.Tensor, w_index: int) -> dict:
    """Resume after the training set changed (e.g. preprocessing finished more clips).

    W has one row per training video, in ``clip_ids`` order. Rows of clips still present move
    to their new index (with their Adam moments); new clips keep ``fresh_w``'s initial rows and
    zero moments. ``w_index``: position of W among D's parameters (its optimiser state key)."""
    old_pos = {clip: i for i, clip in enumerate(old_ids)}
    keep_new = [i for i, clip in enumerate(new_ids) if clip in old_pos]
    keep_old = [old_pos[new_ids[i]] for i in keep_new]

    def remap(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        out = fresh.clone().to(old.device, old.dtype)  # (len(new_ids), N)
        out[keep_new] = old[keep_old]
        return out

    disc = state["discriminator"]
    disc["W.weight"] = remap(disc["W.weight"], fresh_w)
    moments = state["opt_d"]["state"].get(w_index)
    if moments is not None:
        for key in ("exp_avg", "exp_avg_sq"):
            moments[key] = remap(moments[key], torch.zeros_like(fresh_w))
    return state
