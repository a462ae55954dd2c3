"""Content loss L_CNT of Zakharov et al. 2019 (sec. 3.2).

L_CNT = w_vgg * sum_l |VGG16_l(x-hat) - VGG16_l(x)|_1 + w_face * sum_l |Face_l(x-hat) - Face_l(x)|_1

over five depths of each network (VGG16: relu1_1..relu5_1 on Caffe-preprocessed input; face
network: FaceNet at Conv2d_2b, Conv2d_4b, Repeat, Repeat_1, Block8), each term the mean absolute
difference of one layer's activations. Weights default to the paper's (``LossWeights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.losses import LossWeights
from talking_heads.perceptual.facenet import FaceNet
from talking_heads.perceptual.vgg import VGG16Features


@dataclass
class ContentTerms:
    """Weighted parts of L_CNT; ``face`` is zero when the face network is not used."""

    vgg: torch.Tensor
    face: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.vgg + self.face


@dataclass
class ContentReference:
    """Features of real images (B, 3, H, W) for L_CNT: VGG16 and face-network layers."""

    vgg: list[torch.Tensor]
    face: list[torch.Tensor]
    shape: tuple[int, ...]

    def select(self, rows) -> "ContentReference":
        """The references of batch rows ``rows`` (a sequence or tensor of indices)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        pick = lambda layers: [layer[index.to(layer.device)] for layer in layers]  # noqa: E731
        return ContentReference(vgg=pick(self.vgg), face=pick(self.face),
                                shape=(len(index), *self.shape[1:]))


def layerwise_l1(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean absolute activation difference (real is a target)."""
    return torch.stack([F.l1_loss(f, r.detach()) for f, r in zip(fake, real)]).sum()


class ContentLoss(nn.Module):
    """``content(x_hat, x)`` -> weighted L_CNT scalar; both inputs [-1, 1] RGB (B, 3, H, W).

    The feature networks are frozen; gradients flow only into x-hat. Pass ``vgg`` / ``face``
    to reuse already-loaded networks; otherwise the converted pretrained weights are loaded.
    """

    def __init__(self, weights: LossWeights = LossWeights(), use_face: bool = True,
                 vgg: VGG16Features | None = None, face: FaceNet | None = None) -> None:
        super().__init__()
        self.weights = weights
        self.vgg = vgg if vgg is not None else VGG16Features.pretrained()
        self.face = (face if face is not None else FaceNet.pretrained()) if use_face else None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ContentLoss":
        return super().train(False)  # frozen feature nets stay in inference mode

    @torch.no_grad()
    def reference(self, x: torch.Tensor) -> ContentReference:
        """The real images' features (computed once; fine-tuning reuses them every step), in
        the networks' dtype."""
        x = x.to(next(self.vgg.parameters()).dtype)
        return ContentReference(vgg=self.vgg(x),
                                face=self.face(x)[0] if self.face is not None else [],
                                shape=tuple(x.shape))

    def terms_against(self, x_hat: torch.Tensor, reference: ContentReference) -> ContentTerms:
        """L_CNT terms of x-hat against features from ``reference``."""
        if tuple(x_hat.shape) != reference.shape:
            raise ValueError(f"shape mismatch {tuple(x_hat.shape)} vs {reference.shape}")
        vgg = self.vgg_term(x_hat, reference)
        return ContentTerms(vgg=vgg, face=self.face_term(x_hat, reference).to(vgg.dtype))

    def vgg_term(self, x_hat: torch.Tensor, reference: ContentReference) -> torch.Tensor:
        """The weighted VGG16 term of L_CNT alone (fine-tuning runs it apart from the face
        term, see ``training.steps.overlapped_step``)."""
        return self.weights.vgg * layerwise_l1(self.vgg(x_hat), reference.vgg)

    def face_term(self, x_hat: torch.Tensor, reference: ContentReference) -> torch.Tensor:
        """The weighted face-network term of L_CNT alone (zero without the face network)."""
        if self.face is None:
            return x_hat.new_zeros(())
        fake_face, _ = self.face(x_hat)
        return self.weights.face * layerwise_l1(fake_face, reference.face)

    def terms(self, x_hat: torch.Tensor, x: torch.Tensor) -> ContentTerms:
        if x_hat.shape != x.shape:
            raise ValueError(f"shape mismatch {tuple(x_hat.shape)} vs {tuple(x.shape)}")
        return self.terms_against(x_hat, self.reference(x))

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.terms(x_hat, x).total
