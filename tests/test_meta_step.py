"""The meta-learning step as ``MetaTrainer.train_step`` runs it: which way the adversarial game
goes, that real and fake halves meet their own video's W row, that W minimises L_MCH, and
that a held-out ``val`` subset (not dev) picks the best checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from episode_data import build_tiny_preprocessed
from talking_heads.data.dataset import held_out_identities, list_clips
from talking_heads.models import ProjectionDiscriminator
from talking_heads.training import distributed
from talking_heads.training.config import TrainConfig
from talking_heads.training.episodes import collate
from talking_heads.training.meta_train import MetaTrainer, open_datasets, run


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Tiny nets: one thread is faster on a shared 2-core machine."""


@pytest.fixture(scope="module")
def data_dir(shared_data, tmp_path_factory) -> Path:
    return build_tiny_preprocessed(shared_data, tmp_path_factory.getbasetemp() / "step_data")


class PixelContent(torch.nn.Module):
    """A cheap stand-in for L_CNT: these tests are about D, W and selection, not content."""

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return (fake - real).abs().mean()


class Recorder(torch.nn.Module):
    """Wraps D and records what each call was given (the DDP slot of ``MetaTrainer``)."""

    def __init__(self, disc: ProjectionDiscriminator) -> None:
        super().__init__()
        self.disc, self.calls = disc, []

    def forward(self, x, y, video_index, embedding=None):
        self.calls.append((x.detach().clone(), video_index.clone(),
                           None if embedding is None else embedding.clone()))
        return self.disc(x, y, video_index, embedding)


def _trainer(data_dir: Path, tmp_path: Path, model: str = "tiny") -> tuple[MetaTrainer, object]:
    cfg = dataclasses.replace(TrainConfig.tiny(), d_steps=3, lr_d=1e-3)
    if model == "tiny_warp":
        from talking_heads.config import ModelConfig

        cfg = dataclasses.replace(cfg, model=ModelConfig.tiny_warp())
    info = distributed.setup("cpu")
    train_set, dev_set, _ = open_datasets(data_dir, cfg)
    torch.manual_seed(0)
    trainer = MetaTrainer(cfg, train_set, dev_set, tmp_path / "run", info, PixelContent())
    batch = collate([train_set[0], train_set[1]])
    return trainer, batch


@pytest.mark.parametrize("model", ["tiny", "tiny_warp"])
def test_d_update_raises_real_scores_over_fake_and_pairs_each_half_with_its_video(
        data_dir, tmp_path, model):
    import copy

    trainer, batch = _trainer(data_dir, tmp_path, model)
    recorder = Recorder(trainer.disc)
    trainer.disc_ddp = recorder
    idx = batch.video_index
    assert idx.tolist() == [0, 1]  # two different videos, so a swapped pairing would show
    before = copy.deepcopy(trainer.disc)  # G's update never changes D: this is D before its own
    trainer.train_step(batch)
    assert len(recorder.calls) == trainer.cfg.d_steps
    x, video_index, embedding = recorder.calls[0]
    # The first half is the real batch, the second the generated one; both halves carry the
    # batch's video indices in the same order (real i and fake i meet W_i).
    torch.testing.assert_close(x[: len(idx)], batch.target_frame)
    assert not torch.equal(x[len(idx):], batch.target_frame)
    assert video_index.tolist() == idx.tolist() * 2
    assert embedding is not None and embedding.shape == (2 * len(idx), trainer.cfg.model.embed_dim)

    def margin(disc) -> float:
        """Mean real score minus mean fake score of the pair D was trained on."""
        with torch.no_grad():
            scores = disc(x, torch.cat([batch.target_landmarks] * 2), video_index).score
        return float(scores[: len(idx)].mean() - scores[len(idx):].mean())

    # D's updates descend the hinge loss on this pair: real rises relative to fake.
    assert margin(trainer.disc) > margin(before)


def test_w_minimises_the_embedding_match_in_ds_update(data_dir, tmp_path):
    """L_MCH's gradient reaches W_i in D's update (the paper minimises L_MCH over W too), and
    only the batch's rows."""
    trainer, batch = _trainer(data_dir, tmp_path)
    idx = batch.video_index
    e = torch.rand(len(idx), trainer.cfg.model.embed_dim)
    out = trainer.disc(batch.target_frame, batch.target_landmarks, idx, e)
    assert out.embedding_match is not None
    trainer.disc.zero_grad()
    out.embedding_match.backward()
    grad = trainer.disc.W.weight.grad
    assert grad[idx].abs().sum() > 0
    others = [i for i in range(grad.shape[0]) if i not in idx.tolist()]
    assert not grad[others].any()
    # One Adam step on L_MCH alone moves W_i towards e_i.
    before = float(trainer.disc(batch.target_frame, batch.target_landmarks, idx, e)
                   .embedding_match.detach())
    opt = torch.optim.Adam([trainer.disc.W.weight], lr=1e-2)
    opt.step()
    after = float(trainer.disc(batch.target_frame, batch.target_landmarks, idx, e)
                  .embedding_match.detach())
    assert after < before


def test_val_identities_are_held_out_of_training_and_pick_the_best(data_dir, tmp_path):
    train_ids = sorted({m["identity"] for m in list_clips(data_dir) if m["split"] == "train"})
    held = held_out_identities(data_dir, 1, seed=0)
    assert len(held) == 1 and held <= set(train_ids)
    assert held == held_out_identities(data_dir, 1, seed=0)  # reproducible
    cfg = dataclasses.replace(TrainConfig.tiny(), val_identities=1, max_steps=2, eval_every=2)
    train_set, dev_set, val_set = open_datasets(data_dir, cfg)
    assert set(train_set.identities).isdisjoint(held)
    assert set(val_set.identities) == held and dev_set.split == "dev"
    result = run(cfg, data_dir, tmp_path / "run", device="cpu", progress=False,
                 content=PixelContent())
    from talking_heads.training.monitor import JsonlLog

    log = JsonlLog(tmp_path / "run" / "log.jsonl")
    val = log.read("val")
    assert val and result.best_metric == pytest.approx(max(r["ssim"] for r in val))
    import json

    info = json.loads((tmp_path / "run" / "best" / "training.json").read_text())
    assert info["dev_metrics"]["selected_on"] == "val"
