"""Weight resolution: Hub (tested offline through a local cache) -> bundled -> untrained."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

from talking_heads import weights
from talking_heads.config import ModelConfig
from talking_heads.models import TalkingHeadModel

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (weights.ENV_REPO_ID, weights.ENV_REVISION, weights.ENV_CHECKPOINT):
        monkeypatch.delenv(name, raising=False)


def _save_tiny(directory, seed: int, step: int | None = None):
    torch.manual_seed(seed)
    model = TalkingHeadModel(ModelConfig.tiny())
    model.save_pretrained(directory)
    if step is not None:
        (directory / "training.json").write_text(json.dumps({"step": step}))
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_no_weights_anywhere_gives_a_labelled_untrained_model(tmp_path):
    source = weights.resolve_weights(bundled=tmp_path / "none")
    assert source.kind == "untrained" and not source.trained
    assert "UNTRAINED" in source.label
    first, second = weights.load_model(source), weights.load_model(source)
    assert first.config == ModelConfig.preset(weights.UNTRAINED_CONFIG)
    assert _same_weights(first, second), "the stand-in model must be reproducible (seeded)"


def test_bundled_picks_the_most_trained_folder_and_honours_the_env_choice(tmp_path,
                                                                          monkeypatch):
    _save_tiny(tmp_path / "early", seed=1, step=100)
    best = _save_tiny(tmp_path / "late", seed=2, step=5000)
    _save_tiny(tmp_path / "no_info", seed=3)
    (tmp_path / "not_weights").mkdir()
    source = weights.resolve_weights(bundled=tmp_path)
    assert source.kind == "bundled" and source.directory.name == "late"
    assert "checkpoints/late" in source.label and "5000" in source.label
    assert _same_weights(weights.load_model(source), best)
    monkeypatch.setenv(weights.ENV_CHECKPOINT, "early")
    assert weights.resolve_weights(bundled=tmp_path).directory.name == "early"


@pytest.fixture
def network_attempts(monkeypatch) -> list:
    """Every DNS lookup or socket connection the test tries: recorded, then refused (so that
    a fallback which swallows the error still shows up in the list)."""
    attempts = []

    def refuse(kind):
        def call(*args, **kwargs):
            attempts.append((kind, args[1:2] if kind == "connect" else args[:1]))
            raise OSError(f"network access in a test: {kind}")
        return call

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    return attempts


def test_unreachable_hub_falls_back_to_bundled_without_the_network(tmp_path, monkeypatch,
                                                                   network_attempts):
    """HF_HUB_OFFLINE=1 (conftest, as on a Space that must not wait for the Hub): the Hub
    cache is looked up, nothing is fetched, no retries are waited out."""
    _save_tiny(tmp_path / "bundled" / "cpu", seed=1)
    monkeypatch.setenv(weights.ENV_REPO_ID, "nobody/not-cached")
    monkeypatch.setenv(weights.ENV_REVISION, SHA)
    source = weights.resolve_weights(bundled=tmp_path / "bundled", cache_dir=tmp_path / "hf")
    assert network_attempts == []
    assert source.kind == "bundled"
    assert any("nobody/not-cached" in note and "not used" in note for note in source.notes)
    assert "bundled" in source.label


def test_hub_weights_are_used_from_the_cache_offline(tmp_path, monkeypatch):
    """A pinned revision in the Hub cache is found with HF_HUB_OFFLINE=1 (as after a
    download on a Space), and preferred over bundled weights."""
    repo = tmp_path / "hf" / "models--someone--talking-heads"
    hub_model = _save_tiny(repo / "snapshots" / SHA, seed=7, step=42)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    _save_tiny(tmp_path / "bundled" / "cpu", seed=1)
    monkeypatch.setenv(weights.ENV_REPO_ID, "someone/talking-heads")
    monkeypatch.setenv(weights.ENV_REVISION, SHA)
    source = weights.resolve_weights(bundled=tmp_path / "bundled", cache_dir=tmp_path / "hf")
    assert source.kind == "hub" and source.revision == SHA
    assert "someone/talking-heads@" + SHA in source.label
    assert _same_weights(weights.load_model(source), hub_model)


def test_hub_snapshot_without_weights_is_rejected(tmp_path):
    snapshot = tmp_path / "hf" / "models--a--b" / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (snapshot / "README.md").write_text("no weights here")
    _save_tiny(tmp_path / "bundled" / "cpu", seed=1)
    source = weights.resolve_weights("a/b", SHA, bundled=tmp_path / "bundled",
                                     cache_dir=tmp_path / "hf")
    assert source.kind == "bundled" and source.notes


def test_repository_checkpoints_resolve(tmp_path):
    """Whatever checkpoints/ holds now (trained weights or nothing), resolution works."""
    source = weights.resolve_weights(bundled=weights.BUNDLED_DIR)
    assert source.kind in {"bundled", "untrained"}
    model = weights.load_model(source)
    assert model.config.image_size > 0
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_device_is_chosen_automatically(monkeypatch):
    """CPU here; CUDA as soon as a GPU is visible (as inside ``@spaces.GPU`` on ZeroGPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert weights.pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert weights.pick_device() == torch.device("cuda")


def test_spaces_gpu_is_a_no_op_off_zerogpu():
    """The app's ``@spaces.GPU`` leaves the function (and its generator results) as they are
    on CPU hardware."""
    import spaces

    def work(n):
        yield n * 2

    assert list(spaces.GPU(duration=120)(work)(21)) == [42]
