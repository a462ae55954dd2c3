"""Few-shot fine-tuning modules (Zakharov et al. 2019, section 3.3).

For a new person with embedding e_new (mean of E over their T frames):

- ``AdaptedGenerator`` G'(y) = G(y, psi'), where psi' is a trainable parameter initialised to
  P e_new; G's person-generic weights stay trainable and shared with the meta-learned G.
- ``FinetuneDiscriminator`` D'(x, y) = V(x, y)^T w' + b, where w' is a trainable parameter
  initialised to w0 + e_new (this is why L_MCH pulls W_i towards e_i during meta-learning).

Both are separate modules rather than mode flags inside forward().
"""

from __future__ import annotations

import torch
from torch import nn

from talking_heads.models.discriminator import DiscriminatorOutput, ProjectionDiscriminator
from talking_heads.models.generator import Generator


def _as_vector(e_new: torch.Tensor, dim: int) -> torch.Tensor:
    """e_new (N,) or (1, N) -> (1, N)."""
    e = e_new.detach().reshape(1, -1)
    if e.shape[1] != dim:
        raise ValueError(f"expected an embedding of size {dim}, got {tuple(e_new.shape)}")
    return e


class AdaptedGenerator(nn.Module):
    """G' with psi' (1, P) a trainable parameter initialised to P e_new."""

    def __init__(self, generator: Generator, e_new: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator
        e = _as_vector(e_new, generator.config.embed_dim)
        with torch.no_grad():
            psi = generator.project(e)
        self.psi = nn.Parameter(psi.clone())  # psi', (1, P)

    def forward(self, y: torch.Tensor, points: torch.Tensor | None = None,
                sources=None) -> torch.Tensor:
        """y (B, 3, H, W) -> x-hat (B, 3, H, W); the warp design also reads the target points
        (B, 68, 2) and the source crops (``models.warp.Sources``)."""
        return self.generator(y, self.psi.expand(y.shape[0], -1), points, sources)


class FinetuneDiscriminator(nn.Module):
    """D' with w' (N,) a trainable parameter initialised to w0 + e_new; V and b are shared."""

    def __init__(self, discriminator: ProjectionDiscriminator, e_new: torch.Tensor) -> None:
        super().__init__()
        self.trunk = discriminator.trunk
        e = _as_vector(e_new, discriminator.config.embed_dim)[0]
        self.w = nn.Parameter(discriminator.w0.detach().clone() + e)  # w', (N,)
        self.b = discriminator.b

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> DiscriminatorOutput:
        v, features = self.trunk(x, y)
        return DiscriminatorOutput(score=v @ self.w + self.b, features=features)
