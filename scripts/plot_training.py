"""Training curves from a run's ``log.jsonl`` as a small PNG (no plotting library needed).

    python scripts/plot_training.py runs/cpu/log.jsonl checkpoints/cpu/training_curves.png

Left: the generator's content loss per logged step (grey) and its running mean over 20 logs
(black). Then feed-forward SSIM on the run's fixed episodes: `val` (held-out train identities,
which select `best/`), when the run has them, and dev (only reported). When a run was resumed,
the steps logged again after the resume replace the ones logged before it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, PAD = 420, 260, 44


def _records(path: Path, kind: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    by_step: dict[int, float] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == kind and key in record:
            by_step[int(record["step"])] = float(record[key])  # a resume overwrites
    steps = np.array(sorted(by_step), dtype=np.float64)
    return steps, np.array([by_step[int(s)] for s in steps], dtype=np.float64)


def _panel(title: str, x: np.ndarray, series: list[tuple[np.ndarray, tuple]],
           dots: bool = False) -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    values = np.concatenate([s for s, _ in series])
    low, high = float(values.min()), float(values.max())
    span = (high - low) or 1.0
    low, high = low - 0.05 * span, high + 0.05 * span
    x_max = float(x.max()) if len(x) and x.max() > 0 else 1.0

    def to_px(step, value):
        return (PAD + (WIDTH - PAD - 10) * step / x_max,
                HEIGHT - PAD + 10 - (HEIGHT - PAD - 10) * (value - low) / (high - low))

    draw.rectangle([PAD, 10, WIDTH - 10, HEIGHT - PAD + 10], outline="black")
    for fraction in (0.0, 0.5, 1.0):
        value = low + fraction * (high - low)
        _, y = to_px(0, value)
        draw.text((2, y - 6), f"{value:.3g}", fill="black")
        step = fraction * x_max
        px, _ = to_px(step, low)
        draw.text((px - 12, HEIGHT - PAD + 14), f"{step:.0f}", fill="black")
    draw.text((WIDTH // 2 - 20, HEIGHT - 16), "step", fill="black")
    draw.text((PAD + 6, 14), title, fill="black")
    for values_, colour in series:
        points = [to_px(s, v) for s, v in zip(x, values_)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2 if dots else 1)
        if dots:
            for px, py in points:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    steps, content = _records(args.log, "train", "content")
    window = 20
    kernel = np.ones(window) / window
    mean = np.convolve(np.pad(content, (window - 1, 0), mode="edge"), kernel, mode="valid")
    left = _panel("content loss (grey), running mean (black)", steps,
                  [(content, (180, 180, 180)), (mean, (0, 0, 0))])
    panels = [left]
    val_steps, val_ssim = _records(args.log, "val", "ssim")
    if len(val_steps):
        panels.append(_panel("val FF SSIM (selects best/)", val_steps,
                             [(val_ssim, (40, 40, 200))], dots=True))
    dev_steps, ssim = _records(args.log, "dev", "ssim")
    panels.append(_panel("dev FF SSIM (fixed dev episodes)", dev_steps, [(ssim, (200, 40, 40))],
                         dots=True))
    picture = Image.new("RGB", (len(panels) * WIDTH, HEIGHT), "white")
    for i, panel in enumerate(panels):
        picture.paste(panel, (i * WIDTH, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(steps)} logged steps up to {int(steps.max())}, "
          f"{len(dev_steps)} dev evaluations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
