"""Model hyper-parameters as frozen dataclasses; defaults are the paper's values.

``ModelConfig.paper()`` is the 256 px model of Zakharov et al. 2019; ``ModelConfig.cpu()`` is
the same architecture (one code path), narrowed through these fields only, so that it can be
meta-trained and fine-tuned on a 2-core CPU. ``ModelConfig.warp()`` selects the two-layer
generator (``generator="warp"``, ``talking_heads.models.warp``): it warps the source photo's own
pixels and generates only what the photo lacks, with the networks at ``network_size`` and the
output at ``image_size``. Training and fine-tuning configs live in
``talking_heads.training.config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


GENERATORS = ("paper", "warp")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "paper"              # preset name, recorded in config.json
    image_size: int = 256            # side of the square face crop, pixels
    base_channels: int = 64          # channels after the first down block (doubling per block)
    max_channels: int = 512          # channel cap for deeper blocks
    embed_dim: int = 512             # N, size of the person embedding e
    embedder_blocks: int = 6         # down blocks of E and V (256 -> 4 px)
    encoder_blocks: int = 4          # down blocks of G's landmark encoder (256 -> 16 px)
    num_res_blocks: int = 5          # AdaIN residual blocks in G's bottleneck
    attention_size: int = 32         # feature-map side with self-attention in E, V, G encoder
    decoder_attention_size: int = 64  # feature-map side with self-attention in G's decoder
    disc_extra_blocks: int = 1       # V's extra residual blocks at the final (4 px) size
    generator: str = "paper"         # "paper": G draws every pixel; "warp": two-layer (warp + fill)
    network_size: int = 0            # side E, G's networks and V run at; 0 = image_size
    warp_grid: int = 64              # side of the grid the closed-form warp is solved on (warp)

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown generator {self.generator!r}; choose from {GENERATORS}")
        if self.network_size < 0 or self.network_size > self.image_size:
            raise ValueError(f"network_size {self.network_size} must be 0..image_size")
        if self.generator == "paper" and self.net_size != self.image_size:
            raise ValueError("the paper generator draws at image_size: leave network_size at 0")
        for blocks in (self.embedder_blocks, self.encoder_blocks):
            if self.net_size % (2**blocks) != 0:
                raise ValueError(f"network size {self.net_size} not divisible by 2^{blocks}")

    @property
    def net_size(self) -> int:
        """Side of the images the networks see (inputs at image_size are resampled to it)."""
        return self.network_size or self.image_size

    @classmethod
    def paper(cls) -> "ModelConfig":
        return cls()

    @classmethod
    def cpu(cls) -> "ModelConfig":
        """The CPU-trainable preset: 128 px, channels 32..256, N = 256, 3 bottleneck blocks.

        Measured on the 2-core development CPU (benchmarks/bench_generator.py): E 2.48M,
        G 1.97M, V 3.66M parameters; G costs 2.92 GFLOPs per frame (paper preset: 62.9) and ran
        at 38-40 ms per frame at batch 1 when the machine was quiet (load ~2), i.e. ~25 fps;
        under the load of parallel jobs (load 7-8) the same call took 270-700 ms. 256 px at
        these widths would cost ~4x the FLOPs in G, E and V and ~4x in the VGG/FaceNet content
        loss per training step, which the ~1.5 CPU-hour meta-training budget cannot afford, so
        the preset renders 128 px and the pipeline upsamples.
        """
        return cls(name="cpu", image_size=128, base_channels=32, max_channels=256, embed_dim=256,
                   embedder_blocks=5, encoder_blocks=3, num_res_blocks=3, attention_size=16,
                   decoder_attention_size=32)

    @classmethod
    def warp(cls) -> "ModelConfig":
        """The default model: the two-layer (warp) generator at the ``cpu`` preset's widths.

        Networks at 128 px, output at 256 px: the warp samples the full-resolution 256 px
        source crop, so the detail comes from the photo, not from upsampling. The widths equal
        ``cpu()``'s so that a meta-trained ``cpu`` checkpoint can warm-start it
        (``training.warm_start``)."""
        return cls(name="warp", image_size=256, base_channels=32, max_channels=256,
                   embed_dim=256, embedder_blocks=5, encoder_blocks=3, num_res_blocks=3,
                   attention_size=16, decoder_attention_size=32, generator="warp",
                   network_size=128)

    @classmethod
    def tiny_warp(cls) -> "ModelConfig":
        """``tiny`` with the two-layer generator (64 px output, networks at 32 px), for tests."""
        return cls(name="tiny_warp", image_size=64, base_channels=8, max_channels=32,
                   embed_dim=32, embedder_blocks=3, encoder_blocks=3, num_res_blocks=1,
                   attention_size=8, decoder_attention_size=16, generator="warp",
                   network_size=32, warp_grid=16)

    @classmethod
    def tiny(cls) -> "ModelConfig":
        """A seconds-fast model for tests (64 px), same code path."""
        return cls(name="tiny", image_size=64, base_channels=8, max_channels=32, embed_dim=32,
                   embedder_blocks=4, encoder_blocks=3, num_res_blocks=1, attention_size=16,
                   decoder_attention_size=16)

    @classmethod
    def preset(cls, name: str) -> "ModelConfig":
        presets = {"paper": cls.paper, "cpu": cls.cpu, "warp": cls.warp, "tiny": cls.tiny,
                   "tiny_warp": cls.tiny_warp}
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
