"""Few-shot fine-tuning (FT) of a meta-learned model on T frames of a new person (section 3.3).

e_new = mean_t E(x(t), y(t)); G' = G with psi' initialised to P e_new and trained together with
G's person-generic weights; D' = V with w' initialised to w0 + e_new. The objective is L_CNT +
L_ADV (incl. feature matching) for G', the hinge loss for D', no L_MCH; the update itself is
the same ``steps.adversarial_step`` as in meta-learning (on a CPU, its parts overlapped on two
threads: ``steps.overlapped_step``, same updates). The model passed in is never modified:
G and D are copied first, so one loaded model can serve many people.

When the model ships without a discriminator (inference weights only), FT falls back to the
content loss alone and says so through ``progress``.
"""

from __future__ import annotations

import argparse
import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from talking_heads.losses import LossWeights
from talking_heads.models import (AdaptedGenerator, FinetuneDiscriminator,
                                  ProjectionDiscriminator, TalkingHeadModel)
from talking_heads.training.config import FinetuneConfig
from talking_heads.training.steps import (Generated, StepLosses, StepParts, adversarial_step,
                                          build_content_loss, overlapped_step,
                                          resize_for_content)

Progress = Callable[[float, str], None]
EarlyStop = Callable[[int, StepLosses], bool]
CONTENT_ONLY_NOTE = "no discriminator with this model: fine-tuning on the content loss only"


@dataclass
class PlateauStop:
    """Stop when the generator loss's moving average has not improved by ``min_delta``
    (relative) for ``patience`` steps. Call as ``early_stop(step, losses)``."""

    patience: int = 25
    min_delta: float = 0.01
    smoothing: float = 0.9
    _average: float | None = field(default=None, init=False)
    _best: float = field(default=float("inf"), init=False)
    _since_best: int = field(default=0, init=False)

    def __call__(self, step: int, losses: StepLosses) -> bool:
        value = losses.content  # the adversarial terms oscillate by design; L_CNT settles
        self._average = value if self._average is None else (
            self.smoothing * self._average + (1 - self.smoothing) * value)
        if self._average < self._best * (1 - self.min_delta):
            self._best, self._since_best = self._average, 0
        else:
            self._since_best += 1
        return self._since_best >= self.patience


@dataclass
class FinetuneResult:
    generator: AdaptedGenerator     # G' (psi' and the fine-tuned G weights), eval mode
    steps: int                      # updates done
    stopped_early: bool
    content_only: bool              # True when no discriminator was available
    losses: list[StepLosses]        # one per step
    # (step, held-out L1) of each candidate G' when ``FinetuneConfig.select_every`` is used
    # (step 0 is the start, psi' = P e_new), and the step of the G' returned
    selection: list[tuple[int, float]] = field(default_factory=list)
    selected_step: int | None = None


class HeldOutSelection:
    """Keeps the G' that renders one held-out photo best.

    The photo is never a training target (it still serves as a source for the others); it is
    rendered from the nearest of the other photos, as at render time, and scored by the mean
    absolute error at the output size. Candidates: the start and every ``every`` steps."""

    def __init__(self, adapted: AdaptedGenerator, frames: torch.Tensor,
                 landmarks: torch.Tensor, points: torch.Tensor, held: int) -> None:
        from talking_heads.models import Sources

        others = [i for i in range(frames.shape[0]) if i != held]
        self.adapted, self.target = adapted, frames[held:held + 1]
        self.inputs = (landmarks[held:held + 1], points[held:held + 1],
                       Sources(frames[others][None], landmarks[others][None],
                               points[others][None]))
        self.scores: list[tuple[int, float]] = []
        self.best: tuple[float, int, dict] | None = None

    @torch.no_grad()
    def check(self, step: int) -> float:
        was_training = self.adapted.training
        score = float((self.adapted.eval()(*self.inputs) - self.target).abs().mean())
        self.adapted.train(was_training)
        self.scores.append((step, score))
        if self.best is None or score < self.best[0]:
            self.best = (score, step, copy.deepcopy(self.adapted.state_dict()))
        return score

    def restore_best(self) -> int:
        """Load the best candidate into G'; returns its step."""
        score, step, state = self.best
        self.adapted.load_state_dict(state)
        return step


def finetune_amp(amp: str, device: torch.device) -> str:
    """``FinetuneConfig.amp`` resolved: "auto" is bf16 autocast where the device computes bf16
    natively and float32 elsewhere, as rendering does (``precision.render_precision``, which
    ``TALKING_HEADS_PRECISION`` overrides); "bf16" and "none" stand."""
    if amp != "auto":
        return amp
    from talking_heads.precision import render_precision

    return "bf16" if render_precision(device) == "bf16" else "none"


def finetune_overlap(overlap: bool | None, device: torch.device) -> bool:
    """``FinetuneConfig.overlap`` resolved: None is on for a CPU with two or more torch
    threads (``steps.overlapped_step``); True and False stand."""
    if overlap is not None:
        return overlap
    return device.type == "cpu" and torch.get_num_threads() >= 2


def adam(params: list[torch.nn.Parameter], lr: float,
         betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam, fused into one kernel on CPU and CUDA: the same update, and at FT's batch of one
    a real share of the step (measured on 1 thread: G's 2 M weights 8.2 -> 2.1 ms, D's 3.7 M
    19.5 -> 3.1 ms)."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)


@functools.lru_cache(maxsize=4)
def cached_content_loss(use_face: bool, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """L_CNT networks are loaded once per process (they are frozen and stateless). Under bf16
    autocast, bf16 weights spare the cast of their 30 M frozen weights at every call (autocast
    caches casts only of weights that train): about 10% of a warp FT step on 2 cores."""
    return build_content_loss(use_face, LossWeights()).to(dtype)


def run_finetune(model: TalkingHeadModel, frames: torch.Tensor, landmarks: torch.Tensor,
                 steps: int, discriminator: ProjectionDiscriminator | None = None,
                 config: FinetuneConfig | None = None, progress: Progress | None = None,
                 early_stop: EarlyStop | None = None,
                 content: torch.nn.Module | None = None,
                 points: torch.Tensor | None = None) -> FinetuneResult:
    """Fine-tune on frames x (T, 3, H, W) and landmark images y (T, 3, H, W) in [-1, 1].

    The warp design also needs the frames' points (T, 68, 2) in crop pixels: it trains on
    pairs (``training.pairs``); the paper design trains on the frames themselves.
    ``config`` None: ``FinetuneConfig.for_model(model.config)``."""
    if frames.dim() != 4 or frames.shape != landmarks.shape or frames.shape[1] != 3:
        raise ValueError(f"expected (T, 3, H, W) frames and landmarks, got "
                         f"{tuple(frames.shape)}, {tuple(landmarks.shape)}")
    config = config if config is not None else FinetuneConfig.for_model(model.config)
    needs_sources = model.generator.needs_sources
    if needs_sources and points is None:
        raise ValueError("the warp design fine-tunes on pairs: pass the frames' points")
    report = progress or (lambda fraction, message: None)
    device = next(model.parameters()).device
    frames, landmarks = frames.to(device), landmarks.to(device)
    with torch.no_grad():
        was_training = model.training
        e_new = model.eval().embed(frames[None], landmarks[None])  # (1, N)
        model.train(was_training)
    adapted = AdaptedGenerator(copy.deepcopy(model.generator), e_new).train()
    if not config.train_encoder:  # y's encoder is person-generic: no backward through it
        adapted.generator.encoder.requires_grad_(False)
    content_only = discriminator is None or not config.adversarial
    judge = None
    if not content_only:
        judge = FinetuneDiscriminator(copy.deepcopy(discriminator), e_new).to(device).train()
    amp = finetune_amp(config.amp, device)
    if content is None:
        content = cached_content_loss(config.content_face,
                                      torch.bfloat16 if amp == "bf16" else torch.float32)
    content = content.to(device)
    weights = LossWeights()
    step_batch = [None]  # (y, points, sources) of the step, read by ``generate``
    parts = StepParts(
        generate=lambda: Generated(adapted(*step_batch[0])),
        judge=judge, discriminate=judge,
        disc_params=[] if judge is None else list(judge.parameters()),
        opt_g=adam([p for p in adapted.parameters() if p.requires_grad], config.lr_g,
                   config.betas),
        opt_d=None if judge is None else adam(list(judge.parameters()), config.lr_d,
                                              config.betas))
    if content_only and discriminator is None:
        report(0.0, CONTENT_ONLY_NOTE)
    generator = torch.Generator().manual_seed(config.seed)
    count, batch = frames.shape[0], min(config.batch_size, frames.shape[0])
    history: list[StepLosses] = []
    stopped = False
    pairs = selector = None
    if needs_sources:
        from talking_heads.training.pairs import PairSampler

        held = count - 1 if config.select_every and count >= 2 else None
        pairs = PairSampler(frames, points.to(device), seed=config.seed,
                            pool=config.feature_pool,
                            targets=None if held is None else list(range(held)))
        batch = config.batch_size if count == 1 else batch
        if held is not None:
            selector = HeldOutSelection(adapted, frames, landmarks, points.to(device), held)
            selector.check(0)
    terms = [content]  # L_CNT, as one term or as its parts (summed)
    if pairs is not None and pairs.pool is not None and hasattr(content, "reference"):
        # The pool's real features, once: each step's L_CNT then runs the networks on x-hat only.
        references = content.reference(resize_for_content(pairs.pool.images, config.content_size))
        drawn_refs = lambda: references.select(pairs.last_indices)  # noqa: E731
        terms = [lambda fake, real: content.vgg_term(fake, drawn_refs())]
        if content.face is not None:
            terms.append(lambda fake, real: content.face_term(fake, drawn_refs()))
    step_content = terms[0] if len(terms) == 1 else \
        (lambda fake, real: sum(term(fake, real) for term in terms))
    overlap = finetune_overlap(config.overlap, device) and (judge is not None or len(terms) > 1)
    for step in range(steps):
        if pairs is not None:
            drawn = pairs.draw(batch)
            real, y = drawn.images, drawn.landmarks
            step_batch[0] = (y, drawn.points, drawn.sources)
        else:
            # T <= batch: every frame once; otherwise a random subset (without replacement).
            idx = torch.randperm(count, generator=generator)[:batch].to(device)
            real, y = frames[idx], landmarks[idx]
            step_batch[0] = (y,)
        if overlap:
            losses = overlapped_step(parts, real, y, terms, weights, config.d_steps,
                                     config.content_size, amp)
        else:
            losses = adversarial_step(parts, real, y, step_content, weights,
                                      config.d_steps, config.content_size, amp)
        history.append(losses)
        report((step + 1) / steps, f"fine-tuning step {step + 1}/{steps}: "
                                   f"content {losses.content:.3f}")
        if selector is not None and (step + 1) % config.select_every == 0:
            selector.check(step + 1)
        if early_stop is not None and early_stop(step + 1, losses):
            stopped = True
            report(1.0, f"stopped early after {step + 1} steps (loss plateau)")
            break
    selected = None
    if selector is not None:
        if selector.scores[-1][0] != len(history):
            selector.check(len(history))
        selected = selector.restore_best()
        report(1.0, f"kept G' of step {selected} (best on the held-out photo)")
    return FinetuneResult(generator=adapted.eval(), steps=len(history), stopped_early=stopped,
                          content_only=content_only, losses=history,
                          selection=list(selector.scores) if selector else [],
                          selected_step=selected)


def finetune(model: TalkingHeadModel, frames: torch.Tensor, landmarks: torch.Tensor,
             steps: int, **kwargs) -> AdaptedGenerator:
    """``run_finetune(...)`` returning only G' (the contract in docs/INTERFACES.md)."""
    return run_finetune(model, frames, landmarks, steps, **kwargs).generator


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m talking_heads finetune",
                                     description="Adapt a model to a person; save an Avatar.")
    parser.add_argument("--model", required=True, help="model dir or Hub repo id")
    parser.add_argument("--images", required=True, nargs="+", type=Path, help="photos")
    parser.add_argument("--out", required=True, type=Path, help="Avatar dir to write")
    parser.add_argument("--mode", choices=["ff", "ft"], default="ft")
    parser.add_argument("--steps", type=int, default=100, help="FT steps")
    parser.add_argument("--detector", default="dlib", help="landmark backend")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    import cv2

    from talking_heads.avatar import Avatar
    from talking_heads.images import bgr_to_rgb
    from talking_heads.landmarks.detector import get_detector
    from talking_heads.training.checkpoint import load_discriminator

    args = _parse(argv)
    model = TalkingHeadModel.from_pretrained(args.model)
    images = []
    for path in args.images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read image {path}")
        images.append(bgr_to_rgb(image))
    discriminator = load_discriminator(args.model, model.config) if args.mode == "ft" else None

    def show(fraction: float, message: str) -> None:
        print(f"[{fraction:6.1%}] {message}", flush=True)

    avatar = Avatar.from_images(images, model, mode=args.mode, steps=args.steps,
                                detector=get_detector(args.detector), progress=show,
                                discriminator=discriminator, early_stop=PlateauStop())
    avatar.save(args.out)
    print(f"saved avatar ({args.mode}, {len(images)} photos) to {args.out}")
    return 0
