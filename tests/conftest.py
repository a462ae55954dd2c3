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
