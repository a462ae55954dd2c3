"""Self-reenactment protocol (Zakharov et al. 2019, Sec. 5.1) on a clip manifest.

Per clip: landmarks of every frame (cached), then the frames with a face are split in two
halves by index. The T few-shot frames are spread evenly over the first half, the evaluated
frames evenly over the second half, so they never overlap; each evaluated frame is later
re-generated from its own landmarks. Crops use the project's crop transform smoothed over the
clip (as in preprocessing), so the model, the baselines and the ground truth share one crop
space at the model's resolution. Crops may extend beyond the frame (tight 224x224 face clips):
``CropTransform.warp_image`` fills the outside by replicating the border.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talking_heads.landmarks.align import crop_transform, smooth_transforms
from talking_heads.landmarks.detector import LandmarkDetector
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.video import iter_frames

CACHE_VERSION = 2  # 2: detection near the previous frame's box, as in preprocessing


@dataclass(frozen=True)
class ClipSpec:
    """One manifest row. ``path`` is resolved against the manifest's folder."""

    path: Path
    identity: str
    split: str
    name: str  # the file's stem, made unique within the manifest


def read_manifest(manifest: str | Path, split: str | None = "dev") -> list[ClipSpec]:
    """Rows of a manifest in the format of the shared data's ``manifest.csv`` (columns
    ``file``, ``identity``, ``split``; others ignored). ``split=None`` or "all" keeps all."""
    manifest = Path(manifest)
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "file" not in rows[0]:
        raise ValueError(f"{manifest}: no 'file' column")
    clips, seen = [], set()
    for row in rows:
        row_split = row.get("split") or ""
        if split not in (None, "all") and row_split != split:
            continue
        path = manifest.parent / row["file"]
        name, counter = path.stem, 1
        while name in seen:  # two files with one stem in different folders
            counter += 1
            name = f"{path.stem}-{counter}"
        seen.add(name)
        clips.append(ClipSpec(path=path, identity=row.get("identity") or path.stem,
                              split=row_split, name=name))
    return clips


def _cache_file(path: Path, detector_name: str, cache_dir: Path) -> Path:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{detector_name}|{CACHE_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache_dir / f"{path.stem}-{digest}.npz"


def clip_landmarks(path: str | Path, detector: LandmarkDetector,
                   cache_dir: str | Path | None = None) -> np.ndarray:
    """float32 (N, 68, 2) landmarks of every frame in image pixels; NaN where no face.

    Cached as .npz in ``cache_dir`` keyed by the file's path, size, mtime and the detector.
    """
    path = Path(path)
    cache = None if cache_dir is None else _cache_file(path, detector.name, Path(cache_dir))
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return data["points"]
    points, previous_box = [], None
    for frame in iter_frames(path):
        # As preprocessing does: search near the previous face first (whole frame if absent).
        detection = detector.detect(frame, near=previous_box)
        previous_box = detection.box if detection.found else None
        points.append(detection.points if detection.found else np.full((68, 2), np.nan))
    if not points:
        raise ValueError(f"no frames could be decoded from {path}")
    result = np.stack(points).astype(np.float32)  # (N, 68, 2)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, points=result)
    return result


@dataclass(frozen=True)
class FrameSelection:
    """Frame indices (into the clip) of the few-shot pool and the evaluated frames."""

    shot_pool: np.ndarray    # int (P,): frames with a face in the first half
    evaluated: np.ndarray    # int (M,): frames with a face in the second half, evenly spread

    def shots(self, t: int) -> np.ndarray | None:
        """T few-shot frame indices spread evenly over the pool; None if the pool is smaller."""
        if t > len(self.shot_pool):
            return None
        positions = np.linspace(0, len(self.shot_pool) - 1, t).round().astype(int)
        return self.shot_pool[positions]


def _spread(indices: np.ndarray, count: int) -> np.ndarray:
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def select_frames(points: np.ndarray, num_evaluated: int = 32) -> FrameSelection:
    """Split the frames with a face at the clip's middle frame; evaluated frames spread evenly."""
    found = ~np.isnan(points).any(axis=(1, 2))  # (N,)
    half = len(points) // 2
    indices = np.arange(len(points))
    return FrameSelection(shot_pool=indices[:half][found[:half]],
                          evaluated=_spread(indices[half:][found[half:]], num_evaluated))


@dataclass(frozen=True)
class CroppedFrames:
    """Crops of selected frames at the model's resolution, ordered as ``indices``."""

    indices: np.ndarray          # int (M,): frame indices in the clip
    images: np.ndarray           # uint8 (M, S, S, 3)
    points: np.ndarray           # float32 (M, 68, 2) landmarks in crop pixels
    landmark_images: np.ndarray  # uint8 (M, S, S, 3): rasterised ``points`` (y in the paper)

    def take(self, wanted: np.ndarray) -> "CroppedFrames":
        position = {int(i): k for k, i in enumerate(self.indices)}
        rows = [position[int(i)] for i in wanted]
        return CroppedFrames(self.indices[rows], self.images[rows], self.points[rows],
                             self.landmark_images[rows])


def crop_frames(path: str | Path, points: np.ndarray, wanted: np.ndarray,
                size: int) -> CroppedFrames:
    """Decode the clip once more and crop the ``wanted`` frames (all must have landmarks).

    Crop transforms are computed for every frame with a face and smoothed over the clip
    (``smooth_transforms``), as in preprocessing, before the wanted ones are taken.
    """
    found = np.flatnonzero(~np.isnan(points).any(axis=(1, 2)))
    transforms = smooth_transforms([crop_transform(points[i], size) for i in found])
    by_frame = dict(zip(found.tolist(), transforms))
    wanted = np.unique(np.asarray(wanted, dtype=int))
    missing = [int(i) for i in wanted if int(i) not in by_frame]
    if missing:
        raise ValueError(f"frames without landmarks requested: {missing[:5]}")
    wanted_set = set(wanted.tolist())
    images, crop_points = {}, {}
    for index, frame in enumerate(iter_frames(path)):
        if index in wanted_set:
            transform = by_frame[index]
            images[index] = transform.warp_image(frame)
            crop_points[index] = transform.points_to_crop(points[index])
        if index >= wanted[-1]:
            break
    if len(images) != len(wanted):
        raise ValueError(f"{path}: decoded fewer frames than its landmarks cover")
    pts = np.stack([crop_points[i] for i in wanted]).astype(np.float32)  # (M, 68, 2)
    return CroppedFrames(indices=wanted, images=np.stack([images[i] for i in wanted]),
                         points=pts, landmark_images=np.stack([rasterize(p, size) for p in pts]))
