"""The model wrapper of the Space and the CLI: one loaded model serving many requests.

``Animator.adapt(photos)`` -> an ``Avatar`` (detect + crop + FF or FT, paper section 3.3);
``Animator.drive(avatar, driving, out)`` -> an mp4 (relative motion, ``rendering``);
``Animator.animate`` does both. An avatar kept from an earlier request (in the browser session,
or an avatar file) is driven again without detecting or adapting: ``drive`` alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from talking_heads.avatar import Avatar
from talking_heads.driving import Driving, driving_landmarks
from talking_heads.faces import CachedDetector, IdentityCheck, check_faces, limit_side
from talking_heads.images import to_rgb_uint8
from talking_heads.inputs import check_adapt_request
from talking_heads.landmarks.detector import get_detector
from talking_heads.limits import Limits
from talking_heads.options import (AnimateOptions, AnimationResult, FrameSink, Progress,
                                   Timings, no_progress, progress_span)
from talking_heads.rendering import write_video
from talking_heads.weights import (WeightsSource, load_discriminator, load_model, pick_device,
                                   resolve_weights, weights_digest)

DEFAULT_MAX_SIDE = AnimateOptions().max_output_side


@dataclass(frozen=True)
class Adaptation:
    """An adapted person and what it took: notes for the user, seconds per stage."""

    avatar: Avatar
    notes: tuple[str, ...]
    detect_s: float
    adapt_s: float


class Animator:
    """One loaded model serving many requests (see the module docstring)."""

    def __init__(self, model, source: WeightsSource, detector=None, discriminator=None,
                 limits: Limits | None = None):
        self.model = model.eval()
        self.limits = limits or Limits()
        self.source = source
        self.detector = detector or get_detector("dlib")
        self.discriminator = discriminator
        self.weights_digest = weights_digest(model)  # recorded in every avatar, checked on load
        self._identity = IdentityCheck()

    @classmethod
    def from_environment(cls, device: torch.device | str | None = None,
                         limits: Limits | None = None) -> "Animator":
        """Weights from the Hub / checkpoints/ / untrained (see ``weights``), on ``device``."""
        source = resolve_weights()
        model = load_model(source, device or pick_device())
        return cls(model, source, discriminator=load_discriminator(source, model.config),
                   limits=limits)

    @property
    def weights_label(self) -> str:
        return self.source.label

    def check_request(self, count: int, mode: str = "ff", steps: int = 100) -> None:
        """Server limits, whatever the caller asked for: ``InputError`` naming the field and
        the values it accepts, the same messages as the Space's (``check_adapt_request``)."""
        check_adapt_request(self.limits, photos=count, mode=mode, steps=steps)

    # -- adaptation ----------------------------------------------------------------------------
    def adapt(self, photos: list[np.ndarray], mode: str = "ff", steps: int = 100,
              progress: Progress | None = None, names: list[str] | None = None,
              max_side: int = DEFAULT_MAX_SIDE) -> Adaptation:
        """Photos of one person -> an Avatar (FF or FT); ``progress`` runs from 0 to 1.

        Raises ``NoFaceError`` / ``InputError`` naming "photo N (name)" for a missing or too
        small face, too many photos or FT steps out of the limits."""
        report = progress or no_progress
        self.check_request(len(photos), mode, steps)
        start = time.perf_counter()
        photos = [limit_side(to_rgb_uint8(p), max_side) for p in photos]
        detector = CachedDetector(self.detector)
        report(0.02, "detect: finding faces and landmarks")
        detections, notes = check_faces(photos, detector, self.limits, names)
        notes += self._identity.notes(photos, detections)
        detect_end = time.perf_counter()
        first = 0.1 if mode == "ft" else 0.5

        def adapt_progress(fraction: float, message: str) -> None:
            report(first + (1 - first) * fraction, f"adapt: {message}")

        avatar = Avatar.from_images(photos, self.model, mode=mode, steps=steps,
                                    detector=detector, progress=adapt_progress,
                                    discriminator=self.discriminator,
                                    weights_digest=self.weights_digest)
        if avatar.info.get("content_only"):
            notes.append("fine-tuned on the content loss only (no discriminator shipped)")
        report(1.0, "adapt: avatar ready")
        return Adaptation(avatar, tuple(notes), detect_end - start,
                          time.perf_counter() - detect_end)

    def save_avatar(self, avatar: Avatar, path: str | Path) -> Path:
        """One safetensors file (``Avatar.save_file``) a visitor can download and reuse."""
        return avatar.save_file(path)

    def load_avatar(self, path: str | Path) -> Avatar:
        """An avatar file, validated against this model and these weights (``AvatarFileError``
        names the problem)."""
        return Avatar.load_file(path, self.model, weights_digest=self.weights_digest,
                                max_bytes=avatar_file_limit(self.limits))

    # -- rendering -----------------------------------------------------------------------------
    def drive(self, avatar: Avatar, driving: Driving, out_path: str | Path,
              options: AnimateOptions = AnimateOptions(), progress: Progress | None = None,
              notes: tuple[str, ...] | list[str] = (), on_frame: FrameSink | None = None,
              adapted: Adaptation | None = None) -> AnimationResult:
        """Render ``avatar`` driven by ``driving`` into an mp4 (no detection, no adaptation).

        ``adapted``: the adaptation this request made (its notes and seconds are reported);
        None when the avatar was kept from before."""
        report = progress or no_progress
        start = time.perf_counter()
        notes = [self.source.label, *self.source.notes, *notes, *driving.notes]
        if adapted is not None:
            notes += adapted.notes
        if len(driving.points) > self.limits.max_driving_frames:
            driving = replace(driving, points=driving.points[:self.limits.max_driving_frames])
            notes.append(f"driving motion cut to {self.limits.max_driving_frames} frames")
        targets = driving_landmarks(avatar, driving, options.relative_motion)
        render_time, encode_time = write_video(avatar, targets, driving, out_path, options,
                                               report, on_frame)
        report(1.0, "done")
        detect, adapt = (adapted.detect_s, adapted.adapt_s) if adapted else (0.0, 0.0)
        timings = Timings(detect=detect, adapt=adapt, render=render_time, encode=encode_time,
                          total=detect + adapt + time.perf_counter() - start)
        return AnimationResult(Path(out_path), len(targets), driving.fps, timings, tuple(notes),
                               self.source.label)

    def animate(self, photos: list[np.ndarray], driving: Driving, out_path: str | Path,
                options: AnimateOptions = AnimateOptions(),
                progress: Progress | None = None, names: list[str] | None = None,
                on_frame: FrameSink | None = None) -> AnimationResult:
        """Adapt to ``photos`` and render: ``adapt`` then ``drive``. ``names``: the photos'
        file names, used in messages ("photo 2 (me.jpg)")."""
        report = progress or no_progress
        self.check_request(len(photos), options.mode, options.steps)
        split = 0.5 if options.mode == "ft" else 0.1
        adapted = self.adapt(photos, options.mode, options.steps,
                             progress_span(report, 0.0, split), names, options.max_output_side)
        return self.drive(adapted.avatar, driving, out_path, options,
                          progress_span(report, split, 1.0), on_frame=on_frame,
                          adapted=adapted)


def avatar_file_limit(limits: Limits) -> int:
    """Largest avatar file accepted, in bytes: the upload limit (an FT avatar holds a copy of
    G, a few MB at the bundled scales)."""
    return int(limits.max_upload_mb * 1024 * 1024)
