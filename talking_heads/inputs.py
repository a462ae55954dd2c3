"""Validating and loading what users upload (photos, driving clips) and the values they send.

Every problem becomes a ``ValueError`` (``InputError``) whose message names the file or field
and says what is wrong, so that the app can show it as it is. Photos are decoded with Pillow,
by the decoders of ``PHOTO_FORMATS`` only: EXIF orientation, CMYK, 16-bit, palette, gray and
RGBA images all end as uint8 (H, W, 3) RGB, and a photo is never decoded much larger than
``Limits.photo_decode_side`` (JPEGs are decoded at 1/2, 1/4 or 1/8 scale by the decoder
itself; anything over ``Limits.max_photo_pixels``, or a PNG/WebP/... whose full decode would
take more than ``Limits.max_photo_decode_mb``, is refused from its header). Decoded photos
are kept by content in a small cache, so ``/detect`` and ``/animate`` decode an upload once.
``check_request`` checks the other values of a request (photo count, mode, steps, driving
source, preset, framing)."""

from __future__ import annotations

import hashlib
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

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


@dataclass(frozen=True)
class _Decoded:
    pixels: np.ndarray            # read-only; callers get a copy
    original_size: tuple[int, int]
    frames: int


class _PhotoCache:
    """The last few decoded photos, keyed by the file's SHA-256 and the decoding limits, so
    that the same upload seen by ``/detect`` and then ``/animate`` is decoded once. Bounded by
    the bytes of pixels it holds (least recently used out first)."""

    def __init__(self, max_bytes: int = 32 << 20) -> None:  # ~10 photos of 1024 px
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, _Decoded] = OrderedDict()
        self._lock = threading.Lock()
        self.decodes = 0  # photos actually decoded (for tests and benchmarks)

    def get(self, key: tuple) -> _Decoded | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, item: _Decoded) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while sum(i.pixels.nbytes for i in self._items.values()) > self.max_bytes \
                    and len(self._items) > 1:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PHOTO_CACHE = _PhotoCache()


def _digest(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None  # not there or unreadable: decoding reports it


def read_photo(path: str | Path, index: int | None = None, limits: Limits = Limits(),
               name: str | None = None, cache: bool = True) -> LoadedPhoto:
    """Decode one photo (bounded memory) -> ``LoadedPhoto``; ``InputError`` names the file.

    With ``cache`` the decoded pixels are kept in ``PHOTO_CACHE`` (by content), so reading
    the same file again, e.g. ``/animate`` after ``/detect``, does not decode it again."""
    path = Path(path)
    label = _label(index, name or path.name)
    side = limits.photo_decode_side
    key = None
    if cache:
        digest = _digest(path)
        key = None if digest is None else (digest, side, limits.max_photo_pixels,
                                           limits.max_photo_decode_mb)
    decoded = PHOTO_CACHE.get(key) if key is not None else None
    if decoded is None:
        decoded = _decode_photo(path, label, limits)
        if key is not None:
            PHOTO_CACHE.put(key, decoded)
    (width, height), frames = decoded.original_size, decoded.frames
    pixels = decoded.pixels.copy()
    notes = []
    if frames > 1:
        notes.append(f"{label} is animated ({frames} frames): its first frame is used")
    if max(width, height) > side:
        notes.append(f"{label} downscaled from {width}x{height} to "
                     f"{pixels.shape[1]}x{pixels.shape[0]}")
    return LoadedPhoto(pixels, name or path.name, (width, height), tuple(notes))


# Formats a phone, camera or browser produces; others (EPS, which runs Ghostscript, PSD,
# ICNS, ...) are refused, so a crafted upload only ever reaches these decoders.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes MPO
# EXIF orientation -> the transpose that turns the stored pixels upright (as exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
# Pillow's own decoder errors for malformed files: besides OSError/SyntaxError/ValueError its
# Python plugins raise these on bad headers (found by benchmarks/fuzz.py: GIF IndexError,
# TIFF "Missing dimensions" TypeError, float tile sizes).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError,
                   EOFError, ZeroDivisionError, OverflowError, struct.error)


def _decoded_bytes(image: Image.Image) -> int:
    """Bytes Pillow allocates for ``image`` once loaded (multi-band and 32-bit modes use 4
    bytes per pixel, 16-bit gray 2, 8-bit gray and palette 1)."""
    per_pixel = 2 if image.mode.startswith("I;16") else \
        1 if image.mode in ("1", "L", "P") else 4
    return image.size[0] * image.size[1] * per_pixel


def _decode_photo(path: Path, label: str, limits: Limits) -> _Decoded:
    """Decode, downscale to ``photo_decode_side`` and turn upright, never holding more than
    one full-size decoded image (refused from its header when it would exceed
    ``max_photo_decode_mb``)."""
    side = limits.photo_decode_side
    PHOTO_CACHE.decodes += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PHOTO_FORMATS) as image:
                width, height = image.size
                if width * height > limits.max_photo_pixels:
                    raise InputError(f"{label} is too large ({width}x{height} pixels; at most "
                                     f"{limits.max_photo_pixels / 1e6:.3g} megapixels)")
                # JPEG: let the decoder scale by 1/2..1/8 so a huge photo never fills memory.
                image.draft(image.mode, (side, side))
                if _decoded_bytes(image) > limits.max_photo_decode_mb << 20:
                    raise InputError(
                        f"{label} is too large to decode ({width}x{height} {image.mode} pixels "
                        f"would take {_decoded_bytes(image) / 2**20:.0f} MB; at most "
                        f"{limits.max_photo_decode_mb} MB): send a JPEG or a smaller photo")
                orientation = image.getexif().get(0x0112, 1)
                frames = getattr(image, "n_frames", 1)
                if max(image.size) > side:
                    factor = max(1, max(image.size) // side)
                    image = image.reduce(factor) if factor > 1 else image
                    image.thumbnail((side, side), Image.Resampling.LANCZOS)
                if isinstance(orientation, int) and orientation in _UPRIGHT:  # turn upright
                    image = image.transpose(_UPRIGHT[orientation])
                pixels = _pixels(image)
    except InputError:
        raise
    except FileNotFoundError as error:
        raise InputError(f"{label} was not found") from error
    except UnidentifiedImageError as error:
        raise InputError(f"{label} is not an image (use JPEG, PNG or WebP)") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"{label} is too large to decode safely") from error
    except MemoryError as error:
        raise InputError(f"{label} is too large to decode") from error
    except _DECODER_ERRORS as error:  # truncated or corrupt data
        raise InputError(f"{label} is damaged or truncated and cannot be read") from error
    pixels.setflags(write=False)
    return _Decoded(pixels, (width, height), frames)


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
            if stream.codec_context is None:  # a codec FFmpeg does not know (fuzzer: header)
                raise InputError(f"{label} uses a video codec that cannot be decoded")
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


# --------------------------------------------------------------------------- request values

MODES = {"ff": "feed-forward", "ft": "fine-tuning"}
DRIVING_SOURCES = {"preset": "a preset motion", "video": "an uploaded driving video"}
FRAMINGS = {"photo": "pasted into the photo", "crop": "the face crop only"}


@dataclass(frozen=True)
class RequestValues:
    """The values of one request, checked against the limits."""

    photos: int                   # how many photos (0 when an avatar file is given)
    mode: str                     # "ff" or "ft"
    steps: int                    # fine-tuning steps (0 in "ff": not used)
    driving_source: str | None    # "preset" or "video" (None for /adapt)
    preset: str | None            # the preset's name when driving_source is "preset"
    framing: str | None           # "photo" or "crop" (None for /adapt)


def _choices(choices) -> str:
    return ", ".join(f"{value!r} ({meaning})" for value, meaning in choices.items()) \
        if isinstance(choices, dict) else ", ".join(repr(value) for value in choices)


def _choice(field: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{field} must be one of {_choices(choices)} (got {value!r})")
    return value


def _whole_number(field: str, value, low: int, high: int) -> int:
    """An int, an integral float (sliders send 20.0) or its text; nothing else."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise InputError(f"{field} must be a whole number from {low} to {high} (got {value!r})")
    return number


def check_adapt_request(limits: Limits, *, photos: int, mode, steps,
                        has_avatar_file: bool = False) -> RequestValues:
    """Check who is to be animated and how (``/adapt``; also the start of ``/animate``):
    1..``max_photos`` photos (or none with an avatar file), the mode and, for FT, the steps.
    ``InputError`` names the field and the values it accepts, e.g. "steps (fine-tuning
    steps) must be a whole number from 1 to 300 (got 900)"."""
    if not (photos == 0 and has_avatar_file) and not 1 <= photos <= limits.max_photos:
        raise InputError(f"photos: Upload between 1 and {limits.max_photos} photos of one "
                         f"person{', or an avatar file' if photos == 0 else ''} (got {photos}).")
    mode = _choice("mode", mode, MODES)
    steps = _whole_number("steps (fine-tuning steps)", steps, limits.min_ft_steps,
                          limits.max_ft_steps) if mode == "ft" else 0
    return RequestValues(photos, mode, steps, None, None, None)


def check_request(limits: Limits, *, photos: int, mode, steps, driving_source, preset=None,
                  has_driving_video: bool = False, framing, has_avatar_file: bool = False,
                  preset_names: list[str] | None = None) -> RequestValues:
    """Check the values an ``/animate`` caller sent (UI or raw API), before any work: those
    of ``check_adapt_request``, then the driving source and its preset or video, and the
    framing. ``preset_names`` defaults to the shipped presets."""
    person = check_adapt_request(limits, photos=photos, mode=mode, steps=steps,
                                 has_avatar_file=has_avatar_file)
    driving_source = _choice("driving_source", driving_source, DRIVING_SOURCES)
    if driving_source == "preset":
        if preset_names is None:
            from talking_heads.presets import preset_names as shipped

            preset_names = shipped()
        preset = _choice("preset", preset, preset_names)
    elif not has_driving_video:
        raise InputError("driving_video: Upload a driving video, or choose a preset motion "
                         "(driving_source 'preset').")
    else:
        preset = None
    framing = _choice("framing", framing, FRAMINGS)
    return RequestValues(person.photos, person.mode, person.steps, driving_source, preset,
                         framing)
