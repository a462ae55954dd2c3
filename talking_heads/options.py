"""What one request asks for and what it gets back: options, timings, results, progress.

Shared by the model-facing ``animator``, the frame ``rendering`` and the user-facing shells
(``app.py``, ``animate_cli``), so none of them imports another for a dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

Progress = Callable[[float, str], None]      # (fraction in [0, 1], message)
FrameSink = Callable[[np.ndarray], None]     # receives an output frame as it is made

# Share of the progress bar taken by analysing an uploaded driving clip (detection on every
# frame); the rest is ``Animator.animate``. Presets skip that stage.
DRIVING_SHARE = 0.3
LAYOUTS = ("result", "side_by_side")


def progress_span(report: Progress, start: float, end: float) -> Progress:
    """``report`` restricted to [start, end], so consecutive stages never move the bar back."""
    return lambda fraction, message: report(start + (end - start) * fraction, message)


def no_progress(fraction: float, message: str) -> None:
    """A ``Progress`` that shows nothing."""


@dataclass(frozen=True)
class AnimateOptions:
    mode: str = "ff"               # "ff" feed-forward (instant) or "ft" fine-tuning
    steps: int = 100               # FT steps
    relative_motion: bool = True   # move the source landmarks by the driving motion
    paste_back: bool = True        # True: into the first photo; False: the face crop only
    label: bool = True             # visible "SYNTHETIC" label (the mp4 tag is always written)
    max_output_side: int = 720     # the pasted-back photo is downscaled to this longer side
    batch_size: int = 8            # frames per G call
    layout: str = "result"         # "side_by_side": the driving motion left of the result

    def __post_init__(self) -> None:
        if self.mode not in ("ff", "ft"):
            raise ValueError(f"mode must be 'ff' or 'ft', got {self.mode!r}")
        if self.mode == "ft" and not 1 <= self.steps <= 1000:
            raise ValueError("fine-tuning steps must be between 1 and 1000")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")


@dataclass(frozen=True)
class Timings:
    """Seconds per stage (render and encode interleave; each counts its own calls).
    ``detect`` and ``adapt`` are 0 when a kept avatar was reused."""

    detect: float
    adapt: float
    render: float
    encode: float
    total: float


@dataclass(frozen=True)
class AnimationResult:
    path: Path
    frames: int
    fps: float
    timings: Timings
    notes: tuple[str, ...]
    weights_label: str
