"""Meta-learning loop, shared adversarial step, checkpoints/resume, fine-tuning (tiny models,
real clips preprocessed by the project's own pipeline)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch

from episode_data import SIZE, build_tiny_preprocessed
from talking_heads.config import ModelConfig
from talking_heads.data.dataset import EpisodeDataset, collate_episodes
from talking_heads.losses import LossWeights
from talking_heads.models import ProjectionDiscriminator, TalkingHeadModel
from talking_heads.training.checkpoint import (DISCRIMINATOR_NAME, atomic_write,
                                               load_discriminator, load_training_state,
                                               save_training_state)
from talking_heads.training.config import FinetuneConfig, TrainConfig
from talking_heads.training.finetune import PlateauStop, adam, finetune_overlap, run_finetune
from talking_heads.training import distributed
from talking_heads.training.meta_train import EpisodeGenerator, MetaTrainer, open_datasets, run
from talking_heads.training.monitor import JsonlLog
from talking_heads.training.steps import (Generated, StepLosses, StepParts, adversarial_step,
                                          build_content_loss, overlapped_step)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Stands for arbitrary code a malicious checkpoint could make ``pickle`` run."""


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """The tiny nets gain nothing from threads, and lose a lot on a busy shared CPU (the
    autouse wrapper makes conftest's fixture apply before this module's other fixtures)."""


@pytest.fixture(scope="module")
def data_dir(shared_data, tmp_path_factory) -> Path:
    return build_tiny_preprocessed(shared_data, tmp_path_factory.getbasetemp() / "tiny_data")


@pytest.fixture(scope="module")
def content() -> torch.nn.Module:
    """The real L_CNT (VGG16 Caffe weights), without the face term to keep tests fast."""
    return build_content_loss(use_face=False, weights=LossWeights())


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def test_meta_step_updates_e_g_then_d_with_paper_losses(data_dir, content):
    cfg = ModelConfig.tiny()
    dataset = EpisodeDataset(data_dir, "train", k=2, image_size=SIZE, seed=0)
    batch = collate_episodes([dataset[0], dataset[1]])
    torch.manual_seed(0)
    model, disc = TalkingHeadModel(cfg), ProjectionDiscriminator(cfg, dataset.num_videos)
    gen = EpisodeGenerator(model)
    weights = LossWeights()
    opt_g = torch.optim.Adam(model.parameters(), lr=5e-5, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.0, 0.999))

    def generate() -> Generated:
        e, fake = gen(batch.frames, batch.landmarks, batch.points, batch.target_landmarks,
                      batch.target_points)
        w = disc.W(batch.video_index).detach()
        return Generated(fake, weights.embedding_match * (e - w).abs().mean())

    parts = StepParts(generate, judge=lambda x, y: disc(x, y, batch.video_index.repeat(2)),
                      discriminate=lambda x, y: disc(x, y, batch.video_index.repeat(2)),
                      disc_params=list(disc.parameters()), opt_g=opt_g, opt_d=opt_d)
    e_before, g_before, d_before = (_snapshot(m) for m in (model.embedder, model.generator, disc))
    losses = adversarial_step(parts, batch.target_frame, batch.target_landmarks, content,
                              weights, d_steps=0, content_size=None)
    # The E/G update moves E and G (incl. P) but never D.
    assert _changed(e_before, model.embedder) and _changed(g_before, model.generator)
    assert not _changed(d_before, disc)
    assert losses.content > 0 and losses.embedding_match > 0 and losses.feature_matching > 0
    assert losses.generator == pytest.approx(losses.content + losses.adversarial
                                             + losses.feature_matching + losses.embedding_match,
                                             rel=1e-4)
    losses = adversarial_step(parts, batch.target_frame, batch.target_landmarks, content,
                              weights, d_steps=2, content_size=32)
    assert _changed(d_before, disc)
    assert losses.discriminator == pytest.approx(losses.disc_real + losses.disc_fake, rel=1e-4)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.as_dict().values())


def test_judging_fake_and_real_in_one_batch_is_judging_them_apart():
    """The generator's step scores [x-hat; x] in one forward of D. D treats samples
    independently, so the scores, the feature-matching loss and its gradient into x-hat are
    those of two separate forwards."""
    from talking_heads.losses import feature_matching_loss

    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    disc = ProjectionDiscriminator(cfg, num_videos=3).double().eval()
    size = cfg.image_size
    fake = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    real = torch.randn(2, 3, size, size, dtype=torch.float64)
    y, idx = torch.randn(2, 3, size, size, dtype=torch.float64), torch.tensor([2, 0])
    joint = disc(torch.cat([fake, real]), torch.cat([y, y]), idx.repeat(2))
    fake_apart, real_apart = disc(fake, y, idx), disc(real, y, idx)
    torch.testing.assert_close(joint.score, torch.cat([fake_apart.score, real_apart.score]))
    halves = [f.chunk(2) for f in joint.features]
    fm_joint = feature_matching_loss([r for _, r in halves], [f for f, _ in halves])
    fm_apart = feature_matching_loss(real_apart.features, fake_apart.features)
    torch.testing.assert_close(fm_joint, fm_apart)
    grad_joint, = torch.autograd.grad(fm_joint + joint.score.chunk(2)[0].sum(), fake)
    grad_apart, = torch.autograd.grad(fm_apart + fake_apart.score.sum(), fake)
    torch.testing.assert_close(grad_joint, grad_apart)


def _fine_tuning_parts(model, disc, e, y, lr=1e-2):
    """G' and D' of a person (as ``run_finetune`` makes them) with plain SGD (linear in the
    gradients: Adam would blow rounding noise in near-zero gradients up to lr-sized steps);
    the generator's step adds an L_MCH-like term on psi' so that that path is covered too."""
    from talking_heads.models import AdaptedGenerator, FinetuneDiscriminator

    adapted = AdaptedGenerator(copy.deepcopy(model.generator), e).train()
    # D' in eval mode: its spectral norms take no power-iteration step per forward, so the
    # overlapped step's one forward of D (judging, then updating) is the serial step's two.
    judge = FinetuneDiscriminator(copy.deepcopy(disc), e).eval()
    parts = StepParts(
        generate=lambda: Generated(adapted(y), embedding_match=0.1 * adapted.psi.pow(2).mean()),
        judge=judge, discriminate=judge, disc_params=list(judge.parameters()),
        opt_g=torch.optim.SGD(adapted.parameters(), lr=lr),
        opt_d=torch.optim.SGD(judge.parameters(), lr=lr))
    return adapted, judge, parts


@pytest.mark.parametrize("content_size, d_steps", [(None, 1), (32, 2)])
def test_the_overlapped_step_makes_the_serial_steps_updates(content_size, d_steps):
    """Two threads, same step: G', D' and the reported losses after two steps equal the serial
    step's (float64; only the order of float additions differs). D' judges and updates as one
    module, so the overlapped step reuses the judgement's forward for D's update."""
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    model = TalkingHeadModel(cfg).double()
    disc = ProjectionDiscriminator(cfg, num_videos=1).double()
    size = cfg.image_size
    real = torch.rand(2, 3, size, size, dtype=torch.float64) * 2 - 1
    y = torch.rand(2, 3, size, size, dtype=torch.float64) * 2 - 1
    e = torch.randn(1, cfg.embed_dim, dtype=torch.float64)
    terms = [lambda f, r: (f - r).abs().mean(), lambda f, r: 0.5 * (f - r).pow(2).mean()]
    weights = LossWeights()
    serial = _fine_tuning_parts(model, disc, e, y)
    overlapped = _fine_tuning_parts(model, disc, e, y)
    for _ in range(2):
        a = adversarial_step(serial[2], real, y, lambda f, r: terms[0](f, r) + terms[1](f, r),
                             weights, d_steps, content_size)
        b = overlapped_step(overlapped[2], real, y, terms, weights, d_steps, content_size)
    for name, value in a.as_dict().items():
        assert getattr(b, name) == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert a.adversarial != 0 and a.discriminator != 0 and a.embedding_match != 0
    for first, second in zip(serial[:2], overlapped[:2]):
        for (name, p), q in zip(first.named_parameters(), second.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=name)
    moved = [not torch.equal(p, q) for p, q in zip(serial[0].parameters(),
                                                    model.generator.parameters())]
    assert any(moved)  # the steps did update G'
    assert all(p.requires_grad for p in overlapped[1].parameters())  # D' trainable again


def test_the_overlapped_step_raises_what_a_thread_raised():
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    model, disc = TalkingHeadModel(cfg), ProjectionDiscriminator(cfg, num_videos=1)
    size = cfg.image_size
    real, y = torch.zeros(1, 3, size, size), torch.zeros(1, 3, size, size)
    _, judge, parts = _fine_tuning_parts(model, disc, torch.zeros(1, cfg.embed_dim), y)

    def broken(fake, target):
        raise RuntimeError("term failed")

    for terms in ([broken, lambda f, r: f.mean()], [lambda f, r: f.mean(), broken]):
        with pytest.raises(RuntimeError, match="term failed"):
            overlapped_step(parts, real, y, terms, LossWeights(), 1, None)
        assert all(p.requires_grad for p in judge.parameters())
    assert overlapped_step(parts, real, y, [lambda f, r: f.mean()], LossWeights(), 1,
                           None).disc_real >= 0  # the threads are free after the failures


def test_fine_tuning_adam_is_fused_and_makes_adams_updates():
    torch.manual_seed(0)
    fused = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt_fused = adam(fused, 1e-2, (0.0, 0.999))
    opt_plain = torch.optim.Adam(plain, lr=1e-2, betas=(0.0, 0.999), foreach=False)
    assert opt_fused.defaults["fused"]
    for _ in range(3):
        for a, b in zip(fused, plain):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt_fused.step()
        opt_plain.step()
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b)


def test_fine_tuning_overlaps_on_a_cpu_with_two_threads():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert finetune_overlap(None, torch.device("cpu"))
        assert not finetune_overlap(None, torch.device("cuda"))
        torch.set_num_threads(1)
        assert not finetune_overlap(None, torch.device("cpu"))
        assert finetune_overlap(True, torch.device("cpu"))
        torch.set_num_threads(2)
        assert not finetune_overlap(False, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)


def test_bf16_autocast_step_keeps_float32_weights(data_dir, content):
    """The mixed-precision path (bf16 autocast; on GPU by default) on CPU, where it is opt-in."""
    dev = EpisodeDataset(data_dir, "dev", k=2, image_size=SIZE, seed=0)[0]
    torch.manual_seed(0)
    model = TalkingHeadModel(ModelConfig.tiny())
    disc = ProjectionDiscriminator(model.config, num_videos=1)
    cfg = FinetuneConfig(batch_size=2, content_face=False, amp="bf16")
    result = run_finetune(model, dev.frames, dev.landmarks, steps=2, discriminator=disc,
                          config=cfg, content=content)
    assert all(torch.isfinite(torch.tensor(v)) for r in result.losses for v in r.as_dict().values())
    assert all(p.dtype == torch.float32 for p in result.generator.parameters())
    assert result.losses[0].discriminator > 0


def test_train_writes_samples_metrics_weights_and_resumes(data_dir, content, tmp_path):
    cfg = dataclasses.replace(TrainConfig.tiny(), max_steps=2)
    out = tmp_path / "run"
    first = run(cfg, data_dir, out, device="cpu", progress=False, content=content)
    assert first.step == 2
    saved = load_training_state(out / "last.pt")
    assert saved["step"] == 2 and "W.weight" in saved["discriminator"]
    # Exported weights: E and G load as a TalkingHeadModel; D ships without the per-video W.
    model = TalkingHeadModel.from_pretrained(out / "last")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved["model"][key])
    disc = load_discriminator(out / "last", model.config)
    assert disc is not None and disc.W.weight.shape[0] == 1
    torch.testing.assert_close(disc.w0, saved["discriminator"]["w0"])
    assert (out / "best" / DISCRIMINATOR_NAME).is_file()

    second = run(dataclasses.replace(cfg, max_steps=4), data_dir, out, device="cpu",
                 progress=False, content=content)
    assert second.step == 4
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4]
    dev = [r for r in log if r["kind"] == "dev"]
    assert [r["step"] for r in dev] == [2, 4]
    assert all(0.0 < r["l1"] < 2.0 and -1.0 <= r["ssim"] <= 1.0 and r["psnr"] > 0 for r in dev)
    grid = cv2.imread(str(out / "samples" / "step_00000004_dev.png"))
    assert grid.shape == (cfg.dev_episodes * SIZE, 3 * SIZE, 3)
    # Column 1 is the landmark image (mostly black), column 3 the real frame (not black).
    assert grid[:, :SIZE].mean() < 40 and grid[:, 2 * SIZE:].mean() > 40


# Generous: two training processes start on a loaded 2-core machine; what is checked is
# that the run resumes, not how fast.
@pytest.mark.timeout(900)
def test_killed_run_resumes_from_its_last_checkpoint(data_dir, tmp_path):
    """SIGKILL at whatever moment the first checkpoint has landed (perhaps in the middle of
    writing the next one): last.pt still loads and the run resumes from it. A temporary file
    left by the interrupted write is allowed; atomic_write's own test covers replacement."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "talking_heads", "train", "--data", str(data_dir),
               "--config", "tiny", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    errors = tmp_path / "stderr.txt"  # a file, not a pipe: an unread full pipe blocks the run
    with open(errors, "wb") as stderr:
        process = subprocess.Popen(command + ["--steps", "1000"], cwd=PROJECT_ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        # Wait for the event (the first checkpoint, or the process ending), not a deadline:
        # start-up on a loaded machine takes what it takes; pytest-timeout stops a hang.
        while not (out / "last.pt").is_file():
            assert process.poll() is None, errors.read_text()
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to save anything more (nor to go on)
        process.wait()
    killed_at = load_training_state(out / "last.pt")["step"]
    assert killed_at >= 2
    done = subprocess.run(command + ["--steps", str(killed_at + 2)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_training_state(out / "last.pt")["step"] == killed_at + 2
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps[-2:] == [killed_at + 1, killed_at + 2]


def test_resume_after_the_data_folder_gained_clips(data_dir, content, tmp_path):
    """The long run may start before preprocessing has finished: W rows follow their clips."""
    partial = tmp_path / "partial"
    partial.mkdir()
    for clip in ("styletalk__spata_clip1", "lipnet__pwij3p"):
        (partial / clip).symlink_to(data_dir / clip)
    cfg = dataclasses.replace(TrainConfig.tiny(), max_steps=2)
    out = tmp_path / "run"
    run(cfg, partial, out, device="cpu", progress=False, content=content)
    before = load_training_state(out / "last.pt")
    assert before["clip_ids"] == ["styletalk__spata_clip1"]
    (partial / "styletalk__furious_talk2_clip1").symlink_to(data_dir / "styletalk__furious_talk2_clip1")

    info = distributed.setup("cpu")
    train_set, dev_set, val_set = open_datasets(partial, cfg)
    trainer = MetaTrainer(cfg, train_set, dev_set, out, info, content, val_set)
    assert trainer.train_set.clip_ids == ["styletalk__furious_talk2_clip1",
                                          "styletalk__spata_clip1"]
    assert trainer.resume() and trainer.step == 2
    torch.testing.assert_close(trainer.disc.W.weight[1], before["discriminator"]["W.weight"][0])
    w_index = [p is trainer.disc.W.weight for p in trainer.disc.parameters()].index(True)
    moments = trainer.opt_d.state_dict()["state"][w_index]["exp_avg"]
    torch.testing.assert_close(moments[1], before["opt_d"]["state"][w_index]["exp_avg"][0])
    assert moments[0].abs().sum() == 0  # the new clip starts without Adam history
    record = [r for r in JsonlLog(out / "log.jsonl").read("clips_changed")]
    assert record and record[0]["before"] == 1 and record[0]["after"] == 2


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "state.pt"
    save_training_state(path, {"step": 1, "w": torch.ones(3)})

    def broken(temp: Path) -> None:
        temp.write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert load_training_state(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_training_state_loader_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": Payload()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_training_state(path)


def test_finetune_fits_the_person_and_leaves_the_model_alone(data_dir, content):
    dev = EpisodeDataset(data_dir, "dev", k=2, image_size=SIZE, seed=0)[0]
    torch.manual_seed(0)
    model = TalkingHeadModel(ModelConfig.tiny())
    disc = ProjectionDiscriminator(model.config, num_videos=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(lr_g=1e-3, batch_size=2, content_face=False)
    result = run_finetune(model, dev.frames, dev.landmarks, steps=15, discriminator=disc,
                          config=cfg, content=content)
    assert result.steps == 15 and not result.content_only and not result.stopped_early
    first, last = result.losses[0].content, min(r.content for r in result.losses[-3:])
    assert last < 0.9 * first, (first, last)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    with torch.no_grad():
        out = result.generator(dev.landmarks)
    assert out.shape == dev.frames.shape


def test_plateau_stop_waits_for_a_flat_loss():
    stop = PlateauStop(patience=3, min_delta=0.01, smoothing=0.0)
    falling = [stop(i, StepLosses(content=1.0 - 0.1 * i)) for i in range(5)]
    assert not any(falling)
    flat = [stop(5 + i, StepLosses(content=0.6)) for i in range(3)]
    assert flat == [False, False, True]


def test_train_config_round_trips_through_json():
    cfg = TrainConfig.cpu()
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"learning_rate": 1.0})
