"""The evaluation loop: clips -> crops -> baselines and the model -> scores (and PNG dumps).

Per clip (``evaluate_clip``): landmarks of every frame, the frame split of ``protocol``, the
crops of the few-shot and evaluated frames, the ground truth analysed once, then for each T
the copy and warp baselines and the model in each mode, every evaluated frame driven by its
own landmarks. Scores are kept per frame so that aggregates are pooled over all frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from talking_heads.evaluation.baselines import copy_baseline, nearest_frame, warp_baseline
from talking_heads.evaluation.protocol import (ClipSpec, CroppedFrames, clip_landmarks,
                                               crop_frames, select_frames)
from talking_heads.evaluation.reenact import ModelReenactor
from talking_heads.evaluation.scoring import FrameScores, Scorer, detector_scores
from talking_heads.images import rgb_to_bgr

BASELINES = ("copy", "warp")


@dataclass(frozen=True)
class EvalSettings:
    shots: tuple[int, ...] = (1, 8, 32)   # T values
    modes: tuple[str, ...] = ("ff", "ft")  # model modes
    frames: int = 32                       # evaluated frames per clip (second half)
    dump_dir: Path | None = None           # PNG dumps, see ``dump_frames``
    cache_dir: Path | None = None          # per-clip landmark cache (.npz)


@dataclass
class ClipResult:
    """Scores of one clip. ``scores[(T, method)]``: one ``FrameScores`` per evaluated frame."""

    clip: ClipSpec
    num_frames: int
    evaluated: list[int]
    shots: dict[int, list[int]] = field(default_factory=dict)
    skipped_shots: dict[int, str] = field(default_factory=dict)
    detector: list[FrameScores] = field(default_factory=list)  # detector on the real crops
    scores: dict[tuple[int, str], list[FrameScores]] = field(default_factory=dict)
    adaptation: dict[tuple[int, str], dict] = field(default_factory=dict)
    skipped: str | None = None


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), rgb_to_bgr(image)):
        raise OSError(f"could not write {path}")


def dump_frames(root: Path, clip_name: str, t: int, mode: str, indices, outputs: dict,
                shots: CroppedFrames) -> None:
    """DIR/<clip>/T<T>-<mode>/{gt,ours,warp,copy}_NNNN.png (NNNN: frame index in the clip),
    plus the few-shot crops as shot_NNNN.png, all at the model's resolution."""
    folder = root / clip_name / f"T{t}-{mode}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, images in outputs.items():
        for index, image in zip(indices, images):
            _write_png(folder / f"{name}_{int(index):04d}.png", image)
    for index, image in zip(shots.indices, shots.images):
        _write_png(folder / f"shot_{int(index):04d}.png", image)


def evaluate_clip(clip: ClipSpec, reenactor: ModelReenactor, scorer: Scorer,
                  settings: EvalSettings, on_step: Callable[[str], None] | None = None
                  ) -> ClipResult:
    """Run the protocol on one clip (see the module docstring)."""
    step = on_step or (lambda message: None)
    points = clip_landmarks(clip.path, scorer.detector, settings.cache_dir)
    selection = select_frames(points, settings.frames)
    result = ClipResult(clip=clip, num_frames=len(points),
                        evaluated=selection.evaluated.tolist())
    shot_sets = {}
    for t in settings.shots:
        indices = selection.shots(t)
        if indices is None:
            result.skipped_shots[t] = f"only {len(selection.shot_pool)} first-half frames"
        else:
            shot_sets[t] = indices
            result.shots[t] = indices.tolist()
    if len(selection.evaluated) == 0 or not shot_sets:
        result.skipped = "no frames with a face in one of the halves"
        return result
    wanted = np.concatenate([selection.evaluated, *shot_sets.values()])
    crops = crop_frames(clip.path, points, wanted, reenactor.image_size)
    targets = crops.take(selection.evaluated)
    scorer.clear_memo()
    references = [scorer.reference(image, pts) for image, pts in zip(targets.images,
                                                                     targets.points)]
    result.detector = [detector_scores(ref, scorer.detector) for ref in references]
    for t, shot_indices in shot_sets.items():
        step(f"{clip.name} T={t}")
        shots = crops.take(shot_indices)
        outputs = _baselines(shots, targets)
        for method in BASELINES:
            memo = ([("shot", int(shots.indices[nearest_frame(shots.points, p)]))
                     for p in targets.points] if method == "copy" else [None] * len(references))
            result.scores[(t, method)] = [scorer.score(image, ref, key) for image, ref, key
                                          in zip(outputs[method], references, memo)]
        for mode in settings.modes:
            step(f"{clip.name} T={t} {mode}")
            adaptation = reenactor.adapt(shots.images, shots.landmark_images, mode, shots.points)
            ours = adaptation.render(targets.landmark_images, targets.points)
            result.adaptation[(t, mode)] = {"seconds": round(adaptation.seconds, 3),
                                            "steps": adaptation.steps,
                                            "content_only": adaptation.content_only}
            result.scores[(t, mode)] = [scorer.score(image, ref)
                                        for image, ref in zip(ours, references)]
            if settings.dump_dir is not None:
                dump_frames(settings.dump_dir, clip.name, t, mode, targets.indices,
                            {"gt": targets.images, "ours": ours, **outputs}, shots)
    return result


def _baselines(shots: CroppedFrames, targets: CroppedFrames) -> dict[str, np.ndarray]:
    copies = [copy_baseline(shots.images, shots.points, p) for p in targets.points]
    warps = [warp_baseline(shots.images, shots.points, p) for p in targets.points]
    return {"copy": np.stack(copies), "warp": np.stack(warps)}
