"""Two-layer (warp) generator: copy the photo's own pixels, generate only what it lacks.

Beyond Zakharov et al. 2019, after the same lab's *Fast Bi-layer Neural Synthesis of One-Shot
Realistic Head Avatars* (Zakharov et al., ECCV 2020) and the warping peers (first-order-model,
Thin-Plate-Spline, LivePortrait). With few training identities the paper's G, which draws every
pixel, learns a generic face; sampling the source keeps the person by construction.

For a target landmark image y(t) with points p_t, psi-hat = P e and source crops x_s with their
landmark images y_s and points p_s:

1. **Base warp, closed form.** A thin-plate spline maps target points to source points, with
   fixed anchors on the crop border so the background stays put (``tps_grid``). It is solved
   per frame (an 87 x 87 system) and evaluated on a ``cfg.warp_grid`` grid. No learning: an
   untrained model renders this warp (its heads start at zero flow and an almost-closed mask).
2. **Learned residual.** The encoder reads [y(t), warped x_s, warped y_s] at ``cfg.net_size``;
   the paper's AdaIN decoder (psi-hat = P e, layout read off the module tree) gives features
   from which three heads read: the fill-in image (the paper's output head, tanh), a residual
   flow (2 channels) and a blend-mask logit.
3. **Compose at full resolution.** The total flow (base + residual) is upsampled to
   ``cfg.image_size`` and samples the full-resolution source crop; then
   output = mask x warped source + (1 - mask) x fill-in.

With T > 1 sources, each frame uses the source whose landmarks are nearest to the target's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.config import ModelConfig
from talking_heads.models.generator import Generator
from talking_heads.models.layers import resample

NUM_POINTS = 68
MASK_INIT = 4.0  # blend-mask logit at initialisation: sigmoid(4) = 0.98, i.e. mostly the warp
TPS_REGULARISATION = 1e-3  # ridge on the kernel: coincident points (closed lips) stay solvable
BORDER_ANCHORS = 5  # fixed points per crop side (corners shared), normalised coordinates


@dataclass
class Sources:
    """Source crops the warp samples: images and landmark images (B, T, 3, S, S) in [-1, 1]
    at the output size S, and their points (B, T, 68, 2) in crop pixels of S."""

    images: torch.Tensor
    landmarks: torch.Tensor
    points: torch.Tensor
    shared_by_batch: bool = False  # every row holds the same T sources (``Sources.shared``)

    def __post_init__(self) -> None:
        b, t = self.images.shape[:2]
        if (self.images.dim() != 5 or self.landmarks.shape != self.images.shape
                or self.points.shape != (b, t, NUM_POINTS, 2)):
            raise ValueError(f"expected images/landmarks (B, T, 3, S, S) and points "
                             f"(B, T, {NUM_POINTS}, 2), got {tuple(self.images.shape)}, "
                             f"{tuple(self.landmarks.shape)}, {tuple(self.points.shape)}")

    @classmethod
    def shared(cls, images: torch.Tensor, landmarks: torch.Tensor, points: torch.Tensor,
               batch: int) -> "Sources":
        """One person's T sources (T, 3, S, S), (T, 68, 2) repeated for a batch of frames."""
        return cls(images[None].expand(batch, *images.shape),
                   landmarks[None].expand(batch, *landmarks.shape),
                   points[None].expand(batch, *points.shape), shared_by_batch=True)

    def nearest_index(self, target_points: torch.Tensor) -> torch.Tensor:
        """Per frame, the index (B,) of the source whose points are nearest to
        ``target_points`` (B, 68, 2) (mean point distance)."""
        if self.images.shape[1] == 1:
            return torch.zeros(len(target_points), dtype=torch.long, device=self.points.device)
        distance = (self.points - target_points[:, None]).norm(dim=-1).mean(dim=-1)  # (B, T)
        return distance.argmin(dim=1)

    def nearest(self, target_points: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per frame, the source whose points are nearest to ``target_points`` (B, 68, 2):
        returns images (B, 3, S, S), landmarks (B, 3, S, S), points (B, 68, 2)."""
        index = self.nearest_index(target_points)
        rows = torch.arange(len(index), device=index.device)
        return self.images[rows, index], self.landmarks[rows, index], self.points[rows, index]

    def at_size(self, size: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen sources' images and landmark images (B, 3, size, size), resampled. Shared
        sources are resampled once per photo, not once per frame."""
        rows = torch.arange(len(index), device=index.device)
        if self.shared_by_batch:
            images = resample(self.images[0], size)[index]
            landmarks = resample(self.landmarks[0], size)[index]
            return images, landmarks
        return (resample(self.images[rows, index], size),
                resample(self.landmarks[rows, index], size))


def to_normalised(points: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels (pixel centres at integers) -> grid_sample's [-1, 1] (align_corners=False)."""
    return (points + 0.5) * (2.0 / size) - 1.0


def border_anchors(per_side: int = BORDER_ANCHORS) -> torch.Tensor:
    """(4 * (per_side - 1), 2) fixed points on the crop border in normalised coordinates."""
    t = torch.linspace(-1.0, 1.0, per_side)
    top = torch.stack([t[:-1], torch.full_like(t[:-1], -1.0)], dim=1)
    right = torch.stack([torch.full_like(t[:-1], 1.0), t[:-1]], dim=1)
    bottom = torch.stack([t.flip(0)[:-1], torch.full_like(t[:-1], 1.0)], dim=1)
    left = torch.stack([torch.full_like(t[:-1], -1.0), t.flip(0)[:-1]], dim=1)
    return torch.cat([top, right, bottom, left])


def _tps_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """U(|a_i - b_j|) with U(r) = r^2 log r^2: (B, N, 2), (B, M, 2) -> (B, N, M).

    |a - b|^2 = |a|^2 + |b|^2 - 2 a.b as one batched matmul (the grid query is 4096 x 84 per
    frame; the broadcast difference cost a third of a frame's render time)."""
    d2 = torch.baddbmm((a * a).sum(-1, keepdim=True) + (b * b).sum(-1)[:, None], a,
                       b.transpose(1, 2), alpha=-2.0).clamp_min_(0.0)
    return d2 * torch.log(d2 + 1e-12)


def tps_solve(target: torch.Tensor, source: torch.Tensor,
              size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The thin-plate spline that maps ``target`` points onto ``source`` points.

    target, source: (B, 68, 2) in crop pixels of a ``size`` px crop. Returns the control
    points (B, N, 2) (targets, then the border anchors, which map to themselves) and the
    coefficients (B, N + 3, 2) (kernel weights, then the affine part), normalised coordinates.
    Solved in float64: the system mixes r^2 log r^2 terms with an affine part and is poorly
    scaled in float32."""
    if target.shape != source.shape or target.shape[1:] != (NUM_POINTS, 2):
        raise ValueError(f"expected (B, {NUM_POINTS}, 2) points, got {tuple(target.shape)}, "
                         f"{tuple(source.shape)}")
    batch, device = target.shape[0], target.device
    anchors = border_anchors().to(device, torch.float64)[None].expand(batch, -1, -1)
    c = torch.cat([to_normalised(target.double(), size), anchors], dim=1)  # (B, N, 2)
    v = torch.cat([to_normalised(source.double(), size), anchors], dim=1)  # (B, N, 2)
    n = c.shape[1]
    kernel = _tps_kernel(c, c) + TPS_REGULARISATION * torch.eye(n, dtype=c.dtype, device=device)
    affine = torch.cat([torch.ones_like(c[..., :1]), c], dim=2)  # (B, N, 3)
    system = torch.zeros(batch, n + 3, n + 3, dtype=c.dtype, device=device)
    system[:, :n, :n] = kernel
    system[:, :n, n:] = affine
    system[:, n:, :n] = affine.transpose(1, 2)
    rhs = torch.cat([v, torch.zeros(batch, 3, 2, dtype=c.dtype, device=device)], dim=1)
    # The solve needs float64; evaluating the solved spline does not.
    return c.float(), torch.linalg.solve(system, rhs).float()


def tps_evaluate(controls: torch.Tensor, coefficients: torch.Tensor,
                 query: torch.Tensor) -> torch.Tensor:
    """The spline at normalised points ``query`` (B, Q, 2) -> (B, Q, 2)."""
    n = controls.shape[1]
    query_affine = torch.cat([torch.ones_like(query[..., :1]), query], dim=2)  # (B, Q, 3)
    return (_tps_kernel(query, controls) @ coefficients[:, :n]
            + query_affine @ coefficients[:, n:])


def tps_grid(target: torch.Tensor, source: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """Sampling grid (B, grid, grid, 2) of the spline that maps ``target`` points onto
    ``source`` points (``tps_solve``): normalised (x, y) source coordinates for
    ``grid_sample`` at the grid's pixel centres."""
    controls, coefficients = tps_solve(target, source, size)
    batch = target.shape[0]
    axis = (torch.arange(grid, device=target.device, dtype=torch.float32) + 0.5) * (2.0 / grid) - 1.0
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    query = torch.stack([gx, gy], dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)  # (B, G*G, 2)
    mapped = tps_evaluate(controls, coefficients, query)
    return mapped.reshape(batch, grid, grid, 2).to(target.dtype)


def resample_grid(grid: torch.Tensor, size: int) -> torch.Tensor:
    """A sampling grid (B, g, g, 2) -> (B, size, size, 2), bilinear (the warp is smooth)."""
    if grid.shape[1] == size:
        return grid
    up = F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                       align_corners=False)
    return up.permute(0, 2, 3, 1)


def geometry_precision(device: torch.device):
    """The warp's geometry (spline, sampling, compositing) always runs in float32, also
    under a caller's bf16 autocast: bf16 normalised coordinates are off by up to half a
    pixel at 256 px."""
    return torch.autocast(device_type=device.type, enabled=False)


def sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


@dataclass
class WarpLayers:
    """The parts of one warp-generator output (B, ., S, S) at the output size S."""

    image: torch.Tensor   # the composite x-hat in [-1, 1]
    warped: torch.Tensor  # the source sampled by the total flow
    fill: torch.Tensor    # the generated fill-in (AdaIN decoder), upsampled
    mask: torch.Tensor    # (B, 1, S, S) in (0, 1): weight of the warped source
    base: torch.Tensor | None = None  # the source sampled by the closed-form warp alone


class WarpGenerator(Generator):
    """G(y, psi-hat; x_s, y_s) -> x-hat: warp of the source plus generated fill-in.

    Shares the paper G's landmark encoder (here on 9 channels), AdaIN decoder, projection P
    and psi-hat layout; adds a residual-flow head and a blend-mask head. The two heads are
    plain convolutions, not spectrally normalised: they start at exactly zero (the untrained
    model renders the closed-form warp), and the spectral norm of a zero matrix is undefined."""

    needs_sources = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, in_channels=9)  # y(t), warped x_s, warped y_s
        ch = self.decoder.out_channels
        self.flow_head = nn.Conv2d(ch, 2, 3, padding=1)
        self.mask_head = nn.Conv2d(ch, 1, 3, padding=1)
        for head, bias in ((self.flow_head, 0.0), (self.mask_head, MASK_INIT)):
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, bias)

    def layers(self, y: torch.Tensor, psi: torch.Tensor, points: torch.Tensor,
               sources: Sources, with_base: bool = False) -> WarpLayers:
        """y (B, 3, S, S), psi (B, P), target points (B, 68, 2) in crop px -> WarpLayers
        (``with_base`` also samples the closed-form warp alone, for pictures and tests)."""
        self.check_inputs(y, psi)
        size, net = self.config.image_size, self.config.net_size
        if points is None or sources is None:
            raise ValueError("the warp generator needs the target points and the source crops")
        if y.shape[-1] != size or points.shape != (y.shape[0], 68, 2):
            raise ValueError(f"expected y at {size} px and points (B, 68, 2), got "
                             f"{tuple(y.shape)}, {tuple(points.shape)}")
        index = sources.nearest_index(points)
        rows = torch.arange(len(index), device=index.device)
        images = sources.images[rows, index]  # (B, 3, S, S) at the output size
        with geometry_precision(y.device):
            base = tps_grid(points.float(), sources.points[rows, index].float(), size,
                            self.config.warp_grid)  # (B, g, g, 2)
            base_net = resample_grid(base, net)
            images_net, landmarks_net = sources.at_size(net, index)
            h = torch.cat([resample(y, net), sample(images_net, base_net),
                           sample(landmarks_net, base_net)], dim=1)  # (B, 9, net, net)
        for block in self.encoder:  # the networks follow the caller's autocast, if any
            h = block(h)
        features = self.decoder.activations(h, psi)  # (B, C, net, net)
        heads = self.heads(features)
        with geometry_precision(y.device):
            heads = heads.float()
            fill = torch.tanh(heads[:, :3])
            flow = heads[:, 3:5].permute(0, 2, 3, 1)  # (B, net, net, 2), normalised units
            mask = torch.sigmoid(heads[:, 5:])  # (B, 1, net, net)
            base_full = resample_grid(base, size)
            warped = sample(images, base_full + resample_grid(flow, size))
            mask, fill = resample(mask, size), resample(fill, size)
            image = mask * warped + (1.0 - mask) * fill
            return WarpLayers(image=image, warped=warped, fill=fill, mask=mask,
                              base=sample(images, base_full) if with_base else None)

    def heads(self, features: torch.Tensor) -> torch.Tensor:
        """The three output heads as one convolution (they read the same features):
        channels 0-2 the fill-in before tanh (the paper's spectrally normalised output conv),
        3-4 the residual flow, 5 the blend-mask logit. Same values as three convolutions, one
        pass over the largest feature map instead of three."""
        out_conv = self.decoder.out_conv
        weight = torch.cat([out_conv.weight, self.flow_head.weight, self.mask_head.weight])
        bias = torch.cat([out_conv.bias, self.flow_head.bias, self.mask_head.bias])
        return F.conv2d(features, weight, bias, padding=1)

    def forward(self, y: torch.Tensor, psi: torch.Tensor, points: torch.Tensor | None = None,
                sources: Sources | None = None) -> torch.Tensor:
        return self.layers(y, psi, points, sources).image


def build_generator(cfg: ModelConfig) -> Generator:
    """The generator design ``cfg.generator`` names: "paper" (pure generation) or "warp"."""
    return WarpGenerator(cfg) if cfg.generator == "warp" else Generator(cfg)
