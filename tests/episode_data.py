"""A tiny preprocessed data folder built from real clips, for the training and DDP tests.

Three of the shortest real clips (two train identities, one dev identity) are run through the
project's own preprocessing at 64 px, which is what the ``tiny`` model consumes.
"""

from __future__ import annotations

from pathlib import Path

TRAIN_CLIPS = ("clips/styletalk__furious_talk2_clip1.mp4", "clips/styletalk__spata_clip1.mp4")
DEV_CLIPS = ("clips/lipnet__pwij3p.mpg",)
SIZE = 64


def build_tiny_preprocessed(shared_data: Path, out: Path) -> Path:
    from talking_heads.data.preprocess import read_manifest, run

    wanted = set(TRAIN_CLIPS + DEV_CLIPS)
    specs = [s for s in read_manifest(shared_data / "manifest.csv") if s.source_file in wanted]
    assert len(specs) == len(wanted), "test clips missing from the manifest"
    assert {s.split for s in specs} == {"train", "dev"}
    results = run(specs, out, size=SIZE, workers=1, progress=False)
    errors = [r.error for r in results if r.error]
    assert not errors, errors
    return out
