"""Shared fixtures. Tests that need the real clips and photos skip when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TALKING_HEADS_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real clips and photos (``../shared/data`` beside the project)."""
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (set TALKING_HEADS_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos_dir(shared_data: Path) -> Path:
    return shared_data / "photos" / "johns"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on a shared 2-core machine two threads can be 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def animator():
    """The animation pipeline on a seeded, untrained tiny model: fast, and every stage runs."""
    import torch

    from talking_heads import pipeline
    from talking_heads.config import ModelConfig
    from talking_heads.models import TalkingHeadModel
    from talking_heads.weights import WeightsSource

    torch.manual_seed(0)
    return pipeline.Animator(TalkingHeadModel(ModelConfig.tiny()), WeightsSource("untrained", None))
