"""Preset driving motions: compact 68-point landmark tracks shipped with the package.

Each preset is ``presets/<name>.npz`` (arrays only, read with ``allow_pickle=False``):
``points`` float16 (T, 68, 2) in *crop-normalised* coordinates and ``fps`` float32 (). The
index ``presets/presets.json`` names each preset and says where it came from. Rendering a preset
needs no landmark detector: its points are the driving landmarks of the paper's y(t), only
rescaled to the model's crop size.

Crop-normalised coordinates: u = (p + 0.5) / S for crop pixel p in an S-pixel crop (pixel
centres at integers, as in ``talking_heads.landmarks.align``), so the same track fits any crop
size. ``scripts/make_presets.py`` builds the tracks from train-split clips with the project's
own detector and crop, or synthesises them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRESET_DIR = Path(__file__).resolve().parent / "presets"
INDEX_NAME = "presets.json"


@dataclass(frozen=True, eq=False)
class Preset:
    """A driving motion: ``points`` float32 (T, 68, 2), crop-normalised, at ``fps``."""

    name: str
    description: str
    source: str
    fps: float
    points: np.ndarray

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[1:] != (68, 2):
            raise ValueError(f"preset points must be (T, 68, 2), got {self.points.shape}")
        if len(self.points) == 0 or self.fps <= 0:
            raise ValueError("a preset needs at least one frame and a positive fps")

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def points_in_crop(self, size: int) -> np.ndarray:
        """Crop pixel coordinates for an S = ``size`` crop: float32 (T, 68, 2)."""
        return (self.points.astype(np.float32) * size - 0.5).astype(np.float32)


def normalise_points(points_in_crop: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels of an S-pixel crop -> crop-normalised coordinates, float32 (..., 68, 2)."""
    return ((np.asarray(points_in_crop, np.float32) + 0.5) / float(size)).astype(np.float32)


def _read_index(directory: Path) -> dict[str, dict]:
    index = directory / INDEX_NAME
    if not index.is_file():
        return {}
    return json.loads(index.read_text())


def preset_names(directory: Path = PRESET_DIR) -> list[str]:
    """Names of the available presets, in the index's order."""
    return list(_read_index(directory))


def preset_descriptions(directory: Path = PRESET_DIR) -> dict[str, str]:
    """name -> one-line description (for menus)."""
    return {name: entry["description"] for name, entry in _read_index(directory).items()}


def load_preset(name: str, directory: Path = PRESET_DIR) -> Preset:
    """Load one preset by name; only names listed in the index are accepted."""
    index = _read_index(directory)
    if name not in index:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(index) or 'none'}")
    entry = index[name]
    with np.load(directory / entry["file"], allow_pickle=False) as data:
        points = data["points"].astype(np.float32)  # (T, 68, 2)
        fps = float(data["fps"])
    return Preset(name=name, description=entry["description"], source=entry["source"],
                  fps=fps, points=points)


def save_preset(preset: Preset, directory: Path = PRESET_DIR) -> Path:
    """Write ``<name>.npz`` (float16 points) and add or replace the preset in the index."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{preset.name}.npz"
    np.savez_compressed(path, points=preset.points.astype(np.float16),
                        fps=np.float32(preset.fps))
    index = _read_index(directory)
    index[preset.name] = {"file": path.name, "description": preset.description,
                          "source": preset.source, "fps": round(preset.fps, 3),
                          "frames": preset.num_frames}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return path
