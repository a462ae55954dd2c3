"""``python -m talking_heads preprocess``: talking-face clips -> face crops + landmarks.

For every clip in the manifest: detect 68 landmarks on every frame (frames without a face are
skipped and counted, never filled in), split the clip into shots, drop shots of anyone but the
clip's main person (a cutaway to the audience must not mix two people into one video i),
derive the paper-style crop of each frame, smooth the crops over time within each shot, and
store

- ``OUT/<clip_id>/frames.npy``: uint8 (N, S, S, 3) RGB crops, S = ``--size`` (256),
- ``OUT/<clip_id>/landmarks.npy``: float32 (N, 68, 2) points in crop pixels,
- ``OUT/<clip_id>/meta.json``: clip, identity, split, fps, frame_indices, skipped, size, ...

and ``OUT/index.json`` listing the finished clips. Each clip is written into a temporary folder
and renamed when complete, so a killed run never leaves a half clip that looks finished; a
rerun skips finished clips (resumable).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INDEX_FILE = "index.json"
META_FILE = "meta.json"
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ClipSpec:
    """One manifest row: where the clip is and whose it is."""

    clip_id: str
    path: Path
    source_file: str   # path relative to the data folder, as in the manifest
    identity: str
    split: str
    frames_hint: int   # frame count from the manifest (for the progress bar only)


@dataclass(frozen=True)
class ClipResult:
    clip_id: str
    kept: int
    skipped: int
    seconds: float
    error: str | None = None


def clip_id_for(file: str) -> str:
    """``clips/lipnet__bbaf2n.mpg`` -> ``lipnet__bbaf2n``."""
    return Path(file).stem


def read_manifest(manifest: Path) -> list[ClipSpec]:
    root = manifest.parent
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    specs = [ClipSpec(clip_id=clip_id_for(row["file"]), path=root / row["file"],
                      source_file=row["file"], identity=row["identity"], split=row["split"],
                      frames_hint=int(row.get("frames") or 0)) for row in rows]
    ids = [spec.clip_id for spec in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("clip ids (file stems) in the manifest are not unique")
    return specs


def is_done(out: Path, clip_id: str) -> bool:
    return (out / clip_id / META_FILE).is_file()


MIN_FACE = 48  # pixels: faces whose landmarks span less would be upscaled > 3x into a crop
MAX_GAP = 5    # frames: a longer run of skipped frames starts a new shot
SAME_PERSON = 0.6  # dlib descriptor distance below which two faces are the same person


@dataclass(frozen=True)
class ClipFaces:
    """Pass 1 of a clip: where the faces are, without the frames' pixels."""

    points: list[np.ndarray]   # float32 (68, 2) image pixels, one per kept frame
    boxes: list[tuple]         # (x0, y0, x1, y1) image pixels
    indices: list[int]         # frame index in the clip of each kept frame
    counts: dict               # total_frames, small_face_frames, multi_face_frames


def detect_clip(path: Path, detector, min_face: float = MIN_FACE) -> ClipFaces:
    """Every frame's largest face. Frames with no face, or only one smaller than
    ``min_face`` pixels, are skipped, never filled in. No frame is kept: a minute of 1080p
    video is about 9 GB decoded, so the crops are cut in a second decoding pass."""
    from talking_heads.video import iter_frames

    points, boxes, indices = [], [], []
    counts = {"total_frames": 0, "small_face_frames": 0, "multi_face_frames": 0}
    previous = None  # last frame's box: where to look first (each frame is still detected)
    for index, frame in enumerate(iter_frames(path)):
        counts["total_frames"] += 1
        result = detector.detect(frame, near=previous)
        previous = result.box
        if not result.found:
            continue
        if np.ptp(result.points, axis=0).max() < min_face:
            counts["small_face_frames"] += 1
            continue
        counts["multi_face_frames"] += int(result.num_faces > 1)
        points.append(result.points)
        boxes.append(result.box)
        indices.append(index)
    return ClipFaces(points, boxes, indices, counts)


def shots(transforms: list, indices: list[int]) -> list[slice]:
    """Shots of a clip: split at crop jumps (cuts) and at gaps of more than MAX_GAP frames."""
    from talking_heads.landmarks.align import shot_segments

    bounds = {0, len(indices)}
    for part in shot_segments(transforms):
        bounds |= {part.start, part.stop}
    bounds |= {i for i in range(1, len(indices)) if indices[i] - indices[i - 1] > MAX_GAP}
    ordered = sorted(bounds)
    return [slice(a, b) for a, b in zip(ordered[:-1], ordered[1:])]


def identity_picks(parts: list[slice]) -> list[np.ndarray]:
    """The rows (up to 3 per shot, spread over it) whose face descriptors describe a shot."""
    return [np.unique(np.linspace(part.start, part.stop - 1, 3).round().astype(int))
            for part in parts]


def main_person_shots(parts: list[slice], descriptors: dict) -> list[slice]:
    """Shots showing the clip's main person (the one of the longest shot): a cutaway to an
    interviewer or the audience would mix two people into one video's episodes. Each shot is
    described by dlib's face descriptor averaged over its ``identity_picks`` rows
    (``descriptors``: row -> descriptor or None); with no descriptors, every shot is kept."""
    if not descriptors or len(parts) < 2:
        return parts
    means = []
    for picks in identity_picks(parts):
        found = [descriptors[i] for i in picks if descriptors[i] is not None]
        means.append(np.mean(found, axis=0) if found else None)
    main = max(range(len(parts)), key=lambda i: parts[i].stop - parts[i].start)
    reference = means[main]
    return [part for part, d in zip(parts, means)
            if d is not None and np.linalg.norm(d - reference) < SAME_PERSON]


def cut_crops(path: Path, faces: ClipFaces, transforms: list, picks: set[int],
              identity) -> tuple[list[np.ndarray], dict]:
    """Pass 2: decode the clip again and crop each kept frame as it comes (``transforms``, one
    per row of ``faces``); face descriptors of the ``picks`` rows are taken from the full
    frame on the way. Returns (crops, row -> descriptor)."""
    from talking_heads.video import iter_frames

    crops, descriptors = [], {}
    rows = iter(enumerate(faces.indices))
    row, wanted = next(rows, (None, None))
    for index, frame in enumerate(iter_frames(path)):
        if wanted is None:
            break
        if index != wanted:
            continue
        crops.append(transforms[row].warp_image(frame))
        if row in picks:
            descriptors[row] = identity.descriptor(frame, faces.boxes[row])
        row, wanted = next(rows, (None, None))
    if len(crops) != len(faces.indices):
        raise ValueError(f"{path}: the second decoding gave fewer frames than the first")
    return crops, descriptors


def crop_clip(path: Path, detector, size: int, identity=None,
              min_face: float = MIN_FACE) -> tuple[np.ndarray, np.ndarray, dict]:
    """Detect, crop and smooth one clip -> (crops (N, S, S, 3), points (N, 68, 2), stats).

    ``identity`` (a ``FaceIdentity``) drops shots of people other than the main one. The clip
    is decoded twice (landmarks, then crops), so memory holds crops, never whole frames."""
    from talking_heads.landmarks.align import crop_transform, smooth_transforms
    from talking_heads.video import video_fps

    faces = detect_clip(path, detector, min_face)
    raw = [crop_transform(p, size) for p in faces.points]
    parts = shots(raw, faces.indices)
    # Smoothing runs within each shot, so every shot's transforms are final before we know
    # which shots show the main person.
    smoothed = [t for part in parts for t in smooth_transforms(raw[part])]
    use_identity = identity is not None and len(parts) >= 2
    picks = {int(i) for rows in identity_picks(parts) for i in rows} if use_identity else set()
    crops, descriptors = cut_crops(path, faces, smoothed, picks, identity)
    kept_parts = main_person_shots(parts, descriptors)
    other = sum(p.stop - p.start for p in parts) - sum(p.stop - p.start for p in kept_parts)
    keep = [i for part in kept_parts for i in range(part.start, part.stop)]
    out = np.zeros((len(keep), size, size, 3), np.uint8)
    crop_points = np.zeros((len(keep), 68, 2), np.float32)
    for row, i in enumerate(keep):
        out[row] = crops[i]
        crop_points[row] = smoothed[i].points_to_crop(faces.points[i])
    frame_indices = [faces.indices[i] for i in keep]
    counts = faces.counts
    stats = {"fps": video_fps(path), "frame_indices": frame_indices, **counts,
             "other_person_frames": other, "shots": len(kept_parts),
             "skipped": counts["total_frames"] - len(frame_indices)}
    return out, crop_points, stats


def write_clip(out: Path, spec: ClipSpec, crops: np.ndarray, points: np.ndarray, stats: dict,
               size: int, detector_name: str) -> None:
    """Write into ``OUT/.tmp-<id>`` and rename to ``OUT/<id>`` once everything is on disk."""
    temp = out / f"{TEMP_PREFIX}{spec.clip_id}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    np.save(temp / "frames.npy", crops)
    np.save(temp / "landmarks.npy", points)
    meta = {"clip": spec.clip_id, "identity": spec.identity, "split": spec.split,
            "size": size, "source_file": spec.source_file, "detector": detector_name,
            "kept": int(len(crops)), **stats}
    (temp / META_FILE).write_text(json.dumps(meta, indent=1))
    final = out / spec.clip_id
    shutil.rmtree(final, ignore_errors=True)  # a folder without meta.json is unfinished
    os.replace(temp, final)


_WORKER_DETECTOR = None
_WORKER_IDENTITY = None


def _init_worker(detector_name: str) -> None:
    import cv2

    from talking_heads.evaluation.identity import FaceIdentity
    from talking_heads.landmarks.detector import get_detector

    global _WORKER_DETECTOR, _WORKER_IDENTITY
    cv2.setNumThreads(1)  # one core per worker process
    _WORKER_DETECTOR = get_detector(detector_name)
    _WORKER_IDENTITY = FaceIdentity()


def process_clip(spec: ClipSpec, out: Path, size: int) -> ClipResult:
    """Worker entry: one clip end to end. Errors are reported, not raised."""
    start = time.perf_counter()
    try:
        crops, points, stats = crop_clip(spec.path, _WORKER_DETECTOR, size, _WORKER_IDENTITY)
        write_clip(out, spec, crops, points, stats, size, _WORKER_DETECTOR.name)
        return ClipResult(spec.clip_id, len(crops), stats["skipped"], time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - one broken clip must not stop the others
        return ClipResult(spec.clip_id, 0, 0, time.perf_counter() - start, repr(error))


def write_index(out: Path) -> list[dict]:
    """``OUT/index.json``: one entry per finished clip (rebuilt from every ``meta.json``)."""
    entries = []
    for meta_path in sorted(out.glob(f"*/{META_FILE}")):
        if meta_path.parent.name.startswith(TEMP_PREFIX):
            continue
        meta = json.loads(meta_path.read_text())
        entries.append({key: meta[key] for key in
                        ("clip", "identity", "split", "fps", "kept", "skipped", "size")})
    (out / INDEX_FILE).write_text(json.dumps({"clips": entries}, indent=1))
    return entries


def run(specs: list[ClipSpec], out: Path, size: int = 256, workers: int = 2,
        detector_name: str = "dlib", progress: bool = True) -> list[ClipResult]:
    """Preprocess every unfinished clip with ``workers`` processes; returns this run's results."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{TEMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    todo = sorted((s for s in specs if not is_done(out, s.clip_id)),
                  key=lambda s: -s.frames_hint)  # longest first balances the workers
    results: list[ClipResult] = []
    bar = tqdm(total=sum(s.frames_hint for s in todo), unit="frame", disable=not progress,
               desc="preprocess")
    # "spawn": forking a process that already runs threads (torch, OpenMP, a test runner)
    # can deadlock the child on a lock held by a thread that does not exist there.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(detector_name,)) as pool:
        futures = {pool.submit(process_clip, spec, out, size): spec for spec in todo}
        for future in as_completed(futures):
            results.append(future.result())
            bar.update(futures[future].frames_hint)
    bar.close()
    write_index(out)
    return results


def _summary(results: list[ClipResult], done_before: int, seconds: float) -> str:
    lines = [f"{'clip':<44}{'kept':>7}{'skipped':>9}{'seconds':>9}"]
    for r in sorted(results, key=lambda r: r.clip_id):
        status = f"  ERROR {r.error}" if r.error else ""
        lines.append(f"{r.clip_id:<44}{r.kept:>7}{r.skipped:>9}{r.seconds:>9.1f}{status}")
    kept, skipped = sum(r.kept for r in results), sum(r.skipped for r in results)
    lines.append(f"{'total (' + str(len(results)) + ' clips)':<44}{kept:>7}{skipped:>9}")
    lines.append(f"already done before this run: {done_before} clips; "
                 f"wall time {seconds:.1f} s")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m talking_heads preprocess",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.csv of the clips")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--detector", default="dlib", choices=["dlib", "face_alignment"])
    parser.add_argument("--clips", nargs="*", help="only these clip ids (file stems)")
    args = parser.parse_args(argv)

    specs = read_manifest(args.manifest)
    if args.clips:
        unknown = set(args.clips) - {s.clip_id for s in specs}
        if unknown:
            parser.error(f"unknown clip ids: {sorted(unknown)}")
        specs = [s for s in specs if s.clip_id in set(args.clips)]
    done_before = sum(is_done(args.out, s.clip_id) for s in specs)
    start = time.perf_counter()
    results = run(specs, args.out, args.size, args.workers, args.detector)
    print(_summary(results, done_before, time.perf_counter() - start))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
