"""Meta-learning of E, G and D on K-shot episodes (Zakharov et al. 2019, section 3.2).

Each step draws episodes (video i, K frames, one target frame t), computes
e_i = mean_k E(x_i(s_k), y_i(s_k)), psi-hat = P e_i, x-hat = G(y_i(t), psi-hat), updates E and G
on L_CNT + L_ADV + L_FM + L_MCH(e_i, W_i), then D on the hinge loss (``steps.adversarial_step``).

The same code runs single-process or under torchrun (DDP, gloo on CPU / nccl on GPU). A run
dir holds ``train_config.json``, ``last.pt`` / ``best.pt`` (resumable state), ``last/`` and
``best/`` (exported safetensors weights), ``log.jsonl`` (losses and dev metrics over time) and
``samples/*.png`` (landmarks | generated | real). Re-running the same command resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import threading
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from talking_heads.losses import LossWeights, embedding_match_loss
from talking_heads.models import ProjectionDiscriminator, TalkingHeadModel
from talking_heads.training import distributed
from talking_heads.training.checkpoint import (export_weights, load_training_state,
                                               remap_video_rows, save_training_state)
from talking_heads.training.config import TrainConfig
from talking_heads.training.episodes import EpisodeStream, fixed_episodes, to_device
from talking_heads.training.monitor import JsonlLog, dev_metrics, sample_grid, write_png
from talking_heads.training.steps import (Generated, StepLosses, StepParts, adversarial_step,
                                          build_content_loss)

CONFIG_NAME = "train_config.json"


class EpisodeGenerator(nn.Module):
    """E and G as one module, so that DDP sees a single forward per step.

    forward(frames (B, K, 3, H, W), landmarks (B, K, 3, H, W), points (B, K, 68, 2),
    target_landmarks (B, 3, H, W), target_points (B, 68, 2)) -> (e_i (B, N), x-hat (B, 3, H, W));
    see ``TalkingHeadModel.reenact``."""

    def __init__(self, model: TalkingHeadModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames, landmarks, points, target_landmarks, target_points):
        return self.model.reenact(frames, landmarks, points, target_landmarks, target_points)


@dataclasses.dataclass
class TrainResult:
    step: int
    last_losses: StepLosses | None
    best_metric: float | None
    run_dir: Path


class MetaTrainer:
    """Owns the networks, optimisers and run dir of one (rank of a) meta-learning run."""

    def __init__(self, cfg: TrainConfig, train_set, dev_set, run_dir: Path,
                 info: distributed.DistInfo, content: nn.Module | None = None,
                 val_set=None) -> None:
        """``train_set`` / ``dev_set`` / ``val_set``: EpisodeDataset-like (items are Episodes,
        ``num_videos``); ``val_set`` (held-out train identities) picks the best checkpoint
        when given, else dev does; ``content``: L_CNT module (default: the paper's VGG16 +
        FaceNet, ``build_content_loss``)."""
        self.cfg, self.run_dir, self.info = cfg, Path(run_dir), info
        self.train_set, self.dev_set, self.val_set = train_set, dev_set, val_set
        device = info.device
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = TalkingHeadModel(cfg.model).to(device).train()
        self.disc = ProjectionDiscriminator(cfg.model, self.train_set.num_videos).to(device).train()
        self.gen_ddp = distributed.wrap(EpisodeGenerator(self.model), info)
        self.disc_ddp = distributed.wrap(self.disc, info)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.weights = LossWeights()
        if content is None:
            content = build_content_loss(cfg.content_face, self.weights)
        self.content = content.to(device)
        self.step, self.best_metric = 0, None
        self.log = JsonlLog(self.run_dir / "log.jsonl")
        self.dev_fixed = fixed_episodes(self.dev_set, cfg.dev_episodes, cfg.seed, device)
        self.val_fixed = (None if val_set is None else
                          fixed_episodes(val_set, cfg.dev_episodes, cfg.seed, device))
        self.train_fixed = fixed_episodes(self.train_set, min(2, cfg.dev_episodes), cfg.seed,
                                          device)

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "best_metric": self.best_metric,
                "model": self.model.state_dict(), "discriminator": self.disc.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "torch_rng": torch.get_rng_state(), "config": json.dumps(self.cfg.to_dict()),
                "clip_ids": list(getattr(self.train_set, "clip_ids", []))}

    def resume(self) -> bool:
        """Load ``last.pt`` if the run dir has one; returns whether it did."""
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return False
        state = load_training_state(path, map_location=self.info.device)
        old_ids, new_ids = state.get("clip_ids", []), list(getattr(self.train_set, "clip_ids", []))
        if old_ids and new_ids and old_ids != new_ids:  # the data folder gained/lost clips
            w_index = [p is self.disc.W.weight for p in self.disc.parameters()].index(True)
            remap_video_rows(state, old_ids, new_ids, self.disc.W.weight.detach(), w_index)
            if self.info.is_main:
                self.log.write("clips_changed", int(state["step"]), before=len(old_ids),
                               after=len(new_ids), kept=len(set(old_ids) & set(new_ids)))
        self.model.load_state_dict(state["model"])
        self.disc.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step, self.best_metric = int(state["step"]), state["best_metric"]
        return True

    def save(self, name: str, metrics: dict | None = None) -> None:
        if not self.info.is_main:
            return
        save_training_state(self.run_dir / f"{name}.pt", self.state())
        info = {"step": self.step, "train_config": self.cfg.name, "dev_metrics": metrics}
        export_weights(self.run_dir / name, self.model, self.disc, info)

    # -- one step ----------------------------------------------------------------------------
    def train_step(self, batch) -> StepLosses:
        idx = batch.video_index
        embedding = [None]  # e_i of this step, for W's side of L_MCH in D's update

        def generate() -> Generated:
            e, fake = self.gen_ddp(batch.frames, batch.landmarks, batch.points,
                                   batch.target_landmarks, batch.target_points)
            embedding[0] = e.detach()
            # E's side of L_MCH (W is frozen during G's update; it gets its side in D's).
            w_i = self.disc.W(idx).detach()
            return Generated(fake, self.weights.embedding_match * embedding_match_loss(e, w_i))

        def discriminate(x, y):  # x = [real; fake]: both halves are video idx
            return self.disc_ddp(x, y, idx.repeat(2), embedding[0].repeat(2, 1))

        parts = StepParts(
            generate=generate,
            judge=lambda x, y: self.disc(x, y, idx.repeat(2)),  # x = [fake; real]
            discriminate=discriminate,
            disc_params=list(self.disc.parameters()), opt_g=self.opt_g, opt_d=self.opt_d)
        return adversarial_step(parts, batch.target_frame, batch.target_landmarks, self.content,
                                self.weights, self.cfg.d_steps, self.cfg.content_size,
                                self.cfg.amp)

    # -- monitoring --------------------------------------------------------------------------
    def write_samples(self) -> None:
        for name, episodes in (("dev", self.dev_fixed), ("train", self.train_fixed)):
            _, fake = dev_metrics(self.model, episodes)
            grid = sample_grid(episodes.target_landmarks, fake, episodes.target_frame)
            write_png(self.run_dir / "samples" / f"step_{self.step:08d}_{name}.png", grid)

    def evaluate(self) -> dict:
        """FF metrics on dev (reported) and val (selects ``best``; dev when there is no val)."""
        metrics, _ = dev_metrics(self.model, self.dev_fixed)
        record = dataclasses.asdict(metrics)
        self.log.write("dev", self.step, **record)
        selection = metrics
        if self.val_fixed is not None:
            selection, _ = dev_metrics(self.model, self.val_fixed)
            self.log.write("val", self.step, **dataclasses.asdict(selection))
        if self.best_metric is None or selection.ssim > self.best_metric:
            self.best_metric = selection.ssim
            self.save("best", {**record, "selected_on": "val" if self.val_fixed else "dev",
                               "selection_ssim": selection.ssim})
        return record

    def warm_start(self) -> None:
        """A fresh run from ``cfg.init_from``: copy matching weights, then set each W_i to E's
        mean embedding of a few frames of video i (the row L_MCH would pull it to)."""
        from talking_heads.training.warm_start import warm_start

        report = warm_start(self.model, self.disc, resolve_init(self.cfg.init_from))
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            for i in range(self.train_set.num_videos):
                episode = self.train_set[i]
                e = self.model.embed(episode.frames[None].to(self.info.device),
                                     episode.landmarks[None].to(self.info.device))
                self.disc.W.weight[i] = e[0]
            self.model.train(was_training)
        if self.info.is_main:
            self.log.write("warm_start", self.step, source=str(self.cfg.init_from),
                           copied=len(report.copied), widened=report.widened,
                           fresh=len(report.fresh))


def resolve_init(path: str | Path) -> Path:
    """``init_from`` as given, or relative to the project root (presets name bundled folders)."""
    candidate = Path(path)
    if candidate.is_dir() or candidate.is_absolute():
        return candidate
    return Path(__file__).resolve().parents[2] / candidate


def open_datasets(data_dir: Path, cfg: TrainConfig):
    """The train, dev and val EpisodeDatasets of a preprocessed folder (val: ``val_identities``
    train identities held out of training to pick the best checkpoint; None when 0)."""
    from talking_heads.data.dataset import EpisodeDataset, held_out_identities

    size = cfg.model.image_size
    val_ids = held_out_identities(data_dir, cfg.val_identities, cfg.seed)
    train_set = EpisodeDataset(data_dir, split="train", k=cfg.k, image_size=size,
                               augment=cfg.augment, exclude=val_ids)
    dev_set = EpisodeDataset(data_dir, split="dev", k=cfg.k, image_size=size, seed=cfg.seed)
    val_set = None
    if val_ids:
        val_set = EpisodeDataset(data_dir, split="train", k=cfg.k, image_size=size,
                                 seed=cfg.seed, identities=val_ids)
    return train_set, dev_set, val_set


def run(cfg: TrainConfig, data_dir: Path | None, run_dir: Path, device: str | None = None,
        progress: bool = True, datasets=None, content: nn.Module | None = None) -> TrainResult:
    """Train (or resume) until ``cfg.max_steps``; rank 0 writes everything.

    ``datasets`` (train, dev[, val]) and ``content`` replace the defaults built from ``data_dir``
    and the paper's content loss (tests use this)."""
    info = distributed.setup(device)
    threads = torch.get_num_threads()
    if info.device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, threads // info.world_size))
    try:
        return _train(cfg, data_dir, run_dir, info, progress, datasets, content)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, data_dir: Path | None, run_dir: Path, info: distributed.DistInfo,
           progress: bool, datasets, content: nn.Module | None) -> TrainResult:
    run_dir = Path(run_dir)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    sets = tuple(datasets) if datasets is not None else open_datasets(data_dir, cfg)
    train_set, dev_set, val_set = (sets + (None,))[:3]
    trainer = MetaTrainer(cfg, train_set, dev_set, run_dir, info, content, val_set)
    resumed = trainer.resume()
    if not resumed and cfg.init_from:
        trainer.warm_start()
        if info.is_main:  # the starting point is a candidate: training must beat it
            trainer.evaluate()
    stop = _StopFlag()
    stream = EpisodeStream(trainer.train_set, cfg, info, start_step=trainer.step)
    bar = tqdm(total=cfg.max_steps, initial=trainer.step, disable=not (progress and info.is_main),
               desc="meta-train", dynamic_ncols=True)
    if info.is_main:
        trainer.log.write("start", trainer.step, world_size=info.world_size, resumed=resumed,
                          device=str(info.device), threads=torch.get_num_threads())
        if resumed:
            bar.write(f"resumed {run_dir} at step {trainer.step}")
    losses = None
    try:
        while trainer.step < cfg.max_steps and not stop.requested:
            losses = trainer.train_step(to_device(next(stream), info.device))
            trainer.step += 1
            bar.update(1)
            _periodic(trainer, losses, bar)
    except KeyboardInterrupt:  # Ctrl-C: keep the progress made so far, like SIGTERM
        stop.requested = True
    finally:  # other errors (e.g. a non-finite loss) leave the last good checkpoint alone
        stream.close()
        stop.restore()
        bar.close()
    if losses is not None:
        trainer.save("last")
    distributed.barrier(info)
    distributed.cleanup(info)
    return TrainResult(trainer.step, losses, trainer.best_metric, run_dir)


def _periodic(trainer: MetaTrainer, losses: StepLosses, bar) -> None:
    cfg, step, info = trainer.cfg, trainer.step, trainer.info
    if step % cfg.log_every == 0:
        values = distributed.mean_over_ranks(losses.as_dict(), info)
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"non-finite loss at step {step}: {values}")
        if info.is_main:
            trainer.log.write("train", step, **values)
            bar.set_postfix({"G": f"{values['generator']:.3f}", "CNT": f"{values['content']:.3f}",
                             "D": f"{values['discriminator']:.3f}"}, refresh=False)
    if step % cfg.checkpoint_every == 0 and info.enabled:
        spread = distributed.replica_spread([trainer.model, trainer.disc], info)
        if info.is_main:
            trainer.log.write("replicas", step, world_size=info.world_size, spread=spread)
        if spread != 0.0:
            raise RuntimeError(f"DDP replicas diverged at step {step} (spread {spread})")
    if not info.is_main:
        return
    if step % cfg.sample_every == 0:
        trainer.write_samples()
    if step % cfg.eval_every == 0:
        record = trainer.evaluate()
        bar.write(f"step {step} dev FF: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items()))
    if step % cfg.checkpoint_every == 0:
        trainer.save("last")


class _StopFlag:
    """SIGTERM asks the loop to stop after the current step (and save ``last``)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m talking_heads train",
                                     description="Meta-learning of E, G, D (resumes a run dir).")
    parser.add_argument("--data", required=True, type=Path, help="preprocessed data folder")
    parser.add_argument("--out", required=True, type=Path, help="run dir (resumed if present)")
    parser.add_argument("--config", default="warp", help="preset: warp, paper, cpu or tiny")
    parser.add_argument("--steps", type=int, help="stop after this many steps in total")
    parser.add_argument("--batch-size", type=int, help="episodes per step per process")
    parser.add_argument("--k", type=int, help="K, frames per episode")
    parser.add_argument("--d-steps", type=int, help="D updates per G update")
    parser.add_argument("--amp", choices=["auto", "bf16", "none"])
    parser.add_argument("--workers", type=int, help="DataLoader workers per process")
    parser.add_argument("--threads", type=int, help="torch threads per process (0: auto)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--init-from", help="model folder whose E, G, D weights start a fresh "
                        "run (W re-initialised from E); e.g. checkpoints/warp to continue the "
                        "bundled model on a new machine")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    saved = args.out / CONFIG_NAME
    if saved.is_file():  # a resumed run keeps its own settings
        cfg = TrainConfig.from_dict(json.loads(saved.read_text()))
    else:
        cfg = TrainConfig.preset(args.config)
    overrides = {"max_steps": args.steps, "batch_size": args.batch_size, "k": args.k,
                 "d_steps": args.d_steps, "amp": args.amp, "num_workers": args.workers,
                 "threads": args.threads, "init_from": args.init_from}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    result = run(cfg, args.data, args.out, device=args.device, progress=not args.no_progress)
    print(f"stopped at step {result.step}; best selection SSIM (val, else dev) "
          f"{result.best_metric}; run {args.out}")
    return 0
