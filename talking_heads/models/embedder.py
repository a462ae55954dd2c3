"""Embedder E(x, y) -> e in R^N (Zakharov et al. 2019, section 3.2).

Image and landmark image are concatenated (6 channels) and run through residual downsampling
blocks without normalisation, with self-attention at ``cfg.attention_size``; global sum pooling
and a ReLU give the embedding. A person's embedding is the mean over their K frames
(``TalkingHeadModel.embed``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.config import ModelConfig
from talking_heads.models.layers import down_stack, resample, sn_linear


class Embedder(nn.Module):
    """E: (x (B, 3, H, W), y (B, 3, H, W)) -> e (B, N)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.blocks, ch = down_stack(6, cfg.base_channels, cfg.max_channels, cfg.embedder_blocks,
                                     cfg.net_size, cfg.attention_size, norm=False)
        # Only when the trunk is narrower than N (reduced presets) a linear lifts it to N.
        self.to_embedding = sn_linear(ch, cfg.embed_dim) if ch != cfg.embed_dim else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected x and y (B, 3, H, W), got {tuple(x.shape)}, {tuple(y.shape)}")
        size = self.config.net_size  # the networks may run below the output size
        h = torch.cat([resample(x, size), resample(y, size)], dim=1)  # (B, 6, h, w)
        for block in self.blocks:
            h = block(h)
        h = h.sum(dim=(2, 3))  # global sum pooling, (B, C)
        if self.to_embedding is not None:
            h = self.to_embedding(h)
        return F.relu(h)
