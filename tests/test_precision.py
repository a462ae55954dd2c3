"""Inference precision: the TALKING_HEADS_PRECISION switch and what it selects."""

from __future__ import annotations

import contextlib

import pytest
import torch

from talking_heads.precision import ENV, inference_autocast, native_bf16, render_precision

CPU = torch.device("cpu")


def test_fp32_renders_without_autocast(monkeypatch):
    monkeypatch.setenv(ENV, "fp32")
    assert render_precision(CPU) == "fp32"
    assert isinstance(inference_autocast(CPU), contextlib.nullcontext)


def test_bf16_on_request_autocasts_the_networks(monkeypatch):
    monkeypatch.setenv(ENV, "bf16")
    with inference_autocast(CPU):
        out = torch.nn.functional.conv2d(torch.ones(1, 2, 4, 4), torch.ones(3, 2, 1, 1))
    assert out.dtype == torch.bfloat16


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert render_precision(CPU) == ("bf16" if native_bf16(CPU) else "fp32")


def test_an_unknown_precision_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(ENV, "fp8")
    with pytest.raises(ValueError, match="TALKING_HEADS_PRECISION.*auto, bf16, fp32"):
        render_precision(CPU)


def test_fine_tuning_auto_precision_follows_the_render_choice(monkeypatch):
    """FT's amp "auto" is bf16 autocast exactly where rendering uses bf16; explicit settings
    stand whatever the switch says."""
    from talking_heads.training.finetune import finetune_amp

    monkeypatch.setenv(ENV, "fp32")
    assert finetune_amp("auto", CPU) == "none"
    assert finetune_amp("bf16", CPU) == "bf16"
    monkeypatch.setenv(ENV, "bf16")
    assert finetune_amp("auto", CPU) == "bf16"
    assert finetune_amp("none", CPU) == "none"
    monkeypatch.delenv(ENV, raising=False)
    assert finetune_amp("auto", CPU) == ("bf16" if native_bf16(CPU) else "none")
