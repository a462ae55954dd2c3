"""Generator G(y, psi-hat) -> x-hat (Zakharov et al. 2019, section 3.2).

An image-to-image network on the landmark image y: residual downsampling blocks with plain
instance norm (the landmark encoder), self-attention at ``cfg.attention_size``, a bottleneck of
AdaIN residual blocks, AdaIN residual upsampling blocks, self-attention at
``cfg.decoder_attention_size``, then AdaIN, ReLU, conv and tanh. Every normalisation after the
encoder is AdaIN, whose scales and biases psi-hat = P e come from the person embedding through
the one projection P. The layout of psi-hat is read off the module tree
(``layers.assign_psi_slices``) when the Generator is built.
"""

from __future__ import annotations

import torch
from torch import nn

from talking_heads.config import ModelConfig
from talking_heads.models.layers import (AdaIN, AdaResBlock, AdaResBlockUp, SelfAttention,
                                         assign_psi_slices, channels_at, down_stack, sn_conv,
                                         sn_linear)


class Decoder(nn.Module):
    """The adaptive part of G: bottleneck, upsampling, output head; all norms are AdaIN."""

    def __init__(self, cfg: ModelConfig, in_ch: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AdaResBlock(in_ch) for _ in range(cfg.num_res_blocks))
        ch, size = in_ch, cfg.net_size // 2**cfg.encoder_blocks
        for depth in reversed(range(cfg.encoder_blocks)):
            out = channels_at(cfg.base_channels, cfg.max_channels, max(depth - 1, 0))
            self.blocks.append(AdaResBlockUp(ch, out))
            ch, size = out, size * 2
            if size == cfg.decoder_attention_size:
                self.blocks.append(SelfAttention(ch))
        self.out_norm = AdaIN(ch)
        self.out_conv = sn_conv(ch, 3)
        self.out_channels = ch

    def activations(self, h: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Bottleneck features -> ReLU(AdaIN(.)) at the network size, before the output conv
        (the warp generator reads its flow and mask heads from here too)."""
        for block in self.blocks:
            h = block(h) if isinstance(block, SelfAttention) else block(h, psi)
        return torch.relu(self.out_norm(h, psi))

    def forward(self, h: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out_conv(self.activations(h, psi)))


class Generator(nn.Module):
    """G: landmark image y (B, 3, H, W) and psi-hat (B, P) -> image x-hat (B, 3, H, W) in [-1, 1].

    Pure generation: every pixel is drawn from y and psi-hat. ``forward`` also accepts the
    target points and the source crops that the two-layer ``WarpGenerator`` needs, so that all
    callers use one signature; this design does not read them (``needs_sources`` is False)."""

    needs_sources = False

    def __init__(self, cfg: ModelConfig, in_channels: int = 3) -> None:
        super().__init__()
        self.config = cfg
        self.encoder, ch = down_stack(in_channels, cfg.base_channels, cfg.max_channels,
                                      cfg.encoder_blocks, cfg.net_size, cfg.attention_size,
                                      norm=True)
        self.decoder = Decoder(cfg, ch)
        # psi-hat layout: one slice per AdaIN layer, in module-tree order.
        self.psi_slices: list[tuple[str, slice]] = assign_psi_slices(self.decoder)
        self.psi_dim = self.psi_slices[-1][1].stop if self.psi_slices else 0
        self.projection = sn_linear(cfg.embed_dim, self.psi_dim, bias=False)  # P

    def project(self, e: torch.Tensor) -> torch.Tensor:
        """psi-hat = P e: (B, N) -> (B, P)."""
        if e.dim() != 2 or e.shape[1] != self.config.embed_dim:
            raise ValueError(f"expected e (B, {self.config.embed_dim}), got {tuple(e.shape)}")
        return self.projection(e)

    def psi_layout(self) -> list[list]:
        """The psi-hat slice table as JSON-able rows [AdaIN module name, start, stop]; saved
        with the weights and checked on load (a reordered decoder must not load silently)."""
        return [[name, s.start, s.stop] for name, s in self.psi_slices]

    def check_inputs(self, y: torch.Tensor, psi: torch.Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"expected y (B, 3, H, W), got {tuple(y.shape)}")
        if psi.shape != (y.shape[0], self.psi_dim):
            raise ValueError(f"expected psi ({y.shape[0]}, {self.psi_dim}), got {tuple(psi.shape)}")

    def forward(self, y: torch.Tensor, psi: torch.Tensor, points: torch.Tensor | None = None,
                sources=None) -> torch.Tensor:
        """y (B, 3, H, W), psi (B, P) -> x-hat; ``points`` / ``sources`` are not read here."""
        self.check_inputs(y, psi)
        h = y
        for block in self.encoder:
            h = block(h)
        return self.decoder(h, psi)
