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
from talking_heads.models.warp import Sources, build_generator

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


class TalkingHeadModel(nn.Module):
    """E and G of Zakharov et al. 2019 under one config."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embedder = Embedder(cfg)
        self.generator = build_generator(cfg)  # the design cfg.generator names

    def embed(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Mean embedding over K frames: (B, K, 3, H, W) x 2 -> e (B, N)."""
        if frames.dim() != 5 or frames.shape != landmarks.shape:
            raise ValueError(f"expected (B, K, 3, H, W) inputs, got {tuple(frames.shape)}, "
                             f"{tuple(landmarks.shape)}")
        b, k = frames.shape[:2]
        e = self.embedder(frames.flatten(0, 1), landmarks.flatten(0, 1))  # (B*K, N)
        return e.view(b, k, -1).mean(dim=1)  # (B, N)

    def reenact(self, frames: torch.Tensor, landmarks: torch.Tensor, points: torch.Tensor,
                target_landmarks: torch.Tensor,
                target_points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One K-shot episode batch -> (e (B, N), x-hat (B, 3, H, W)).

        e = mean_k E(x_k, y_k), psi-hat = P e, x-hat = G(y_t, psi-hat). The warp generator
        samples the first of the K frames only: meta-learning then practises the one-photo
        case that matters most (with more photos, adaptation picks the nearest source, which is
        easier). frames/landmarks (B, K, 3, H, W), points (B, K, 68, 2), target_landmarks
        (B, 3, H, W), target_points (B, 68, 2)."""
        e = self.embed(frames, landmarks)
        sources = Sources(frames[:, :1], landmarks[:, :1], points[:, :1])
        return e, self.generator(target_landmarks, self.generator.project(e), target_points,
                                 sources)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors into ``directory``; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, "model": self.config.to_dict(),
                  "psi_layout": self.generator.psi_layout()}
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
        check_psi_layout(config.get("psi_layout"), model.generator.psi_layout())
        state = load_file(str(directory / WEIGHTS_NAME))
        model.load_state_dict(state, strict=True)
        return model.eval()


def check_psi_layout(saved: list | None, built: list) -> None:
    """Refuse weights whose psi-hat slice table differs from the one the code builds.

    The table is read off the decoder's module order; if that order changed since the weights
    were saved, ``load_state_dict`` still succeeds (same names and shapes) but every AdaIN
    layer would read another layer's slice of psi-hat. Files written before the table was
    saved (``saved`` None) are accepted: their layout is the one this code builds, or their
    decoder would not have loaded into the same module names."""
    if saved is None:
        return
    if [list(row) for row in saved] != built:
        raise ValueError("the psi-hat layout saved with these weights differs from the one this "
                         "code builds (the generator's AdaIN layers were reordered or resized); "
                         "refusing to feed them the wrong slices")


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
