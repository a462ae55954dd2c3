"""The one adversarial step shared by meta-learning and fine-tuning (paper sections 3.2, 3.3).

A step is: generate x-hat (with graph), update the generator side on
L_G = L_CNT + L_ADV + L_FM (+ L_MCH in meta-learning), then ``d_steps`` hinge updates of the
discriminator on (x, y) against (x-hat.detach(), y). What differs between the two stages is
only *what* generates and judges, which the caller passes in as ``StepParts``:

- meta-learning: generate = E over K frames -> e_i -> P -> G(y_t, psi-hat), extra loss L_MCH;
  judge = D(., ., i).
- fine-tuning: generate = G'(y) with trainable psi'; judge = D'(., .) with w'; no L_MCH.

Losses come back as a ``StepLosses`` value (floats), never a string-keyed dict.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.losses import (LossWeights, adversarial_loss, feature_matching_loss,
                                  hinge_discriminator_loss)
from talking_heads.models import DiscriminatorOutput

JudgeFn = Callable[[torch.Tensor, torch.Tensor], DiscriminatorOutput]


@dataclass
class StepLosses:
    """Scalar losses of one step (already weighted as they enter the objectives)."""

    content: float = 0.0           # L_CNT (VGG + face terms)
    adversarial: float = 0.0       # -D(x-hat)
    feature_matching: float = 0.0  # L_FM, weighted
    embedding_match: float = 0.0   # L_MCH, weighted (meta-learning only)
    generator: float = 0.0         # total of the above
    disc_real: float = 0.0         # mean max(0, 1 - D(x)) of the last D update
    disc_fake: float = 0.0         # mean max(0, 1 + D(x-hat)) of the last D update
    discriminator: float = 0.0     # hinge total of the last D update
    embedding_match_w: float = 0.0  # L_MCH as W sees it in the last D update, weighted

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Generated:
    """What ``StepParts.generate`` returns: x-hat with its graph, and L_MCH if any."""

    image: torch.Tensor                          # x-hat (B, 3, H, W)
    embedding_match: torch.Tensor | None = None  # weighted L_MCH, or None


@dataclass
class StepParts:
    """The stage-specific pieces of one adversarial step.

    ``judge`` scores (x, y) for the generator's loss (plain module, D frozen); ``discriminate``
    scores for D's own update (may be the DDP-wrapped module). Both are called on a doubled
    batch, x-hat and x (in that order for ``judge``, x then x-hat for ``discriminate``) with y
    twice. ``discriminate`` is None for content-only fine-tuning."""

    generate: Callable[[], Generated]
    judge: JudgeFn | None
    discriminate: JudgeFn | None
    disc_params: list[nn.Parameter]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None


def autocast_context(amp: str, device: torch.device):
    """bf16 autocast on CUDA (``amp`` "auto" or "bf16"), or on CPU when asked explicitly."""
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if amp not in ("auto", "bf16"):
        raise ValueError(f"unknown amp mode {amp!r}; choose auto, bf16 or none")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def resize_for_content(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """Optionally resample to ``size`` px before L_CNT (its cost grows with the pixel count)."""
    if size is None or image.shape[-1] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def build_content_loss(use_face: bool, weights: LossWeights) -> nn.Module:
    """L_CNT as a frozen module: ``content(x_hat, x)`` -> weighted scalar.

    ``use_face=False`` drops the face-identity network (cheaper; not the paper's default)."""
    from talking_heads.perceptual import ContentLoss  # heavy: loads VGG16 and FaceNet weights

    loss = ContentLoss(weights=weights, use_face=use_face)
    loss.requires_grad_(False)
    return loss.eval()


def set_requires_grad(params: list[nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def adversarial_step(parts: StepParts, real: torch.Tensor, landmarks: torch.Tensor,
                     content: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     weights: LossWeights, d_steps: int, content_size: int | None,
                     amp: str = "none") -> StepLosses:
    """One E/G (or G') update and ``d_steps`` D (or D') updates on the same batch.

    real: x (B, 3, H, W); landmarks: y (B, 3, H, W); ``content(x_hat, x)`` is the weighted
    L_CNT. Returns the step's losses."""
    out = StepLosses()
    autocast = lambda: autocast_context(amp, real.device)  # noqa: E731 - fresh context each use
    set_requires_grad(parts.disc_params, False)  # D gets no gradient from the G objective
    with autocast():
        generated = parts.generate()
        fake = generated.image
        loss_cnt = content(resize_for_content(fake, content_size),
                           resize_for_content(real, content_size))
        total = loss_cnt
        if parts.judge is not None:
            # One forward for both halves (D treats samples independently): at FT's batch of
            # one, D's cost is mostly per call (its spectrally normalised weights), not per
            # sample. The real half only supplies feature-matching targets (detached there).
            judged = parts.judge(torch.cat([fake, real]), torch.cat([landmarks, landmarks]))
            fake_score = judged.score.chunk(2)[0]
            fake_features, real_features = zip(*(f.chunk(2) for f in judged.features))
            loss_adv = adversarial_loss(fake_score)
            loss_fm = weights.feature_matching * feature_matching_loss(
                list(real_features), list(fake_features))
            total = total + weights.adversarial * loss_adv + loss_fm
            out.adversarial = float(weights.adversarial * loss_adv.detach())
            out.feature_matching = float(loss_fm.detach())
        if generated.embedding_match is not None:
            total = total + generated.embedding_match
            out.embedding_match = float(generated.embedding_match.detach())
    parts.opt_g.zero_grad(set_to_none=True)
    total.float().backward()
    parts.opt_g.step()
    set_requires_grad(parts.disc_params, True)
    out.content, out.generator = float(loss_cnt.detach()), float(total.detach())

    if parts.discriminate is None or parts.opt_d is None or d_steps == 0:
        return out
    fake = fake.detach()
    pair_x = torch.cat([real, fake])            # (2B, 3, H, W): one forward for real and fake
    pair_y = torch.cat([landmarks, landmarks])  # (2B, 3, H, W)
    for _ in range(d_steps):
        with autocast():
            judged = parts.discriminate(pair_x, pair_y)
            real_score, fake_score = judged.score.float().chunk(2)
            loss_d = hinge_discriminator_loss(real_score, fake_score)
            # Meta-learning: W minimises L_MCH too (paper eq. for L_MCH over E and W); W is
            # D's parameter, so its share of L_MCH is minimised in D's update, e_i fixed.
            match_w = None
            if judged.embedding_match is not None:
                match_w = weights.embedding_match * judged.embedding_match.float()
                loss_d = loss_d + match_w
        parts.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        parts.opt_d.step()
    out.disc_real = float(F.relu(1.0 - real_score.detach()).mean())
    out.disc_fake = float(F.relu(1.0 + fake_score.detach()).mean())
    out.discriminator = float(loss_d.detach()) - (0.0 if match_w is None else float(match_w.detach()))
    out.embedding_match_w = 0.0 if match_w is None else float(match_w.detach())
    return out
