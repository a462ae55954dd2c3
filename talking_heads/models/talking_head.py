"""TalkingHeadModel: the inference weights (E and G) with safe saving and loading.

Files: ``config.json`` ({"format_version", "model": ModelConfig dict}) and
``model.safetensors`` (E and G state). Loading never unpickles. A Hub repo id is resolved
through ``huggingface_hub.snapshot_download`` (honours ``HF_HUB_OFFLINE`` and the local cache).
The discriminator (with its per-video W) and optimiser state are training state and are kept
out of these files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from talking_heads.config import ModelConfig
from talking_heads.models.embedder import Embedder
from talking_heads.models.generator import Generator

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class TalkingHeadModel(nn.Module):
    """E and G of Zakharov et al. 2019 under one config."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embedder = Embedder(cfg)
        self.generator = Generator(cfg)

    def embed(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Mean embedding over K frames: (B, K, 3, H, W) x 2 -> e (B, N)."""
        if frames.dim() != 5 or frames.shape != landmarks.shape:
            raise ValueError(f"expected (B, K, 3, H, W) inputs, got {tuple(frames.shape)}, "
                             f"{tuple(landmarks.shape)}")
        b, k = frames.shape[:2]
        e = self.embedder(frames.flatten(0, 1), landmarks.flatten(0, 1))  # (B*K, N)
        return e.view(b, k, -1).mean(dim=1)  # (B, N)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors into ``directory``; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, "model": self.config.to_dict()}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(cls, dir_or_repo_id: str | Path, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> "TalkingHeadModel":
        """Load from a local folder, or from a Hugging Face repo id at ``revision``."""
        directory = _resolve(dir_or_repo_id, revision, cache_dir)
        config = json.loads((directory / CONFIG_NAME).read_text())
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported talking-head format_version {version!r}")
        model = cls(ModelConfig.from_dict(config["model"]))
        state = load_file(str(directory / WEIGHTS_NAME))
        model.load_state_dict(state, strict=True)
        return model.eval()


def _resolve(dir_or_repo_id: str | Path, revision: str | None,
             cache_dir: str | Path | None) -> Path:
    path = Path(dir_or_repo_id)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download  # lazy: only needed for Hub ids

    local = snapshot_download(repo_id=str(dir_or_repo_id), revision=revision,
                              cache_dir=None if cache_dir is None else str(cache_dir),
                              allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    return Path(local)
