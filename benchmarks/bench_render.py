"""Frames per second rendered by G, with and without landmark detection (not a test).

    python -m benchmarks.bench_render --config warp [--checkpoint DIR] [--out results.json]

*Without detection*: landmark images y(t) are rasterised from a real clip's precomputed
landmarks, then G(y, psi-hat) runs in batches under ``torch.inference_mode`` and the output is
converted to uint8 (rasterise + G + conversion are timed; psi-hat = P e from a real crop).
*With detection*: per driving frame, dlib detection (frames decoded at most 640 px as in the
pipeline) + crop transform + rasterise, then G in batches; decoding is not timed.
Batch 1 and every batch in ``--batches`` are timed; the best is reported. Each timing is the
fastest of ``--repeats`` runs (the machine is shared; the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import DEFAULT_DATA, build_model, load_average, write_result
from talking_heads.images import image_to_tensor, tensor_to_image
from talking_heads.landmarks.align import crop_transform
from talking_heads.landmarks.detector import get_detector
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.models import Sources
from talking_heads.precision import inference_autocast, render_precision
from talking_heads.video import iter_frames

DRIVING_CLIP = "clips/styletalk__happyenglish_clip2.mp4"  # dev split, 256x256, 30 fps
DETECT_SIDE = 640


@dataclass
class Person:
    """An FF-adapted source: psi-hat = P E(x, y) of one real crop, and that crop as the warp
    design's source (the values do not affect speed)."""

    psi: torch.Tensor
    x: torch.Tensor       # (1, 3, S, S)
    y: torch.Tensor       # (1, 3, S, S)
    points: torch.Tensor  # (1, 68, 2)


def _person(model, frame: np.ndarray, points: np.ndarray) -> Person:
    size = model.config.image_size
    transform = crop_transform(points, size)
    in_crop = transform.points_to_crop(points).astype(np.float32)
    x = image_to_tensor(transform.warp_image(frame))[None]  # (1, 3, S, S)
    y = image_to_tensor(rasterize(in_crop, size))[None]
    with torch.inference_mode():
        psi = model.generator.project(model.embed(x[None], y[None]))  # (1, P)
    return Person(psi, x, y, torch.from_numpy(in_crop)[None])


def _render(model, person: Person, points_in_crop: np.ndarray, batch: int) -> np.ndarray:
    """Rasterise y(t) + G (for the warp design: closed-form warp, networks, compose at the
    output size) + conversion to uint8."""
    size = model.config.image_size
    out = []
    with torch.inference_mode():
        for start in range(0, len(points_in_crop), batch):
            chunk = points_in_crop[start:start + batch]
            y = image_to_tensor(np.stack([rasterize(p, size) for p in chunk]))  # (B, 3, S, S)
            sources = Sources.shared(person.x, person.y, person.points, len(chunk))
            with inference_autocast(person.x.device):  # as the app renders
                out.append(tensor_to_image(model.generator(
                    y, person.psi.expand(len(chunk), -1),
                    torch.from_numpy(np.asarray(chunk, np.float32)), sources)))
    return np.concatenate(out)


def _best_seconds(run, repeats: int) -> float:
    """Fastest of ``repeats`` runs: on a shared machine the minimum is the least disturbed."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def fps_without_detection(model, person, points_in_crop, batches, repeats: int) -> dict[int, float]:
    result = {}
    for batch in batches:
        _render(model, person, points_in_crop[:batch], batch)  # warm-up at this shape
        seconds = _best_seconds(lambda: _render(model, person, points_in_crop, batch), repeats)
        result[batch] = len(points_in_crop) / seconds
    return result


def fps_with_detection(model, person, frames, detector, batch: int, repeats: int) -> float:
    size = model.config.image_size

    def run() -> None:
        crops = []
        for frame in frames:
            detection = detector.detect(frame)
            if detection.found:
                transform = crop_transform(detection.points, size)
                crops.append(transform.points_to_crop(detection.points))
        _render(model, person, np.stack(crops), batch)

    return len(frames) / _best_seconds(run, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="warp", help="ModelConfig preset (random weights)")
    parser.add_argument("--checkpoint", default=None, help="trained weights instead")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=64, help="frames per timing")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting (best kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = load_average()
    model = build_model(args.config, args.checkpoint)
    size = model.config.image_size
    frames = list(iter_frames(args.data / DRIVING_CLIP, max_frames=args.frames,
                              max_side=DETECT_SIDE))
    detector = get_detector("dlib")
    points = [detector.detect(f).points for f in frames]
    found = [i for i, p in enumerate(points) if p is not None]
    person = _person(model, frames[found[0]], points[found[0]])
    in_crop = np.stack([crop_transform(points[i], size).points_to_crop(points[i]) for i in found])
    plain = fps_without_detection(model, person, in_crop, sorted(set([1, *args.batches])),
                                  args.repeats)
    best_batch = max(plain, key=plain.get)
    detected = {b: fps_with_detection(model, person, frames, detector, b, args.repeats)
                for b in sorted({1, best_batch})}
    write_result(args.out, {
        "benchmark": "render", "config": model.config.name, "image_size": size,
        "weights": args.checkpoint or "random init", "frames": len(frames),
        "repeats": args.repeats,
        "fps_by_batch": {str(b): round(v, 2) for b, v in plain.items()},
        "fps_batch1": round(plain[1], 2), "best_batch": best_batch,
        "fps_best_batch": round(plain[best_batch], 2),
        "fps_with_detection_batch1": round(detected[1], 2),
        "fps_with_detection_best_batch": round(detected[best_batch], 2),
        "precision": render_precision(torch.device("cpu")),
        "load_average_start": load_start})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
