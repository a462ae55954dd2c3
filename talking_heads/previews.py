"""Motion previews: each preset's landmark track drawn as a small looping GIF.

Made from the preset files by the project's own rasterizer (the same y(t) the generator
sees), so a preview always shows the motion that will be rendered. About 3-4 s at 10 fps,
128 px, one shared 16-colour palette without dithering (the drawing has about ten colours
plus anti-aliasing): about 40 kB each, written once when the app starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from talking_heads import presets
from talking_heads.compositing import landmark_drawing

PREVIEW_SIDE = 128
PREVIEW_FPS = 10.0
PREVIEW_SECONDS = 4.0


def preview_frames(name: str, side: int = PREVIEW_SIDE, fps: float = PREVIEW_FPS,
                   seconds: float = PREVIEW_SECONDS) -> list[np.ndarray]:
    """The preset's first ``seconds`` at ``fps`` as landmark drawings, uint8 (side, side, 3)."""
    preset = presets.load_preset(name)
    count = max(1, min(preset.num_frames, int(round(seconds * preset.fps))))
    picks = np.arange(0, count, max(1.0, preset.fps / fps)).astype(int)
    return [landmark_drawing(preset.points[i], side) for i in picks]


def write_preview(name: str, path: str | Path, side: int = PREVIEW_SIDE,
                  fps: float = PREVIEW_FPS, seconds: float = PREVIEW_SECONDS) -> Path:
    """A looping GIF of the preset's motion."""
    images = [Image.fromarray(f) for f in preview_frames(name, side, fps, seconds)]
    palette = images[0].quantize(colors=16)
    frames = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                   duration=int(round(1000 / fps)), optimize=True)
    return path


def write_previews(folder: str | Path) -> dict[str, Path]:
    """name -> GIF for every preset, written into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: write_preview(name, folder / f"preset-{name}.gif")
            for name in presets.preset_names()}
