"""Losses of Zakharov et al. 2019 (arXiv v2 weights in ``LossWeights``).

Generator side: L = L_CNT + L_ADV + L_MCH, where L_CNT is the perceptual content loss
(``ContentLoss``, VGG16 + FaceNet), L_ADV = -D(x-hat) + feature matching, and L_MCH the L1
match between the embedding e_i and the discriminator's W_i. Discriminator side: hinge loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """Loss weights; defaults are the paper's (arXiv v2)."""

    vgg: float = 1.5e-1             # content loss on ImageNet VGG activations
    face: float = 2.5e-2            # content loss on the face-identity network activations
    adversarial: float = 1.0        # -D(x-hat)
    feature_matching: float = 10.0  # L1 on D's residual-block activations
    embedding_match: float = 10.0   # L_MCH, L1 between e_i and W_i


def adversarial_loss(fake_score: torch.Tensor) -> torch.Tensor:
    """Generator's realism term -D(x-hat), averaged over the batch. fake_score: (B,)."""
    return -fake_score.mean()


def feature_matching_loss(real_features: list[torch.Tensor],
                          fake_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over D's residual blocks of the mean absolute difference of activations.

    Real activations are targets (detached); gradients reach G through the fake ones.
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"need matching non-empty feature lists, got {len(real_features)} "
                         f"and {len(fake_features)}")
    terms = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features)]
    return torch.stack(terms).sum()


def embedding_match_loss(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """L_MCH: mean absolute difference between embeddings e_i (B, N) and W_i (B, N)."""
    if e.shape != w.shape:
        raise ValueError(f"shape mismatch {tuple(e.shape)} vs {tuple(w.shape)}")
    return F.l1_loss(e, w)


def hinge_discriminator_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """mean(max(0, 1 - D(x))) + mean(max(0, 1 + D(x-hat))); scores are raw (no sigmoid)."""
    return F.relu(1.0 - real_score).mean() + F.relu(1.0 + fake_score).mean()
