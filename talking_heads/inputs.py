"""Validating and loading what users upload: photos and driving clips.

Every problem becomes a ``ValueError`` (``InputError``) whose message names the file and says
what is wrong, so that the app can show it as it is. Photos are decoded with Pillow: EXIF
orientation, CMYK, 16-bit, palette, gray and RGBA images all end as uint8 (H, W, 3) RGB, and a
photo is never decoded much larger than ``Limits.photo_decode_side`` (JPEGs are decoded at
1/2, 1/4 or 1/8 scale by the decoder itself; anything over ``Limits.max_photo_pixels`` is
refused from its header, before any pixel is decoded).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from talking_heads.images import to_rgb_uint8
from talking_heads.limits import Limits


class InputError(ValueError):
    """An uploaded file cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class LoadedPhoto:
    image: np.ndarray             # uint8 (H, W, 3) RGB, upright
    name: str                     # the file name shown to the user
    original_size: tuple[int, int]  # (width, height) as stored in the file
    notes: tuple[str, ...] = ()


def _label(index: int | None, name: str) -> str:
    return f"photo {index} ({name})" if index is not None else name


def _pixels(image: Image.Image) -> np.ndarray:
    """A decoded PIL image of any mode -> uint8 (H, W, 3) RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return to_rgb_uint8(np.asarray(image).astype(np.uint16))
    if image.mode in ("I", "F"):  # 32-bit integer or float gray (e.g. some 16-bit PNGs)
        array = np.asarray(image).astype(np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        return to_rgb_uint8((np.clip(array, 0, top) / top).astype(np.float32))
    if image.mode == "RGBA" or image.mode == "LA" or "transparency" in image.info:
        return to_rgb_uint8(np.asarray(image.convert("RGBA")))  # alpha over white
    return to_rgb_uint8(np.asarray(image.convert("RGB")))  # CMYK, YCbCr, P, 1, L, RGB


def read_photo(path: str | Path, index: int | None = None, limits: Limits = Limits(),
               name: str | None = None) -> LoadedPhoto:
    """Decode one photo (bounded memory) -> ``LoadedPhoto``; ``InputError`` names the file."""
    path = Path(path)
    label = _label(index, name or path.name)
    side = limits.photo_decode_side
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > limits.max_photo_pixels:
                    raise InputError(f"{label} is too large ({width}x{height} pixels; at most "
                                     f"{limits.max_photo_pixels / 1e6:.3g} megapixels)")
                # JPEG: let the decoder scale by 1/2..1/8 so a huge photo never fills memory.
                image.draft(image.mode, (side, side))
                if image.getexif().get(0x0112, 1) != 1:  # Orientation tag: turn upright
                    image = ImageOps.exif_transpose(image)
                if max(image.size) > side:
                    factor = max(1, max(image.size) // side)
                    image = image.reduce(factor) if factor > 1 else image
                    image.thumbnail((side, side), Image.Resampling.LANCZOS)
                frames = getattr(image, "n_frames", 1)
                pixels = _pixels(image)
    except InputError:
        raise
    except FileNotFoundError as error:
        raise InputError(f"{label} was not found") from error
    except UnidentifiedImageError as error:
        raise InputError(f"{label} is not an image (use JPEG, PNG or WebP)") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"{label} is too large to decode safely") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise InputError(f"{label} is damaged or truncated and cannot be read") from error
    notes = []
    if frames > 1:
        notes.append(f"{label} is animated ({frames} frames): its first frame is used")
    if max(width, height) > side:
        notes.append(f"{label} downscaled from {width}x{height} to "
                     f"{pixels.shape[1]}x{pixels.shape[0]}")
    return LoadedPhoto(pixels, name or path.name, (width, height), tuple(notes))


def read_photos(paths: list[str | Path], limits: Limits = Limits()) -> list[LoadedPhoto]:
    """1..``limits.max_photos`` photos, numbered from 1 in messages."""
    if not paths:
        raise InputError("Upload at least one photo of a face.")
    if len(paths) > limits.max_photos:
        raise InputError(f"Upload at most {limits.max_photos} photos (got {len(paths)}).")
    return [read_photo(path, index, limits) for index, path in enumerate(paths, start=1)]


@dataclass(frozen=True)
class ClipCheck:
    """What ``check_clip`` found in a driving clip that can be decoded."""

    width: int
    height: int           # as displayed (rotation applied)
    duration: float       # seconds, 0 when the container does not say
    has_audio: bool


def check_clip(path: str | Path, limits: Limits = Limits()) -> ClipCheck:
    """Open a driving clip and decode its first frame; ``InputError`` if it is no usable
    video (corrupt, not a video, no video stream, frames over ``max_driving_pixels``)."""
    path = Path(path)
    label = f"the driving video ({path.name})"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{label} has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > limits.max_driving_pixels:
                raise InputError(f"{label} is {width}x{height}; frames of at most "
                                 f"{limits.max_driving_pixels / 1e6:.3g} megapixels are accepted")
            frame = next(iter(container.decode(stream)), None)
            if frame is None:
                raise InputError(f"{label} has no frames that can be decoded")
            duration = float(container.duration) / av.time_base if container.duration else 0.0
            has_audio = bool(container.streams.audio)
            rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 180
    except InputError:
        raise
    except FileNotFoundError as error:
        raise InputError(f"{label} was not found") from error
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as error:
        raise InputError(f"{label} is not a readable video file (corrupt, or not a video)") \
            from error
    if rotation:
        width, height = height, width
    return ClipCheck(width, height, duration, has_audio)
