"""Photos + driving motion -> labelled H.264 mp4 (used by the Space and the ``animate`` CLI).

photos -> detect + crop -> Avatar (FF: psi-hat = P e_new, or FT) -> driving landmarks (a
preset track, or per-frame detection on a clip with smoothed crops; ``driving.py``) ->
relative motion onto the source face -> landmark images y(t) -> G in batches without grad -> paste back into the
first photo (or the crop alone) -> visible "synthetic" label -> mp4 with the driving audio.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from talking_heads import presets, video
from talking_heads.avatar import Avatar, NoFaceError
from talking_heads.driving import (DEFAULT_MAX_SECONDS, Driving, driving_from_preset,
                                   driving_from_video, driving_landmarks)
from talking_heads.evaluation.identity import SAME_PERSON_DISTANCE
from talking_heads.images import image_to_tensor, tensor_to_image, to_rgb_uint8
from talking_heads.inputs import InputError, read_photo
from talking_heads.landmarks.align import CropTransform, paste_back
from talking_heads.landmarks.detector import Detection, get_detector
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.limits import Limits
from talking_heads.overlay import draw_face, draw_label
from talking_heads.weights import (WeightsSource, load_discriminator, load_model, pick_device,
                                   resolve_weights)

Progress = Callable[[float, str], None]

# Share of the progress bar taken by analysing an uploaded driving clip (detection on every
# frame); the rest is ``Animator.animate``. Presets skip that stage.
DRIVING_SHARE = 0.3


def progress_span(report: Progress, start: float, end: float) -> Progress:
    """``report`` restricted to [start, end], so consecutive stages never move the bar back."""
    return lambda fraction, message: report(start + (end - start) * fraction, message)


MAX_PHOTOS = Limits().max_photos
MIN_CROP_OUTPUT = 256    # crop-only output is upscaled to at least this side


@dataclass(frozen=True)
class AnimateOptions:
    mode: str = "ff"               # "ff" feed-forward (instant) or "ft" fine-tuning
    steps: int = 100               # FT steps
    relative_motion: bool = True   # move the source landmarks by the driving motion
    paste_back: bool = True        # True: into the first photo; False: the face crop only
    label: bool = True             # visible "SYNTHETIC" label (the mp4 tag is always written)
    max_output_side: int = 720     # the pasted-back photo is downscaled to this longer side
    batch_size: int = 8            # frames per G call

    def __post_init__(self) -> None:
        if self.mode not in ("ff", "ft"):
            raise ValueError(f"mode must be 'ff' or 'ft', got {self.mode!r}")
        if self.mode == "ft" and not 1 <= self.steps <= 1000:
            raise ValueError("fine-tuning steps must be between 1 and 1000")


@dataclass(frozen=True)
class Timings:
    """Seconds per stage (render and encode interleave; each counts its own calls)."""

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


@dataclass(frozen=True)
class FacePreview:
    """One source photo as seen by the detector (for the UI)."""

    image: np.ndarray   # uint8 (h, w, 3), box and landmarks drawn
    found: bool
    caption: str


def load_photo(path: str | Path, limits: Limits = Limits()) -> np.ndarray:
    """An image file -> uint8 (H, W, 3) RGB, upright (see ``inputs.read_photo``)."""
    return read_photo(path, limits=limits).image


def limit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so that the longer side is at most ``max_side`` (never upscales)."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1.0:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


class CachedDetector:
    """Wraps a detector so that the same photo is never detected twice (preview, Avatar)."""

    def __init__(self, detector) -> None:
        self.detector, self.name = detector, detector.name
        self._cache: dict[bytes, Detection] = {}

    def detect(self, image_rgb: np.ndarray) -> Detection:
        image = np.ascontiguousarray(image_rgb)
        key = hashlib.blake2b(image.data, digest_size=16).digest() + str(image.shape).encode()
        if key not in self._cache:
            self._cache[key] = self.detector.detect(image)
        return self._cache[key]


def preview_faces(photos: list[np.ndarray], detector) -> list[FacePreview]:
    """Detect the largest face of each photo and draw its box and 68 landmarks."""
    previews = []
    for index, photo in enumerate(photos, start=1):
        detection = detector.detect(photo)
        if not detection.found:
            caption = f"photo {index}: no face found"
        elif detection.num_faces > 1:
            caption = f"photo {index}: {detection.num_faces} faces, the largest is used"
        else:
            caption = f"photo {index}: face found"
        previews.append(FacePreview(draw_face(photo, detection.points, detection.box),
                                    detection.found, caption))
    return previews


class Animator:
    """One loaded model serving many requests: ``animate(photos, driving, options, out)``."""

    def __init__(self, model, source: WeightsSource, detector=None, discriminator=None,
                 limits: Limits | None = None):
        self.model = model.eval()
        self.limits = limits or Limits()
        self.source = source
        self.detector = detector or get_detector("dlib")
        self.discriminator = discriminator
        self._identity = None  # dlib face descriptor, loaded when several photos are given

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

    def _check_request(self, photos: list[np.ndarray], options: AnimateOptions) -> None:
        """Server limits, whatever the caller asked for (``InputError`` otherwise)."""
        limits = self.limits
        if not 1 <= len(photos) <= limits.max_photos:
            raise InputError(f"give between 1 and {limits.max_photos} photos, got {len(photos)}")
        if options.mode == "ft" and not limits.min_ft_steps <= options.steps <= \
                limits.max_ft_steps:
            raise InputError(f"fine-tuning steps must be between {limits.min_ft_steps} and "
                             f"{limits.max_ft_steps} (got {options.steps})")

    def _identity_notes(self, photos: list[np.ndarray], detections: list[Detection]) -> list[str]:
        """Warn when a photo seems to show someone else than photo 1 (dlib's descriptor and
        its 0.6 verification distance; a warning only, since recognition can be wrong)."""
        if len(photos) < 2:
            return []
        if self._identity is None:
            from talking_heads.evaluation.identity import shared_identity

            self._identity = shared_identity()  # one locked instance, whichever thread asks
        descriptors = [self._identity.descriptor(photo, detection.box)
                       for photo, detection in zip(photos, detections)]
        notes = []
        for index, descriptor in enumerate(descriptors[1:], start=2):
            distance = float(np.linalg.norm(descriptor - descriptors[0]))
            if distance >= SAME_PERSON_DISTANCE:
                notes.append(f"photo {index} may show a different person than photo 1 (face "
                             f"descriptor distance {distance:.2f} >= {SAME_PERSON_DISTANCE})")
        return notes

    def animate(self, photos: list[np.ndarray], driving: Driving, out_path: str | Path,
                options: AnimateOptions = AnimateOptions(),
                progress: Progress | None = None,
                names: list[str] | None = None) -> AnimationResult:
        """``names``: the photos' file names, used in messages ("photo 2 (me.jpg)")."""
        report = progress or (lambda fraction, message: None)
        self._check_request(photos, options)
        start = time.perf_counter()
        notes = [self.source.label, *self.source.notes, *driving.notes]
        if len(driving.points) > self.limits.max_driving_frames:
            driving = replace(driving, points=driving.points[:self.limits.max_driving_frames])
            notes.append(f"driving motion cut to {self.limits.max_driving_frames} frames")
        photos = [limit_side(to_rgb_uint8(p), options.max_output_side) for p in photos]
        detector = CachedDetector(self.detector)
        report(0.02, "detect: finding faces and landmarks")
        detections = []
        for index, photo in enumerate(photos, start=1):
            label = f"photo {index}" + (f" ({names[index - 1]})" if names else "")
            detection = detector.detect(photo)
            if not detection.found:
                raise NoFaceError(f"no face found in {label}")
            x0, y0, x1, y1 = detection.box
            side = min(x1 - x0, y1 - y0)
            if side < self.limits.min_face_px:
                raise InputError(f"the face in {label} is too small ({side:.0f} px; at least "
                                 f"{self.limits.min_face_px} px): use a closer or larger photo")
            if detection.num_faces > 1:
                notes.append(f"{label}: {detection.num_faces} faces, the largest is used")
            detections.append(detection)
        notes += self._identity_notes(photos, detections)
        detect_end = time.perf_counter()
        adapt_share = 0.45 if options.mode == "ft" else 0.05

        def adapt_progress(fraction: float, message: str) -> None:
            report(0.05 + adapt_share * fraction, f"adapt: {message}")

        avatar = Avatar.from_images(photos, self.model, mode=options.mode, steps=options.steps,
                                    detector=detector, progress=adapt_progress,
                                    discriminator=self.discriminator)
        if avatar.info.get("content_only"):
            notes.append("fine-tuned on the content loss only (no discriminator shipped)")
        adapt_end = time.perf_counter()
        targets = driving_landmarks(avatar, driving, options.relative_motion)
        render_share = 0.93 - 0.05 - adapt_share
        render_time, encode_time = _render(avatar, targets, driving, out_path, options,
                                           lambda f, m: report(0.05 + adapt_share
                                                               + render_share * f, m))
        report(1.0, "done")
        total = time.perf_counter() - start
        timings = Timings(detect=detect_end - start, adapt=adapt_end - detect_end,
                          render=render_time, encode=encode_time, total=total)
        return AnimationResult(Path(out_path), len(targets), driving.fps, timings, tuple(notes),
                               self.source.label)


def paste_into_photo(photo: np.ndarray, crop: np.ndarray, transform: CropTransform) -> np.ndarray:
    """``align.paste_back`` restricted to the crop's footprint in the photo (same pixels,
    several times cheaper on large photos, since nothing outside the footprint changes)."""
    size = transform.size
    corners = transform.points_to_image(np.array([[0, 0], [size, 0], [0, size], [size, size]],
                                                 np.float64) - 0.5)  # (4, 2)
    height, width = photo.shape[:2]
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 2, 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 3, 0, [width, height])
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    local = CropTransform(transform.matrix @ shift, size)  # sub-image pixels -> crop pixels
    out[y0:y1, x0:x1] = paste_back(photo[y0:y1, x0:x1], crop, local)
    return out


def _compose(avatar: Avatar, crops: np.ndarray, options: AnimateOptions) -> list[np.ndarray]:
    """Generated crops (B, S, S, 3) -> output frames (pasted back or upscaled), labelled."""
    frames = []
    for crop in crops:
        if options.paste_back:
            frame = paste_into_photo(avatar.sources.photos[0], crop,
                                     avatar.sources.transforms[0])
        else:
            side = max(MIN_CROP_OUTPUT, crop.shape[0])
            frame = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
        frames.append(draw_label(frame) if options.label else frame)
    return frames


def _render(avatar: Avatar, targets: np.ndarray, driving: Driving, out_path: str | Path,
            options: AnimateOptions, report: Progress) -> tuple[float, float]:
    """y(t) -> G -> frames -> mp4, streamed in batches; returns (render, encode) seconds."""
    size = avatar.config.image_size
    render_time = encode_time = 0.0
    count = len(targets)
    with video.Mp4Writer(out_path, driving.fps, audio=driving.audio) as writer:
        for first in range(0, count, options.batch_size):
            tick = time.perf_counter()
            batch = targets[first:first + options.batch_size]
            y = image_to_tensor(np.stack([rasterize(p, size) for p in batch]))  # (B, 3, S, S)
            with torch.inference_mode():
                crops = tensor_to_image(avatar.render(y, batch))  # (B, S, S, 3)
            frames = _compose(avatar, crops, options)
            tock = time.perf_counter()
            for frame in frames:
                writer.write(frame)
            render_time += tock - tick
            encode_time += time.perf_counter() - tock
            done = min(count, first + options.batch_size)
            report(0.97 * done / count, f"render: frame {done}/{count} (encoding as it goes)")
        report(0.98, "encode: finishing the mp4 (audio, index)")
        tick = time.perf_counter()
    encode_time += time.perf_counter() - tick  # flushing the encoder and muxing the audio
    return render_time, encode_time


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m talking_heads animate",
        description="Animate a face in 1-8 photos with a driving clip or a preset motion.")
    parser.add_argument("--source", nargs="+", required=True, type=Path, metavar="PHOTO",
                        help="photos of one person (the first is animated)")
    drive = parser.add_mutually_exclusive_group(required=True)
    drive.add_argument("--driving", type=Path, help="driving video (its audio is kept)")
    drive.add_argument("--preset", choices=presets.preset_names(), help="preset motion")
    parser.add_argument("--out", required=True, type=Path, help="output .mp4")
    parser.add_argument("--mode", choices=["ff", "ft"], default="ff",
                        help="ff: instant feed-forward; ft: fine-tune first")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps (ft)")
    parser.add_argument("--absolute", action="store_true",
                        help="use the driving landmarks as they are (no relative motion)")
    parser.add_argument("--crop-only", action="store_true", help="output the face crop only")
    parser.add_argument("--no-label", action="store_true", help="no visible SYNTHETIC label")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help="cut the driving motion to this length")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    options = AnimateOptions(mode=args.mode, steps=args.steps,
                             relative_motion=not args.absolute, paste_back=not args.crop_only,
                             label=not args.no_label)

    def show(fraction: float, message: str) -> None:
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr, flush=True)

    try:
        limits = Limits.from_environment()
        photos = [load_photo(path, limits) for path in args.source]
        animator = Animator.from_environment(args.device, limits)
        print(animator.weights_label, file=sys.stderr)
        start = 0.0 if args.preset else DRIVING_SHARE
        driving = (driving_from_preset(args.preset, args.max_seconds) if args.preset else
                   driving_from_video(args.driving, animator.detector, args.max_seconds,
                                      progress_span(show, 0.0, start), animator.limits))
        result = animator.animate(photos, driving, args.out, options,
                                  progress_span(show, start, 1.0))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    t = result.timings
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.path}: {result.frames} frames at {result.fps:g} fps; seconds: detect "
          f"{t.detect:.2f}, adapt {t.adapt:.2f}, render {t.render:.2f}, encode {t.encode:.2f}, "
          f"total {t.total:.2f}")
    return 0
