"""Building blocks shared by E, G and V (Zakharov et al. 2019, appendix / BigGAN-style blocks).

Every convolution and linear layer is spectrally normalised (Miyato et al. 2018), as the paper
does for all three networks. Blocks that carry AdaIN take the whole psi-hat vector and let each
``AdaIN`` layer read its own slice; the slices are assigned by the Generator from its module
tree (see ``assign_psi_slices``), so no layout is hard-coded anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Module:
    """Spectrally normalised convolution with 'same' padding."""
    return spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2))


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    """Spectrally normalised linear layer."""
    return spectral_norm(nn.Linear(in_features, out_features, bias=bias))


class AdaIN(nn.Module):
    """Adaptive instance norm: IN(x) * (1 + scale) + bias, scale and bias read from psi-hat.

    The layer declares ``num_params = 2 * C`` and owns the slice ``psi_slice`` of psi-hat that
    the Generator assigns to it. The ``1 +`` centres a zero psi on plain instance norm, which
    keeps the randomly initialised projection P from crushing activations at the start.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_params = 2 * channels
        self.psi_slice: slice | None = None

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        if self.psi_slice is None:
            raise RuntimeError("AdaIN has no psi slice; build it inside a Generator")
        params = psi[:, self.psi_slice]  # (B, 2C)
        scale, bias = params[:, : self.channels], params[:, self.channels :]
        gain = 1.0 + scale[:, :, None, None]  # (B, C, 1, 1)
        shift = bias[:, :, None, None]
        if x.dtype != torch.float32:  # bf16 rendering: its instance norm is the fast kernel
            normed = F.instance_norm(x, eps=1e-5)
            return torch.addcmul(shift.to(x.dtype), normed, gain.to(x.dtype))
        # float32: IN(x) * gain + shift as one multiply-add per pixel, the per-channel
        # statistics folded into it (mean and mean square are single fast passes; var_mean's
        # Welford reduction and instance_norm are several times slower on the CPU).
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x.square().mean(dim=(2, 3), keepdim=True) - mean.square()).clamp_min(0.0)
        gain = gain * torch.rsqrt(var + 1e-5)
        return torch.addcmul(shift - mean * gain, x, gain)


def assign_psi_slices(root: nn.Module) -> list[tuple[str, slice]]:
    """Walk ``root``'s module tree in registration order and give each AdaIN a disjoint slice.

    Returns the slice table [(module name, slice)], which covers [0, total) exactly.
    """
    table: list[tuple[str, slice]] = []
    offset = 0
    for name, module in root.named_modules():
        if isinstance(module, AdaIN):
            module.psi_slice = slice(offset, offset + module.num_params)
            table.append((name, module.psi_slice))
            offset += module.num_params
    return table


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019); gamma starts at 0 so it opens gradually."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = sn_conv(channels, inner, 1)
        self.key = sn_conv(channels, inner, 1)
        self.value = sn_conv(channels, max(channels // 2, 1), 1)
        self.out = sn_conv(max(channels // 2, 1), channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2)  # (B, C/8, HW)
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, C/8, HW/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, C/2, HW/4)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, HW, HW/4)
        o = (v @ attn.transpose(1, 2)).view(b, -1, h, w)  # (B, C/2, H, W)
        return x + self.gamma * self.out(o)


class ResBlockDown(nn.Module):
    """Residual downsampling block: [norm] ReLU conv [norm] ReLU conv avgpool + 1x1 shortcut.

    ``first`` skips the leading activation (the input is an image, not features). ``norm``
    selects plain instance norm (G's landmark encoder) or none (E and V).
    """

    def __init__(self, in_ch: int, out_ch: int, norm: bool = False, first: bool = False,
                 downsample: bool = True) -> None:
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = sn_conv(in_ch, out_ch)
        self.conv2 = sn_conv(out_ch, out_ch)
        self.skip = sn_conv(in_ch, out_ch, 1) if (in_ch != out_ch or downsample) else None
        self.norm1 = nn.InstanceNorm2d(in_ch, affine=True) if norm and not first else None
        self.norm2 = nn.InstanceNorm2d(out_ch, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if not self.first:
            h = F.relu(self.norm1(h) if self.norm1 is not None else h)
        h = self.conv1(h)
        h = F.relu(self.norm2(h) if self.norm2 is not None else h)
        if not self.downsample:
            s = self.skip(x) if self.skip is not None else x
            return self.conv2(h) + s
        # avgpool(conv3x3(h)) and avgpool(conv1x1(x)), computed as the same linear maps in
        # the cheaper order: one stride-2 4x4 convolution, and the 1x1 after the pooling.
        h = conv3x3_then_avgpool(h, self.conv2.weight, self.conv2.bias)
        s = F.avg_pool2d(x, 2)
        return h + (self.skip(s) if self.skip is not None else s)


class AdaResBlock(nn.Module):
    """Bottleneck residual block with AdaIN before each conv (same channels, same size)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = AdaIN(channels)
        self.conv1 = sn_conv(channels, channels)
        self.norm2 = AdaIN(channels)
        self.conv2 = sn_conv(channels, channels)

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x, psi)))
        h = self.conv2(F.relu(self.norm2(h, psi)))
        return x + h


class AdaResBlockUp(nn.Module):
    """Residual upsampling block: AdaIN ReLU up conv AdaIN ReLU conv + (up, 1x1) shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1 = AdaIN(in_ch)
        self.conv1 = sn_conv(in_ch, out_ch)
        self.norm2 = AdaIN(out_ch)
        self.conv2 = sn_conv(out_ch, out_ch)
        self.skip = sn_conv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        # conv3x3(up(.)) and conv1x1(up(x)) with nearest 2x upsampling, computed as the same
        # linear maps in the cheaper order (``upsample_then_conv3x3``; the 1x1 before the
        # upsampling, which commutes with it).
        h = upsample_then_conv3x3(F.relu(self.norm1(x, psi)), self.conv1.weight, self.conv1.bias)
        h = self.conv2(F.relu(self.norm2(h, psi)))
        s = F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")
        return h + s


# Below these many input pixels (batch x height x width) the reordered forms cost more than
# they save: building the derived kernels (and their gradients) is per call, independent of
# the batch, while the multiply-adds saved scale with the pixels. Measured on the 2-core CPU,
# one thread, forward and backward: a 256->256 down block on an 8x8 map, batch 1, takes 51 ms
# fused and 4 ms plain; a 32->64 one on 64x64 takes 6 ms fused and 9 ms plain (fine-tuning
# runs V and E's small maps at batch 1-2; rendering runs G at batch 8).
FUSED_DOWN_MIN_PIXELS = 2048
FUSED_UP_MIN_PIXELS = 256


def _pixels(x: torch.Tensor) -> int:
    return x.shape[0] * x.shape[-2] * x.shape[-1]


def conv3x3_then_avgpool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         fused: bool | None = None) -> torch.Tensor:
    """``avg_pool2d(conv2d(x, weight, bias, padding=1), 2)``, as one stride-2 convolution when
    ``fused`` (None: when x has at least ``FUSED_DOWN_MIN_PIXELS`` pixels).

    Both are linear: averaging the 3x3 kernel's four placements in a 2x2 window gives a 4x4
    kernel, evaluated only at the kept positions (4 instead of 9 multiply-adds per input
    pixel and output channel). Same function, same gradients; x (B, C, H, W) with even H, W."""
    if fused is None:
        fused = _pixels(x) >= FUSED_DOWN_MIN_PIXELS
    if not fused:
        return F.avg_pool2d(F.conv2d(x, weight, bias, padding=1), 2)
    kernel = weight.new_zeros(*weight.shape[:2], 4, 4)
    for dy in (0, 1):
        for dx in (0, 1):
            kernel[:, :, dy:dy + 3, dx:dx + 3] += weight
    return F.conv2d(x, kernel * 0.25, bias, stride=2, padding=1)


def _nearest_up_taps(weight: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Along ``dim`` (a kernel axis of length 3), the two-tap kernels that a 3-tap kernel
    becomes on a 2x nearest-upsampled input, for even and odd output positions: even ones
    read low-res rows (i - 1, i) with taps (w0, w1 + w2), odd ones (i, i + 1) with
    (w0 + w1, w2)."""
    w0, w1, w2 = weight.unbind(dim)
    return (torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim))


def upsample_then_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          fused: bool | None = None) -> torch.Tensor:
    """``conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)``,
    when ``fused`` (None: when x has at least ``FUSED_UP_MIN_PIXELS`` pixels) without making
    the upsampled map: each of the four output phases (even/odd row and column) is a 2x2
    convolution of x itself (16 instead of 36 multiply-adds per low-res pixel), then the
    phases are interleaved. Same function, same gradients; zero padding of the upsampled map
    is zero padding of x."""
    if fused is None:
        fused = _pixels(x) >= FUSED_UP_MIN_PIXELS
    if not fused:
        return F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias,
                        padding=1)
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    phases = []
    for row, row_taps in enumerate(_nearest_up_taps(weight, 2)):
        columns = [F.conv2d(padded[:, :, row:row + height + 1, col:col + width + 1], taps, bias)
                   for col, taps in enumerate(_nearest_up_taps(row_taps, 3))]
        phases.append(torch.stack(columns, dim=-1))  # (B, O, H, W, 2): column phase last
    out = torch.stack(phases, dim=-3)  # (B, O, H, 2, W, 2): row phase before W
    return out.reshape(*out.shape[:2], 2 * height, 2 * width)


def resample(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), area-like (antialiased) when shrinking.

    Lets E, V and the warp generator's networks run at ``cfg.net_size`` while images and
    landmark images travel at the output size ``cfg.image_size``."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=image.shape[-1] > size)


def channels_at(cfg_base: int, cfg_max: int, depth: int) -> int:
    """Channel count after ``depth`` + 1 downsamplings: base * 2^depth, capped at max."""
    return min(cfg_base * 2**depth, cfg_max)


def down_stack(in_ch: int, base: int, cap: int, num_blocks: int, image_size: int,
               attention_size: int, norm: bool) -> tuple[nn.ModuleList, int]:
    """The shared downsampling trunk of E, V and G's encoder.

    Returns the blocks (a SelfAttention is inserted right after the block whose output is
    ``attention_size`` pixels wide) and the output channel count.
    """
    blocks = nn.ModuleList()
    ch, size = in_ch, image_size
    for depth in range(num_blocks):
        out = channels_at(base, cap, depth)
        blocks.append(ResBlockDown(ch, out, norm=norm, first=depth == 0))
        ch, size = out, size // 2
        if size == attention_size:
            blocks.append(SelfAttention(ch))
    return blocks, ch
