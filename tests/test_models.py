"""E, G and D of Zakharov et al. 2019: shapes, spectral norm, psi-hat layout, fine-tuning heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from talking_heads.config import ModelConfig
from talking_heads.models import (AdaptedGenerator, Embedder, FinetuneDiscriminator, Generator,
                                  ProjectionDiscriminator)
from talking_heads.models.layers import AdaIN, SelfAttention


def _count(module: nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _inputs(cfg: ModelConfig, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = cfg.image_size
    return (torch.rand(batch, 3, s, s, generator=g) * 2 - 1,
            torch.rand(batch, 3, s, s, generator=g) * 2 - 1)


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_forward_shapes_at_both_scales(name: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.preset(name)
    embedder, generator = Embedder(cfg).eval(), Generator(cfg).eval()
    disc = ProjectionDiscriminator(cfg, num_videos=3).eval()
    x, y = _inputs(cfg, 1)
    with torch.no_grad():
        e = embedder(x, y)
        psi = generator.project(e)
        x_hat = generator(y, psi)
        out = disc(x_hat, y, torch.tensor([2]))
    assert e.shape == (1, cfg.embed_dim) and (e >= 0).all()  # ReLU after sum pooling
    assert psi.shape == (1, generator.psi_dim)
    assert x_hat.shape == (1, 3, cfg.image_size, cfg.image_size)
    assert x_hat.abs().max() <= 1.0  # tanh output
    assert out.score.shape == (1,)
    assert len(out.features) == cfg.embedder_blocks + cfg.disc_extra_blocks


def test_paper_parameter_counts_near_the_paper() -> None:
    cfg = ModelConfig.paper()
    counts = {"E": _count(Embedder(cfg)), "G": _count(Generator(cfg)),
              "V": _count(ProjectionDiscriminator(cfg, 1).trunk)}
    for key, target in {"E": 15.0, "G": 38.0, "V": 20.0}.items():
        assert abs(counts[key] - target) / target < 0.1, counts


def test_every_conv_and_linear_is_spectrally_normalised() -> None:
    cfg = ModelConfig.tiny()
    for net in (Embedder(cfg), Generator(cfg), ProjectionDiscriminator(cfg, 2)):
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert layers
        assert all(parametrize.is_parametrized(m, "weight") for m in layers)


def test_plain_instance_norm_in_encoder_and_adain_after_it() -> None:
    generator = Generator(ModelConfig.cpu())
    encoder = list(generator.encoder.modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in encoder)
    assert not any(isinstance(m, AdaIN) for m in encoder)
    decoder = list(generator.decoder.modules())
    assert not any(isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) for m in decoder)
    assert sum(isinstance(m, AdaIN) for m in decoder) == 2 * 3 + 2 * 3 + 1  # res, up, out


def test_self_attention_at_the_papers_resolutions() -> None:
    cfg = ModelConfig.paper()
    sizes: dict[str, list[int]] = {}

    def record(tag: str):
        return lambda module, args: sizes.setdefault(tag, []).append(args[0].shape[-1])

    nets = {"E": Embedder(cfg).eval(), "G": Generator(cfg).eval(),
            "V": ProjectionDiscriminator(cfg, 1).trunk.eval()}
    for tag, net in nets.items():
        for m in net.modules():
            if isinstance(m, SelfAttention):
                m.register_forward_pre_hook(record(tag))
    x, y = _inputs(cfg, 1)
    with torch.no_grad():
        nets["E"](x, y)
        nets["V"](x, y)
        nets["G"](y, torch.zeros(1, nets["G"].psi_dim))
    assert sizes == {"E": [32], "G": [32, 64], "V": [32]}


def test_psi_slices_map_one_to_one_onto_adain_layers() -> None:
    torch.manual_seed(0)
    generator = Generator(ModelConfig.tiny()).eval()
    table = generator.psi_slices
    modules = dict(generator.decoder.named_modules())
    adains = [m for m in generator.modules() if isinstance(m, AdaIN)]
    assert len(table) == len(adains) == len({name for name, _ in table})
    covered = torch.zeros(generator.psi_dim, dtype=torch.int64)
    for name, sl in table:
        assert isinstance(modules[name], AdaIN) and modules[name].psi_slice == sl
        assert sl.stop - sl.start == 2 * modules[name].channels
        covered[sl] += 1
    assert (covered == 1).all()  # disjoint and exactly covering P's output
    assert generator.projection(torch.zeros(1, generator.config.embed_dim)).shape[1] == len(covered)

    # Behaviourally: perturbing slice j first changes the output of AdaIN layer j.
    outputs: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def record(name: str):
        def hook(module, args, out) -> None:
            outputs[name] = out
            order.append(name)
        return hook

    for name, _ in table:
        modules[name].register_forward_hook(record(name))
    _, y = _inputs(generator.config, 1)
    psi = torch.randn(1, generator.psi_dim) * 0.1
    with torch.no_grad():
        generator(y, psi)
        base = dict(outputs)
        for name, sl in table:
            order.clear()
            bumped = psi.clone()
            bumped[:, sl] += 1.0
            generator(y, bumped)
            changed = [n for n in order if not torch.equal(outputs[n], base[n])]
            assert changed and changed[0] == name


def test_embedding_really_changes_the_output() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.cpu()
    embedder, generator = Embedder(cfg).eval(), Generator(cfg).eval()
    x1, y = _inputs(cfg, 1, seed=1)
    x2, _ = _inputs(cfg, 1, seed=2)
    with torch.no_grad():
        assert not torch.allclose(embedder(x1, y), embedder(x2, y))
        # Two embeddings of the magnitude E produces (ReLU'd, ~0.4 mean) -> visibly different x-hat.
        e1, e2 = torch.rand(2, 1, cfg.embed_dim, generator=torch.Generator().manual_seed(3)) * 0.8
        out1, out2 = generator(y, generator.project(e1)), generator(y, generator.project(e2))
    assert (out1 - out2).abs().mean() > 0.1 * out1.std()
    # Gradients flow from x-hat back into e (a generator that ignored e would give zero).
    e = e1.clone().requires_grad_(True)
    generator(y, generator.project(e)).square().mean().backward()
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_projection_discriminator_score_matches_the_formula() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    disc = ProjectionDiscriminator(cfg, num_videos=4).eval()
    assert isinstance(disc.W, nn.Embedding) and disc.W.weight.shape == (4, cfg.embed_dim)
    with torch.no_grad():
        disc.w0.normal_()
        disc.b.fill_(0.3)
        x, y = _inputs(cfg, 2)
        index = torch.tensor([3, 1])
        out = disc(x, y, index)
        v, _ = disc.trunk(x, y)
        expected = (v * (disc.W.weight[index] + disc.w0)).sum(1) + 0.3
    torch.testing.assert_close(out.score, expected)


def test_finetune_modules_start_from_the_meta_learned_state() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    generator = Generator(cfg).eval()
    disc = ProjectionDiscriminator(cfg, num_videos=2).eval()
    e_new = torch.rand(1, cfg.embed_dim)
    adapted = AdaptedGenerator(generator, e_new)
    head = FinetuneDiscriminator(disc, e_new[0])
    x, y = _inputs(cfg, 2)
    with torch.no_grad():
        torch.testing.assert_close(adapted.psi, generator.project(e_new))
        torch.testing.assert_close(adapted(y), generator(y, generator.project(e_new).expand(2, -1)))
        torch.testing.assert_close(head.w, disc.w0 + e_new[0])
        v, _ = disc.trunk(x, y)
        torch.testing.assert_close(head(x, y).score, v @ (disc.w0 + e_new[0]) + disc.b)
    names = {n for n, _ in adapted.named_parameters()}
    assert "psi" in names and any(n.startswith("generator.") for n in names)
    assert "w" in {n for n, _ in head.named_parameters()}


@pytest.mark.parametrize("name", ["paper", "cpu", "tiny"])
def test_config_round_trips_and_rejects_unknown_fields(name: str) -> None:
    cfg = ModelConfig.preset(name)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**cfg.to_dict(), "mystery": 1})
    with pytest.raises(ValueError):
        ModelConfig.preset("huge")


def test_pooled_and_upsampled_convolutions_are_the_plain_ones():
    """The cheaper orderings in ResBlockDown and AdaResBlockUp compute the same function (and
    so the same gradients) as conv-then-pool and upsample-then-conv."""
    import torch.nn.functional as F

    from talking_heads.models.layers import conv3x3_then_avgpool, upsample_then_conv3x3

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64)
    pairs = [
        (conv3x3_then_avgpool(x, weight, bias, fused=True),
         F.avg_pool2d(F.conv2d(x, weight, bias, padding=1), 2)),
        (upsample_then_conv3x3(x, weight, bias, fused=True),
         F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)),
    ]
    for fast, plain in pairs:
        assert fast.shape == plain.shape
        torch.testing.assert_close(fast, plain)
        probe = torch.randn_like(plain)
        grads = torch.autograd.grad((fast * probe).sum(), (x, weight))
        expected = torch.autograd.grad((plain * probe).sum(), (x, weight))
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want)


def test_the_reordered_convolutions_are_used_only_on_large_maps(monkeypatch):
    """The automatic choice: the reordered form from the size threshold on, the plain one
    below it (where building the derived kernels costs more than it saves)."""
    import math

    import torch.nn.functional as F

    from talking_heads.models import layers

    calls = []
    real_conv2d = F.conv2d
    monkeypatch.setattr(layers.F, "conv2d",
                        lambda x, w, *args, **kwargs: calls.append(w.shape[-1]) or
                        real_conv2d(x, w, *args, **kwargs))
    weight, bias = torch.randn(3, 2, 3, 3), torch.zeros(3)
    side = 2 * (math.isqrt(layers.FUSED_DOWN_MIN_PIXELS) // 2 + 1)  # even, side^2 above it
    layers.conv3x3_then_avgpool(torch.randn(1, 2, side, side), weight, bias)
    layers.conv3x3_then_avgpool(torch.randn(1, 2, 2, 2), weight, bias)
    assert calls == [4, 3]  # one 4x4 stride-2 kernel, then the plain 3x3
    calls.clear()
    side = math.isqrt(layers.FUSED_UP_MIN_PIXELS) + 1
    layers.upsample_then_conv3x3(torch.randn(1, 2, side, side), weight, bias)
    assert calls == [2, 2, 2, 2]  # four 2x2 phase kernels
    calls.clear()
    layers.upsample_then_conv3x3(torch.randn(1, 2, 2, 2), weight, bias)
    assert calls == [3]
