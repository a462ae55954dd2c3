"""The two-layer (warp) generator: closed-form warp, heads at their start, source choice,
fine-tuning pairs, weights round trip with the psi-hat layout, warm start."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talking_heads.config import ModelConfig
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.images import image_to_tensor
from talking_heads.models import (ProjectionDiscriminator, Sources, TalkingHeadModel,
                                  WarpGenerator)
from talking_heads.models.warp import (MASK_INIT, resample_grid, sample, to_normalised,
                                       tps_evaluate, tps_grid, tps_solve)
from talking_heads.training.pairs import PairSampler
from talking_heads.training.warm_start import warm_start


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """Small nets: one thread is faster on a shared 2-core machine."""


def _face_points(size: int, seed: int = 0, jitter: float = 0.0) -> np.ndarray:
    """68 points spread like a face in the middle of a ``size`` px crop (deterministic)."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    radius = size * (0.18 + 0.08 * np.sin(3 * angles) ** 2)
    points = np.stack([size / 2 + radius * np.cos(angles), size / 2 + radius * np.sin(angles)], 1)
    return (points + rng.normal(0, jitter, points.shape)).astype(np.float32)


def _tiny_warp_person(count: int):
    """A seeded untrained tiny warp model and ``count`` random photos with face-like points:
    (model, frames (T, 3, S, S), landmark images (T, 3, S, S), points (T, 68, 2))."""
    torch.manual_seed(0)
    model = TalkingHeadModel(ModelConfig.tiny_warp())
    size = model.config.image_size
    points = torch.stack([torch.from_numpy(_face_points(size, i)) for i in range(count)])
    frames = torch.rand(count, 3, size, size) * 2 - 1
    landmarks = image_to_tensor(np.stack([rasterize(p, size) for p in points.numpy()]))
    return model, frames, landmarks, points


def _identity_grid(grid: int) -> torch.Tensor:
    axis = (torch.arange(grid) + 0.5) * (2.0 / grid) - 1.0
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def test_equal_points_give_the_identity_warp():
    points = torch.from_numpy(_face_points(64, jitter=2.0))[None]
    grid = tps_grid(points, points, size=64, grid=32)
    torch.testing.assert_close(grid[0], _identity_grid(32), atol=1e-5, rtol=0)


def test_the_spline_carries_each_target_point_onto_its_source_point():
    """At the target landmarks the warp reads the source landmarks (up to the small ridge that
    keeps coincident points solvable: well under a pixel)."""
    size = 64
    target = torch.from_numpy(_face_points(size, 1, jitter=1.0))[None]
    noise = torch.randn(1, 68, 2, generator=torch.Generator().manual_seed(2))
    source = target + torch.tensor([3.0, -2.0]) + noise
    controls, coefficients = tps_solve(target, source, size)
    mapped = tps_evaluate(controls, coefficients, to_normalised(target, size))
    mapped_px = (mapped + 1.0) * size / 2.0 - 0.5
    assert (mapped_px - source).abs().max() < 0.5


def test_the_border_stays_put():
    size = 64
    target = torch.from_numpy(_face_points(size))[None]
    source = target * 1.1 - 3.0
    grid = tps_grid(target, source, size=size, grid=size)[0]
    identity = _identity_grid(size)
    assert (grid[0, :] - identity[0, :]).abs().max() < 0.02
    assert (grid[:, -1] - identity[:, -1]).abs().max() < 0.02


def test_untrained_model_renders_the_closed_form_warp():
    """The heads start at zero flow and mask sigmoid(MASK_INIT): the output is the
    closed-form warp, blended with at most (1 - mask) of the fill-in."""
    cfg = ModelConfig.tiny_warp()
    torch.manual_seed(0)
    generator = WarpGenerator(cfg).eval()
    size = cfg.image_size
    source_points = torch.from_numpy(_face_points(size, 3))[None]
    target_points = source_points + torch.tensor([2.0, 1.0])
    image = torch.rand(1, 3, size, size) * 2 - 1
    y_s = image_to_tensor(rasterize(source_points[0].numpy(), size))[None]
    y_t = image_to_tensor(rasterize(target_points[0].numpy(), size))[None]
    sources = Sources(image[:, None], y_s[:, None], source_points[:, None])
    psi = generator.project(torch.rand(1, cfg.embed_dim))
    with torch.no_grad():
        layers = generator.layers(y_t, psi, target_points, sources, with_base=True)
    torch.testing.assert_close(layers.warped, layers.base)  # zero residual flow
    keep = torch.sigmoid(torch.tensor(MASK_INIT))
    torch.testing.assert_close(layers.mask, torch.full_like(layers.mask, float(keep)))
    assert (layers.image - layers.warped).abs().max() <= 2 * (1 - keep) + 1e-5


def test_a_shifted_source_is_moved_back():
    """Target points = source points shifted by (dx, dy): the warp moves the content too."""
    size = 64
    image = torch.zeros(1, 3, size, size)
    image[:, :, 28:36, 20:28] = 1.0  # a bright square inside the face region
    source = torch.from_numpy(_face_points(size))[None]
    target = source + torch.tensor([4.0, 2.0])
    grid = resample_grid(tps_grid(target, source, size, 32), size)
    out = sample(image, grid)[0, 0]
    ys, xs = torch.nonzero(out > 0.5, as_tuple=True)
    assert abs(float(xs.float().mean()) - 27.5) < 1.0  # 23.5 + 4
    assert abs(float(ys.float().mean()) - 33.5) < 1.0  # 31.5 + 2


def test_each_frame_takes_the_nearest_source():
    size = 16
    points = torch.stack([torch.from_numpy(_face_points(size)) + d for d in (0.0, 5.0, 10.0)])
    images = torch.arange(3.0)[:, None, None, None].expand(3, 3, size, size)
    sources = Sources.shared(images, images.clone(), points, batch=2)
    targets = torch.stack([points[2] + 0.5, points[1] - 0.5])
    chosen, _, chosen_points = sources.nearest(targets)
    assert chosen[:, 0, 0, 0].tolist() == [2.0, 1.0]
    torch.testing.assert_close(chosen_points, points[[2, 1]])


def test_pairs_never_use_a_target_as_its_own_source():
    size = 32
    frames = torch.stack([torch.full((3, size, size), float(i) / 4) for i in range(3)])
    points = torch.stack([torch.from_numpy(_face_points(size, i)) for i in range(3)])
    pairs = PairSampler(frames, points, seed=0)
    for _ in range(5):
        batch = pairs.draw(2)
        assert batch.sources.images.shape[:2] == (2, 2)  # the other T - 1 = 2 photos
        for target, own in zip(batch.images, batch.sources.images):
            # augmentation moves pixels but keeps the photo's flat value
            value = float(target.mean())
            assert all(abs(float(s.mean()) - value) > 0.1 for s in own)
    single = PairSampler(frames[:1], points[:1], seed=0).draw(2)
    assert single.sources.images.shape[:2] == (2, 1)
    assert not torch.equal(single.points[0], points[0])  # the target is an augmentation


def test_save_load_round_trip_keeps_the_warp_model(tmp_path):
    torch.manual_seed(0)
    model = TalkingHeadModel(ModelConfig.tiny_warp())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["generator"] == "warp"
    assert config["psi_layout"] == model.generator.psi_layout()
    loaded = TalkingHeadModel.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_reordered_psi_layout_refuses_to_load(tmp_path):
    model = TalkingHeadModel(ModelConfig.tiny_warp())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    layout = config["psi_layout"]
    layout[0], layout[1] = layout[1], layout[0]  # what a reordered decoder would have saved
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="psi-hat layout"):
        TalkingHeadModel.from_pretrained(tmp_path)


def test_warm_start_from_the_paper_design_keeps_its_trained_blocks(tmp_path):
    """A paper-design (tiny) checkpoint starts a warp (tiny_warp-shaped) model: copied blocks
    are equal, and the widened first conv computes the old conv on y(t) (zeros elsewhere)."""
    import dataclasses

    torch.manual_seed(0)
    paper_cfg = dataclasses.replace(ModelConfig.tiny_warp(), name="p", generator="paper",
                                    image_size=32, network_size=0)
    warp_cfg = dataclasses.replace(ModelConfig.tiny_warp(), image_size=32, network_size=0)
    old = TalkingHeadModel(paper_cfg)
    old.save_pretrained(tmp_path)
    new = TalkingHeadModel(warp_cfg)
    disc = ProjectionDiscriminator(warp_cfg, 3)
    report = warm_start(new, disc, tmp_path)
    assert len(report.widened) == 2 and not any("embedder" in n for n in report.fresh)
    assert torch.equal(new.embedder.blocks[0].conv1.weight, old.embedder.blocks[0].conv1.weight)
    new_conv = new.generator.encoder[0].conv1.parametrizations.weight.original
    old_conv = old.generator.encoder[0].conv1.parametrizations.weight.original
    assert torch.equal(new_conv[:, :3], old_conv) and not new_conv[:, 3:].any()


class PixelContent(torch.nn.Module):
    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return (fake - real).abs().mean()


def test_finetuning_the_warp_design_on_one_and_two_photos_changes_it():
    from talking_heads.training.config import FinetuneConfig
    from talking_heads.training.finetune import run_finetune

    model, frames, landmarks, points = _tiny_warp_person(2)
    cfg = model.config
    content = PixelContent()  # a cheap stand-in for L_CNT: the test is about the pairs
    config = FinetuneConfig(batch_size=2, content_face=False)
    disc = ProjectionDiscriminator(cfg, 1)
    for t in (1, 2):
        result = run_finetune(model, frames[:t], landmarks[:t], 2, discriminator=disc,
                              config=config, content=content, points=points[:t])
        assert result.steps == 2 and not result.content_only
        changed = [name for name, p in result.generator.generator.named_parameters()
                   if not torch.equal(p, dict(model.generator.named_parameters())[name])]
        assert changed, "fine-tuning left every generator weight unchanged"
    with pytest.raises(ValueError, match="points"):
        run_finetune(model, frames[:1], landmarks[:1], 1, config=config, content=content)


def test_the_heads_as_one_convolution_equal_the_three_convolutions():
    torch.manual_seed(0)
    generator = WarpGenerator(ModelConfig.tiny_warp()).eval()  # eval: sigma estimate fixed
    for head in (generator.flow_head, generator.mask_head):  # away from their zero start
        torch.nn.init.normal_(head.weight, std=0.1)
    features = torch.randn(2, generator.decoder.out_channels, 8, 8)
    with torch.no_grad():
        fused = generator.heads(features)
        apart = torch.cat([generator.decoder.out_conv(features), generator.flow_head(features),
                           generator.mask_head(features)], dim=1)
    torch.testing.assert_close(fused, apart)


def test_the_warp_geometry_stays_float32_under_bf16_autocast():
    """Under the app's bf16 rendering only the networks drop precision: an untrained model
    (zero flow) still renders the closed-form warp at float32 accuracy where the mask is
    closed, so the output's warped layer equals the float32 warp exactly."""
    cfg = ModelConfig.tiny_warp()
    torch.manual_seed(0)
    model = TalkingHeadModel(cfg).eval()
    size = cfg.image_size
    source = torch.from_numpy(_face_points(size))[None]
    target = source + torch.tensor([1.5, -1.0])
    image = torch.rand(1, 3, size, size) * 2 - 1
    y = image_to_tensor(rasterize(target[0].numpy(), size))[None]
    sources = Sources.shared(image, image.clone(), source, batch=1)
    psi = torch.zeros(1, model.generator.psi_dim)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layers = model.generator.layers(y, psi, target, sources, with_base=True)
    assert layers.warped.dtype == torch.float32 and layers.image.dtype == torch.float32
    with torch.no_grad():
        expected = sample(image, resample_grid(tps_grid(target, source, size, cfg.warp_grid),
                                               size))
    torch.testing.assert_close(layers.base, expected)
    torch.testing.assert_close(layers.warped, expected)  # the flow head starts at zero


def test_a_pooled_sampler_draws_only_pairs_made_once():
    size = 32
    frames = torch.stack([torch.full((3, size, size), float(i) / 4) for i in range(3)])
    points = torch.stack([torch.from_numpy(_face_points(size, i)) for i in range(3)])
    pairs = PairSampler(frames, points, seed=0, pool=6)
    pool = pairs.pool
    assert pool.images.shape[0] == 6
    # the targets cycle through the photos: each photo is the target of two pool rows
    assert [round(float(t.mean()) * 4) for t in pool.images] == [0, 1, 2, 0, 1, 2]
    for _ in range(4):
        batch = pairs.draw(2)
        rows = pairs.last_indices
        assert len(set(rows.tolist())) == 2
        torch.testing.assert_close(batch.images, pool.images[rows])
        torch.testing.assert_close(batch.points, pool.points[rows])
        for target, own in zip(batch.images, batch.sources.images):  # never its own source
            assert all(abs(float(s.mean()) - float(target.mean())) > 0.1 for s in own)
    with pytest.raises(ValueError, match="pool"):
        PairSampler(frames, points, pool=0)


def test_finetuning_from_a_feature_pool_with_a_frozen_encoder():
    """The pooled path of run_finetune: the content loss is given the pool's own features
    (``vgg_term``, computed once by ``reference``), and the frozen encoder is left exactly as it
    was."""
    from talking_heads.training.config import FinetuneConfig
    from talking_heads.training.finetune import run_finetune

    model, frames, landmarks, points = _tiny_warp_person(1)
    content = ReferenceContent()
    config = FinetuneConfig(batch_size=2, content_face=False, feature_pool=4,
                            train_encoder=False)
    result = run_finetune(model, frames, landmarks, 3,
                          discriminator=ProjectionDiscriminator(model.config, 1),
                          config=config, content=content, points=points)
    assert result.steps == 3
    assert content.references == 1 and content.against == 3 and content.direct == 0
    assert content.faces == 0  # no face network: no face term is built
    before = dict(model.generator.named_parameters())
    for name, p in result.generator.generator.named_parameters():
        if name.startswith("encoder."):
            assert torch.equal(p, before[name]), name
    assert any(not torch.equal(p, before[name]) for name, p
               in result.generator.generator.named_parameters() if name.startswith("decoder."))


def test_pairs_draw_targets_only_from_the_allowed_photos():
    size = 32
    frames = torch.stack([torch.full((3, size, size), float(i) / 4) for i in range(3)])
    points = torch.stack([torch.from_numpy(_face_points(size, i)) for i in range(3)])
    for pool in (None, 4):
        pairs = PairSampler(frames, points, seed=0, targets=[0, 1], pool=pool)
        for _ in range(6):
            batch = pairs.draw(2)
            assert all(round(float(t.mean()) * 4) in (0, 1) for t in batch.images)
            assert batch.sources.images.shape[:2] == (2, 2)  # photo 2 still serves as a source
    with pytest.raises(ValueError, match="targets"):
        PairSampler(frames, points, targets=[3])


def test_finetuning_keeps_the_candidate_that_renders_the_held_out_photo_best():
    from talking_heads.training.config import FinetuneConfig
    from talking_heads.training.finetune import run_finetune

    model, frames, landmarks, points = _tiny_warp_person(3)
    config = FinetuneConfig(batch_size=1, content_face=False, select_every=1)
    result = run_finetune(model, frames, landmarks, 3,
                          discriminator=ProjectionDiscriminator(model.config, 1),
                          config=config, content=PixelContent(), points=points)
    assert [step for step, _ in result.selection] == [0, 1, 2, 3]  # the start, then each step
    best_step, best = min(result.selection, key=lambda row: row[1])
    assert result.selected_step == best_step
    # the G' returned is that candidate: it renders the held-out (last) photo from the others
    # with exactly the recorded error
    held_out = Sources(frames[:2][None], landmarks[:2][None], points[:2][None])
    with torch.no_grad():
        out = result.generator(landmarks[2:], points[2:], held_out)
    assert float((out - frames[2:]).abs().mean()) == pytest.approx(best, abs=1e-6)


class ReferenceContent(torch.nn.Module):
    """An L1 stand-in for L_CNT with ContentLoss's reference interface (no face network),
    counting its calls."""

    face = None

    def __init__(self) -> None:
        super().__init__()
        self.references = self.against = self.direct = self.faces = 0

    def reference(self, x):
        from talking_heads.perceptual import ContentReference

        self.references += 1
        return ContentReference(vgg=[x.detach().clone()], face=[], shape=tuple(x.shape))

    def vgg_term(self, x_hat, reference):
        self.against += 1
        return (x_hat - reference.vgg[0]).abs().mean()

    def face_term(self, x_hat, reference):
        self.faces += 1
        return x_hat.new_zeros(())

    def forward(self, x_hat, x):
        self.direct += 1
        return (x_hat - x).abs().mean()
