"""Issue 15, fuzzed decoders, CI-sized: mutated photos, driving clips and avatar files get a
clear refusal (``InputError``, or the avatar's ``AvatarFileError``) or work, and nothing else.

The inputs are the seed corpus in ``tests/fuzz_corpus/`` (small real-data files, truncated
ones, and every input the long fuzzer found a bug with) and byte-level mutations of them that
hypothesis derives deterministically (``derandomize``: the same inputs on every run). The
long, coverage-guided run is ``benchmarks/fuzz.py`` (atheris, 10 minutes per target).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))
from benchmarks.fuzz import CORPUS, RUNNERS, expected_errors, fuzz_limits  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seeds(target: str) -> list[Path]:
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())


def _run(target: str, data: bytes, folder: Path) -> None:
    """Run ``target`` on ``data`` as an uploaded file: any result or a clear refusal."""
    path = folder / f"upload{'.avatar.safetensors' if target == 'avatar' else '.bin'}"
    path.write_bytes(data)
    try:
        RUNNERS[target](path, fuzz_limits())
    except expected_errors() as error:
        assert str(error), "a refusal must say what is wrong"


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level edits: flips, cuts, inserts, overwrites, duplications."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "overwrite", "duplicate"]))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        elif kind == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
    return bytes(data)


def _fuzz_settings(examples: int):
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("target", ["photo", "clip", "avatar"])
def test_every_seed_input_is_read_or_refused_clearly(target, tmp_path):
    seeds = _seeds(target)
    assert len(seeds) >= 2, f"seed corpus for {target} is missing"
    for seed in seeds:
        _run(target, seed.read_bytes(), tmp_path)


@pytest.mark.parametrize("target", ["photo", "clip", "avatar"])
def test_the_valid_seeds_are_accepted(target, tmp_path):
    """Refusing everything would pass the fuzz tests: the intact seeds must be read."""
    valid = [p for p in _seeds(target) if "truncated" not in p.name
             and not p.name.startswith("found_")]
    assert len(valid) >= (1 if target == "avatar" else 3)
    for seed in valid:
        RUNNERS[target](seed, fuzz_limits())  # no exception


@_fuzz_settings(150)
@given(data=mutated([p.read_bytes() for p in _seeds("photo")]))
def test_mutated_photos_are_read_or_refused_clearly(data, tmp_path_factory):
    _run("photo", data, tmp_path_factory.mktemp("photo"))


@_fuzz_settings(40)
@given(data=mutated([p.read_bytes() for p in _seeds("clip")]))
def test_mutated_clips_are_read_or_refused_clearly(data, tmp_path_factory):
    _run("clip", data, tmp_path_factory.mktemp("clip"))


@_fuzz_settings(40)
@given(data=mutated([p.read_bytes() for p in _seeds("avatar")]))
def test_mutated_avatar_files_are_read_or_refused_clearly(data, tmp_path_factory):
    _run("avatar", data, tmp_path_factory.mktemp("avatar"))


@_fuzz_settings(60)
@given(data=st.binary(max_size=512))
def test_random_bytes_are_refused_clearly(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bytes")
    for target in ("photo", "clip"):
        _run(target, data, folder)
