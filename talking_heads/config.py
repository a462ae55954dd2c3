"""Model hyper-parameters as frozen dataclasses; defaults are the paper's values.

``ModelConfig.paper()`` is the 256 px model of Zakharov et al. 2019; ``ModelConfig.cpu()`` is
the same architecture, narrowed so that it can be meta-trained and fine-tuned on a 2-core CPU.
Training and fine-tuning configs live in ``talking_heads.training.config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    name: str = "paper"          # preset name, recorded in config.json
    image_size: int = 256        # side of the square face crop, pixels
    base_channels: int = 64      # channels after the first down block
    max_channels: int = 512      # channel cap for deeper blocks
    embed_dim: int = 512         # N, size of the person embedding e
    num_res_blocks: int = 5      # residual blocks in G's bottleneck (all AdaIN)

    @classmethod
    def paper(cls) -> "ModelConfig":
        return cls()

    @classmethod
    def cpu(cls) -> "ModelConfig":
        return cls(name="cpu", image_size=256, base_channels=16, max_channels=128, embed_dim=128,
                   num_res_blocks=2)

    @classmethod
    def preset(cls, name: str) -> "ModelConfig":
        presets = {"paper": cls.paper, "cpu": cls.cpu}
        if name not in presets:
            raise ValueError(f"unknown model config {name!r}; choose from {sorted(presets)}")
        return presets[name]()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**data)
