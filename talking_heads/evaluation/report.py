"""Aggregation of clip results into the JSON report and a readable table.

Aggregates pool all evaluated frames of all clips (each clip contributes its evaluated
frames, 32 by default). ``FD-dlib`` is the Frechet distance between the dlib face descriptors
of the ground-truth frames and of a method's frames: an FID-like distribution distance on
*identity* features (no Inception weights exist offline), not comparable with published FIDs.
"""

from __future__ import annotations

import math

import numpy as np

from talking_heads.evaluation.metrics import frechet_distance
from talking_heads.evaluation.run import BASELINES, ClipResult
from talking_heads.evaluation.scoring import FrameScores, summarize

COLUMNS = (  # (key, header, format)
    ("ssim", "SSIM^", "{:.3f}"), ("psnr", "PSNR^", "{:.2f}"), ("perceptual", "VGG-L1v", "{:.3f}"),
    ("csim", "CSIM^", "{:.3f}"), ("same_identity", "ID%^", "{:.1%}"),
    ("landmark_error", "LMKv", "{:.3f}"),
    ("face_found", "face%^", "{:.1%}"), ("fd_dlib", "FD-dlibv", "{:.3f}"), ("frames", "n", "{}"),
)


def _fd(reference: list[FrameScores], candidate: list[FrameScores]) -> float:
    pairs = [(r.descriptor, c.descriptor) for r, c in zip(reference, candidate)
             if r.descriptor is not None and c.descriptor is not None]
    if len(pairs) < 2:
        return float("nan")
    return frechet_distance(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))


def methods_of(modes: tuple[str, ...]) -> tuple[str, ...]:
    return (*BASELINES, *modes)


def clip_entry(result: ClipResult) -> dict:
    """JSON entry of one clip: frame choice and per-T, per-method metric means."""
    entry = {"name": result.clip.name, "file": str(result.clip.path.name),
             "identity": result.clip.identity, "split": result.clip.split,
             "num_frames": result.num_frames, "evaluated_frames": result.evaluated,
             "few_shot_frames": {f"T{t}": v for t, v in result.shots.items()},
             "skipped": result.skipped,
             "skipped_shots": {f"T{t}": v for t, v in result.skipped_shots.items()}}
    if result.detector:
        entry["detector_on_ground_truth"] = summarize(result.detector)
    entry["results"] = {}
    for (t, method), scores in result.scores.items():
        summary = summarize(scores)
        if (t, method) in result.adaptation:
            summary["adaptation"] = result.adaptation[(t, method)]
        entry["results"].setdefault(f"T{t}", {})[method] = summary
    return entry


def aggregate(results: list[ClipResult], shots: tuple[int, ...], modes: tuple[str, ...]) -> dict:
    """Pooled means over every evaluated frame of every clip, per T and method."""
    table: dict = {}
    detector = [s for r in results for s in r.detector]
    if detector:
        table["detector_on_ground_truth"] = summarize(detector)
    for t in shots:
        for method in methods_of(modes):
            scores, refs = [], []
            for result in results:
                if (t, method) in result.scores:
                    scores += result.scores[(t, method)]
                    refs += result.detector
            if not scores:
                continue
            summary = summarize(scores)
            summary["fd_dlib"] = _fd(refs, scores)
            summary["clips"] = sum((t, method) in r.scores for r in results)
            table.setdefault(f"T{t}", {})[method] = summary
    return table


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def format_table(table: dict) -> str:
    """Markdown table of ``aggregate``'s output (^ higher is better, v lower is better)."""
    header = ["T", "method"] + [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t_key, methods in table.items():
        if not t_key.startswith("T"):
            continue
        for method, summary in methods.items():
            cells = [_cell(summary.get(k), f) for k, _, f in COLUMNS]
            lines.append("| " + " | ".join([t_key[1:], method] + cells) + " |")
    if "detector_on_ground_truth" in table:
        summary = table["detector_on_ground_truth"]
        cells = [_cell(summary.get(k), f) if k in ("landmark_error", "face_found", "frames")
                 else "-" for k, _, f in COLUMNS]
        lines.append("| " + " | ".join(["-", "real crop"] + cells) + " |")
    return "\n".join(lines)


# Per-clip means are pooled back into frame means with these weights: every evaluated frame
# (pixel metrics), or the frames with a face found in the output (the detector's metrics).
_FACE_WEIGHTED = ("csim", "same_identity", "landmark_error")


def pool_clip_entries(clips: list[dict]) -> dict:
    """The ``aggregate`` table of reports' ``clips`` entries (several runs of one protocol,
    e.g. split with ``--skip``/``--limit``), from their per-clip means: each weighted by its
    frame count (the detector's metrics by the frames with a face found, which is exact for
    LMK and, when every ground-truth frame has a face, for CSIM and ID%). FD-dlib needs the
    frames' descriptors and is left out."""
    table: dict = {}
    sums: dict = {}
    for clip in clips:
        for t_key, methods in clip.get("results", {}).items():
            for method, summary in methods.items():
                cell = sums.setdefault((t_key, method), {"frames": 0, "clips": 0, "values": {}})
                frames = summary["frames"]
                cell["frames"] += frames
                cell["clips"] += 1
                for key, _, _ in COLUMNS:
                    if key in ("frames", "fd_dlib"):
                        continue
                    total, weights = cell["values"].get(key, (0.0, 0.0))
                    value = summary.get(key)
                    if value is not None:  # None: no frame had this metric
                        weight = frames * (summary.get("face_found") or 0.0) \
                            if key in _FACE_WEIGHTED else frames
                        total, weights = total + weight * value, weights + weight
                    cell["values"][key] = (total, weights)
    for (t_key, method), cell in sums.items():
        summary = {key: (total / weights if weights else None)
                   for key, (total, weights) in cell["values"].items()}
        summary.update(frames=cell["frames"], clips=cell["clips"])
        table.setdefault(t_key, {})[method] = summary
    return table
