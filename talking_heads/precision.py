"""Inference precision: the networks in bf16 where the hardware computes bf16 natively.

Rendering is inference only, and its output is 8-bit: bf16 convolutions change a 256 px frame
by well under one grey level on average, and run about twice as fast on CPUs with native bf16
(AVX-512 BF16 or AMX). The warp's geometry stays float32 whatever the caller's autocast
(``models.warp.geometry_precision``). Fine-tuning's ``amp="auto"`` follows the same choice
(``training.finetune.finetune_amp``); meta-training keeps its own ``amp`` setting.

``TALKING_HEADS_PRECISION``: ``auto`` (default: bf16 where native, float32 elsewhere), ``bf16``
or ``fp32``.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

ENV = "TALKING_HEADS_PRECISION"
CHOICES = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` computes bf16 convolutions natively (else bf16 is emulated, and
    slower than float32). Asked once per device type and process."""
    return _native_bf16(device.type)


@functools.cache
def _native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def render_precision(device: torch.device) -> str:
    """"bf16" or "fp32": what ``inference_autocast`` uses on ``device``."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: choose one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return choice


def inference_autocast(device: torch.device):
    """Context for rendering: bf16 autocast of the networks, or nothing (float32)."""
    if render_precision(device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
