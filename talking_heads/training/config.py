"""Training and fine-tuning hyper-parameters as frozen dataclasses.

Defaults are the paper's (Zakharov et al. 2019, arXiv v2, section 4 and appendix): Adam with
lr 5e-5 for E and G, 2e-4 for D, betas (0, 0.999), two D updates per G update, K = 8 frames
per episode. The ``cpu`` preset keeps every paper rule and only shrinks what costs time on a
2-core CPU (model width, batch, K, content-loss resolution); its values were measured, see
docs/TRAINING.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from talking_heads.config import ModelConfig


def _from_dict(cls, data: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    values = dict(data)
    if "model" in values and isinstance(values["model"], dict):
        values["model"] = ModelConfig.from_dict(values["model"])
    for name in ("betas",):
        if name in values:
            values[name] = tuple(values[name])
    return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """Meta-learning (paper section 3.2) over K-shot episodes."""

    name: str = "paper"                     # preset name, recorded in the run dir
    model: ModelConfig = ModelConfig()      # networks E, G, D
    k: int = 8                              # K, frames per episode used to compute e_i
    batch_size: int = 8                     # episodes per step (per process under DDP)
    lr_g: float = 5e-5                      # Adam lr of E and G (and P)
    lr_d: float = 2e-4                      # Adam lr of D (V, W, w0, b)
    betas: tuple[float, float] = (0.0, 0.999)  # Adam betas for both
    d_steps: int = 2                        # D updates per E/G update (paper: 2)
    content_size: int | None = None         # L_CNT input side in px; None = image size
    content_face: bool = True               # include the face-identity term of L_CNT
    amp: str = "auto"                       # "auto" (bf16 on CUDA, off on CPU), "bf16", "none"
    max_steps: int = 1_000_000              # stop after this many E/G steps
    log_every: int = 10                     # steps between progress-bar / JSONL loss records
    sample_every: int = 200                 # steps between PNG sample grids
    eval_every: int = 500                   # steps between dev metrics (and best checkpoint)
    checkpoint_every: int = 200             # steps between 'last' checkpoints
    dev_episodes: int = 4                   # fixed dev (and val) episodes for metrics and samples
    val_identities: int = 0                 # train identities held out to pick the best checkpoint
    init_from: str | None = None            # model folder whose weights start a fresh run
    augment: bool = True                    # dataset augmentation (horizontal flip)
    num_workers: int = 1                    # DataLoader workers per process
    threads: int = 0                        # torch intra-op threads per process; 0 = auto
    seed: int = 0                           # base seed (rank and step are mixed in)

    @classmethod
    def paper(cls) -> "TrainConfig":
        return cls()

    @classmethod
    def cpu(cls) -> "TrainConfig":
        """Measured on the 2-core CPU: see docs/TRAINING.md for steps/s of the options."""
        return cls(name="cpu", model=ModelConfig.cpu(), k=4, batch_size=2, d_steps=2,
                   content_size=None, sample_every=200, eval_every=500, checkpoint_every=100,
                   num_workers=1)

    @classmethod
    def warp(cls) -> "TrainConfig":
        """The two-layer (warp) model on the 2-core CPU: ``cpu``'s rules and batch, L_CNT at
        128 px (the networks' size; the 256 px detail is copied from the source, not learned),
        four train identities held out for model selection, warm-started from the bundled
        ``cpu`` checkpoint (same widths; see ``training.warm_start``)."""
        return cls(name="warp", model=ModelConfig.warp(), k=4, batch_size=2, d_steps=2,
                   content_size=128, sample_every=200, eval_every=200, checkpoint_every=100,
                   num_workers=1, dev_episodes=8, val_identities=4,
                   init_from="checkpoints/cpu")

    @classmethod
    def tiny(cls) -> "TrainConfig":
        """Seconds-fast runs for tests."""
        return cls(name="tiny", model=ModelConfig.tiny(), k=2, batch_size=2, d_steps=2,
                   content_face=False, max_steps=4, log_every=1, sample_every=2, eval_every=2,
                   checkpoint_every=2, dev_episodes=2, augment=False, num_workers=0, threads=1)

    @classmethod
    def preset(cls, name: str) -> "TrainConfig":
        presets = {"paper": cls.paper, "cpu": cls.cpu, "warp": cls.warp, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown train config {name!r}; choose from {sorted(presets)}")
        return presets[name]()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class FinetuneConfig:
    """Few-shot fine-tuning (paper section 3.3): psi' and G's weights, w' and D's weights."""

    lr_g: float = 5e-5                      # Adam lr of psi' and G
    lr_d: float = 2e-4                      # Adam lr of w' and V
    betas: tuple[float, float] = (0.0, 0.999)  # Adam betas
    batch_size: int = 8                     # frames per step (at most T, drawn without replacement)
    d_steps: int = 1                        # D updates per G update (1: FT must be fast)
    content_size: int | None = None         # L_CNT input side in px; None = image size
    content_face: bool = True               # include the face-identity term of L_CNT
    adversarial: bool = True                # L_ADV + hinge D; False = content loss only
    amp: str = "auto"                       # "auto": bf16 autocast where the device computes
                                            # bf16 natively (finetune.finetune_amp), "bf16",
                                            # "none"
    seed: int = 0                           # frame sampling seed
    feature_pool: int | None = None         # warp design: draw targets from this many augmented
                                            # pairs made once, their L_CNT features computed once
    train_encoder: bool = True              # False: G's landmark encoder stays frozen (no
                                            # backward through it; psi', decoder, heads train)
    select_every: int | None = None         # warp design, T >= 2: hold one photo out of the
                                            # targets and keep, of the start and every N steps,
                                            # G' that renders it best (L1); None: the last G'
    overlap: bool | None = None             # run a step's independent parts on two threads
                                            # (steps.overlapped_step); None: on a CPU with 2+
                                            # torch threads, where batch-one kernels are too
                                            # small to use two cores each

    @classmethod
    def for_model(cls, model: ModelConfig) -> "FinetuneConfig":
        """The defaults for a model design. Warp: L_CNT at the networks' size (the 256 px
        detail is the photo's own), one pair per step, and targets from a pool of 16 pairs
        whose L_CNT features are computed once, to bring 100 steps on one photo towards 30 s
        on the 2-core CPU (benchmarks/bench_finetune.py)."""
        if model.generator == "warp":
            return cls(batch_size=1, content_size=model.net_size, select_every=25,
                       feature_pool=16)
        return cls()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneConfig":
        return _from_dict(cls, data)
