"""Projection discriminator D(x, y, i) (Zakharov et al. 2019, section 3.2; Miyato & Koyama 2018).

V(x, y) -> v in R^N is shaped like the embedder plus ``cfg.disc_extra_blocks`` residual blocks
at the final resolution, sum pooling and ReLU. The realism score is

    r = v^T (W_i + w0) + b,

with W (one row per training video) stored as ``nn.Embedding``; W belongs to training state and
is never part of published inference weights. No sigmoid: the score feeds a hinge loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.config import ModelConfig
from talking_heads.models.layers import ResBlockDown, down_stack, resample, sn_linear


@dataclass
class DiscriminatorOutput:
    """score: (B,) realism r; features: the residual-block activations of V (feature matching);
    embedding_match: unweighted L_MCH = mean |e_i - W_i| when D was given the embeddings."""

    score: torch.Tensor
    features: list[torch.Tensor]
    embedding_match: torch.Tensor | None = None


class DiscriminatorTrunk(nn.Module):
    """V: (x, y) -> (v (B, N), per-block features)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.blocks, ch = down_stack(6, cfg.base_channels, cfg.max_channels, cfg.embedder_blocks,
                                     cfg.net_size, cfg.attention_size, norm=False)
        for _ in range(cfg.disc_extra_blocks):
            self.blocks.append(ResBlockDown(ch, ch, downsample=False))
        self.to_embedding = sn_linear(ch, cfg.embed_dim) if ch != cfg.embed_dim else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected x and y (B, 3, H, W), got {tuple(x.shape)}, {tuple(y.shape)}")
        size = self.config.net_size  # the networks may run below the output size
        h = torch.cat([resample(x, size), resample(y, size)], dim=1)  # (B, 6, h, w)
        features = []
        for block in self.blocks:
            h = block(h)
            if isinstance(block, ResBlockDown):
                features.append(h)
        v = h.sum(dim=(2, 3))  # (B, C)
        if self.to_embedding is not None:
            v = self.to_embedding(v)
        return F.relu(v), features


class ProjectionDiscriminator(nn.Module):
    """D(x, y, i) -> DiscriminatorOutput(score (B,), features)."""

    def __init__(self, cfg: ModelConfig, num_videos: int) -> None:
        super().__init__()
        self.config = cfg
        self.trunk = DiscriminatorTrunk(cfg)                      # V
        # W_i, one row per video. Not spectrally normalised: the paper normalises its
        # convolutional and fully connected layers, and W is neither but a table of
        # per-video vectors that L_MCH compares with e_i directly; normalising the whole
        # table by its top singular value would couple all videos' rows. w0 and b likewise.
        self.W = nn.Embedding(num_videos, cfg.embed_dim)          # W_i, one row per video
        nn.init.normal_(self.W.weight, std=0.02)
        self.w0 = nn.Parameter(torch.zeros(cfg.embed_dim))        # w0, shared
        self.b = nn.Parameter(torch.zeros(()))                    # b

    def forward(self, x: torch.Tensor, y: torch.Tensor, video_index: torch.Tensor,
                embedding: torch.Tensor | None = None) -> DiscriminatorOutput:
        """``embedding`` (B, N), e_i detached: also return L_MCH as W_i sees it, computed here
        so that under DDP W's gradient from it is reduced like every other D gradient."""
        v, features = self.trunk(x, y)
        w_i = self.W(video_index)  # (B, N)
        match = None
        if embedding is not None:
            from talking_heads.losses import embedding_match_loss

            match = embedding_match_loss(embedding.detach(), w_i)
        return DiscriminatorOutput(score=(v * (w_i + self.w0)).sum(dim=1) + self.b,
                                   features=features, embedding_match=match)
