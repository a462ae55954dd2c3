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
import threading
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.losses import (LossWeights, adversarial_loss, feature_matching_loss,
                                  hinge_discriminator_loss)
from talking_heads.compute_thread import SingleThread
from talking_heads.models import DiscriminatorOutput

JudgeFn = Callable[[torch.Tensor, torch.Tensor], DiscriminatorOutput]
ContentTerm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x-hat, x) -> weighted
SIDE = SingleThread("talking-heads-step-side")  # the second thread of ``overlapped_step``


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
            loss_adv, loss_fm = generator_adversarial_terms(
                judge_pair(parts.judge, fake, real, landmarks), weights)
            total = total + loss_adv + loss_fm
            out.adversarial = float(loss_adv.detach())
            out.feature_matching = float(loss_fm.detach())
        if generated.embedding_match is not None:
            total = total + generated.embedding_match
            out.embedding_match = float(generated.embedding_match.detach())
    parts.opt_g.zero_grad(set_to_none=True)
    total.float().backward()
    parts.opt_g.step()
    set_requires_grad(parts.disc_params, True)
    out.content, out.generator = float(loss_cnt.detach()), float(total.detach())

    update_discriminator(parts, real, fake.detach(), landmarks, weights, d_steps, amp, out)
    return out


def judge_pair(judge: JudgeFn, fake: torch.Tensor, real: torch.Tensor,
               landmarks: torch.Tensor) -> DiscriminatorOutput:
    """D's judgement of [x-hat; x] in one forward (D treats samples independently): at FT's
    batch of one, D's cost is mostly per call (its spectrally normalised weights), not per
    sample."""
    return judge(torch.cat([fake, real]), torch.cat([landmarks, landmarks]))


def generator_adversarial_terms(judged: DiscriminatorOutput,
                                weights: LossWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's weighted L_ADV and L_FM from ``judge_pair``'s judgement. The real half
    only supplies feature-matching targets (detached there)."""
    fake_score = judged.score.chunk(2)[0]
    fake_features, real_features = zip(*(f.chunk(2) for f in judged.features))
    loss_fm = weights.feature_matching * feature_matching_loss(list(real_features),
                                                               list(fake_features))
    return weights.adversarial * adversarial_loss(fake_score), loss_fm


def discriminator_objective(judged: DiscriminatorOutput, real_score: torch.Tensor,
                            fake_score: torch.Tensor, weights: LossWeights
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's loss: the hinge loss and, in meta-learning, W's share of L_MCH (paper eq. for L_MCH
    over E and W; W is D's parameter, so its share is minimised in D's update, e_i fixed).
    Returns the total and the weighted L_MCH (None in fine-tuning)."""
    loss_d = hinge_discriminator_loss(real_score, fake_score)
    match_w = None
    if judged.embedding_match is not None:
        match_w = weights.embedding_match * judged.embedding_match.float()
        loss_d = loss_d + match_w
    return loss_d, match_w


def _record_discriminator(out: StepLosses, real_score: torch.Tensor, fake_score: torch.Tensor,
                          loss_d: torch.Tensor, match_w: torch.Tensor | None) -> None:
    out.disc_real = float(F.relu(1.0 - real_score.detach()).mean())
    out.disc_fake = float(F.relu(1.0 + fake_score.detach()).mean())
    out.discriminator = float(loss_d.detach()) - (0.0 if match_w is None else float(match_w.detach()))
    out.embedding_match_w = 0.0 if match_w is None else float(match_w.detach())


def update_discriminator(parts: StepParts, real: torch.Tensor, fake: torch.Tensor,
                         landmarks: torch.Tensor, weights: LossWeights, d_steps: int, amp: str,
                         out: StepLosses) -> None:
    """``d_steps`` hinge updates of D on (x, y) against (x-hat, y), x-hat detached; the D
    fields of ``out`` are filled. Nothing happens for content-only fine-tuning."""
    if parts.discriminate is None or parts.opt_d is None or d_steps == 0:
        return
    set_requires_grad(parts.disc_params, True)
    pair_x = torch.cat([real, fake])            # (2B, 3, H, W): one forward for real and fake
    pair_y = torch.cat([landmarks, landmarks])  # (2B, 3, H, W)
    for _ in range(d_steps):
        with autocast_context(amp, real.device):
            judged = parts.discriminate(pair_x, pair_y)
            real_score, fake_score = judged.score.float().chunk(2)
            loss_d, match_w = discriminator_objective(judged, real_score, fake_score, weights)
        parts.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        parts.opt_d.step()
    _record_discriminator(out, real_score, fake_score, loss_d, match_w)


def overlapped_step(parts: StepParts, real: torch.Tensor, landmarks: torch.Tensor,
                    terms: Sequence[ContentTerm], weights: LossWeights, d_steps: int,
                    content_size: int | None, amp: str = "none") -> StepLosses:
    """``adversarial_step`` with its independent parts on two threads, each with half of
    torch's intra-op threads. ``terms`` are the parts of L_CNT (their sum is the content loss).

    At fine-tuning's batch of one a kernel is too small to keep two cores busy, but the step's
    parts need not wait for each other: the loss branches read x-hat through detached leaves,
    so their backward passes stop there, and G and D share no parameters.

    - this thread: G forward (all threads), ``terms[0]``, then, with every gradient at x-hat
      in, G's backward and optimiser step;
    - the second thread: D's judgement of [x-hat; x], ``terms[1:]``, then D's update(s).

    With terms on both threads, the judgement's backward (the generator's L_ADV + L_FM
    gradient at x-hat) runs on this thread after ``terms[0]``: the second thread's branch is
    otherwise the longer one. D's update waits for that backward (it reads the same graph and
    then changes D's weights).

    When D judges for the generator and updates with the same module (fine-tuning's D'), the
    judgement's forward also serves D's first update: same weights, same inputs, so the same
    scores as a second forward, saved. The one difference from the serial step is that D's
    spectral norms then take one power iteration per step instead of two. The updates are
    otherwise the serial step's (tested in float64). On 2 cores a warp FT step went from about
    0.44 to 0.27 s."""
    if not terms:
        raise ValueError("overlapped_step needs at least one content term")
    out = StepLosses()
    threads = torch.get_num_threads()
    adversarial = parts.judge is not None
    shared = (adversarial and parts.judge is parts.discriminate and parts.opt_d is not None
              and d_steps >= 1)
    judge_grad_here = adversarial and len(terms) > 1  # else the second thread takes it
    set_requires_grad(parts.disc_params, False)  # D gets no gradient from the G objective
    with autocast_context(amp, real.device):
        generated = parts.generate()
        fake = generated.image
        small = resize_for_content(fake, content_size)
    real_small = resize_for_content(real, content_size)
    fake_leaf = fake.detach().requires_grad_()
    small_leaf = fake_leaf if small is fake else small.detach().requires_grad_()
    values: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    judged_in, side_grads_in, judge_grad_done = (threading.Event(), threading.Event(),
                                                 threading.Event())
    judgement: dict[str, object] = {}

    def term_gradient(term: ContentTerm, name: str) -> torch.Tensor:
        with autocast_context(amp, real.device):
            loss = term(small_leaf, real_small)
        values[name] = loss.detach()
        return torch.autograd.grad(loss.float(), small_leaf)[0]

    def judge_gradient() -> None:
        """The generator's L_ADV + L_FM gradient at x-hat (keeps the graph for D's update)."""
        loss = judgement["loss"]
        grads["judge"] = torch.autograd.grad(loss.float(), fake_leaf, retain_graph=shared)[0]

    def side() -> None:
        torch.set_num_threads(max(1, threads - threads // 2))
        judged = None
        try:
            try:
                if adversarial:
                    set_requires_grad(parts.disc_params, shared)  # kept for D's update
                    with autocast_context(amp, real.device):
                        judged = judge_pair(parts.judge, fake_leaf, real, landmarks)
                        loss_adv, loss_fm = generator_adversarial_terms(judged, weights)
                    values["adversarial"], values["fm"] = loss_adv.detach(), loss_fm.detach()
                    judgement["loss"] = loss_adv + loss_fm
            finally:
                judged_in.set()
            if adversarial and not judge_grad_here:
                judge_gradient()
            for i, term in enumerate(terms[1:], 1):
                grads[f"term{i}"] = term_gradient(term, f"term{i}")
        finally:
            side_grads_in.set()
        if judge_grad_here:
            judge_grad_done.wait()  # D's update frees the graph and changes D's weights
            if "judge" not in grads:
                return  # this thread's caller failed: it raises
        remaining = d_steps
        if shared:  # D's first update from the judgement's forward
            fake_score, real_score = judged.score.float().chunk(2)
            loss_d, match_w = discriminator_objective(judged, real_score, fake_score, weights)
            parts.opt_d.zero_grad(set_to_none=True)
            loss_d.backward(inputs=parts.disc_params)
            parts.opt_d.step()
            _record_discriminator(out, real_score, fake_score, loss_d, match_w)
            remaining -= 1
        if adversarial and remaining:
            update_discriminator(parts, real, fake_leaf.detach(), landmarks, weights,
                                 remaining, amp, out)

    torch.set_num_threads(max(1, threads // 2))
    future = SIDE.submit(side)
    try:
        grads["term0"] = term_gradient(terms[0], "term0")
        if judge_grad_here:
            judged_in.wait()
            if "loss" in judgement:  # else the second thread failed: it raises
                judge_gradient()
        judge_grad_done.set()
        side_grads_in.wait()
        if len(grads) == len(terms) + adversarial:  # else the second thread failed: it raises
            content_grad = sum(grads[f"term{i}"] for i in range(len(terms)))
            outputs, seeds = [small], [content_grad]
            if adversarial:
                if small is fake:
                    seeds[0] = seeds[0] + grads["judge"]
                else:
                    outputs.append(fake)
                    seeds.append(grads["judge"])
            if generated.embedding_match is not None:
                outputs.append(generated.embedding_match.float())
                seeds.append(torch.ones_like(outputs[-1]))
            parts.opt_g.zero_grad(set_to_none=True)
            torch.autograd.backward(outputs, seeds)
            parts.opt_g.step()
    finally:
        judge_grad_done.set()  # never leave the second thread waiting
        error = future.exception()  # waits for the second thread
        torch.set_num_threads(threads)
        set_requires_grad(parts.disc_params, True)
    if error is not None:
        raise error
    out.content = float(sum(values[f"term{i}"] for i in range(len(terms))))
    out.adversarial = float(values.get("adversarial", torch.zeros(())))
    out.feature_matching = float(values.get("fm", torch.zeros(())))
    if generated.embedding_match is not None:
        out.embedding_match = float(generated.embedding_match.detach())
    out.generator = (out.content + out.adversarial + out.feature_matching
                     + out.embedding_match)
    return out
