"""Server-side limits: what one request may ask for, whatever the caller (UI or API) sends.

Every field can be overridden with an environment variable ``TALKING_HEADS_<FIELD>`` (upper
case), e.g. ``TALKING_HEADS_MAX_FT_STEPS=500``. The app shows them in the UI and the README
lists the defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

ENV_PREFIX = "TALKING_HEADS_"


@dataclass(frozen=True)
class Limits:
    max_photos: int = 8                  # source photos per request
    max_upload_mb: int = 50              # any single uploaded file (Gradio's max_file_size)
    max_photo_pixels: int = 80_000_000   # larger photos are refused before decoding (bombs);
    #                                      JPEGs decode at 1/2-1/8 scale, other formats in
    #                                      full (8000x8000 PNG: +258 MB peak, measured)
    max_photo_decode_mb: int = 256       # formats decoded in full (PNG, WebP, ...): larger
    #                                      are refused from the header (8000x8000 RGB: 244 MB)
    photo_decode_side: int = 1024        # photos are decoded/downscaled to this longer side
    #                                      (the output photo is at most 720 px anyway)
    min_face_px: int = 64                # smaller faces give too little to animate
    min_ft_steps: int = 1                # fine-tuning steps accepted
    max_ft_steps: int = 300
    max_driving_seconds: float = 20.0    # driving clips and presets are cut to this length
    max_driving_frames: int = 600        # ...and to this many frames
    max_driving_fps: float = 30.0        # faster clips are resampled to this rate
    driving_side: int = 640              # driving frames are downscaled to this for detection
    max_driving_pixels: int = 4096 * 4096  # larger video frames are refused (decoder memory)
    concurrency: int = 1                 # requests rendered at the same time
    queue_size: int = 16                 # requests waiting; more get a "queue is full" answer
    keep_files_s: int = 900              # uploads and results are deleted after this long
    #                                      at the latest (normally when the session ends)

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"limit {field.name} must be positive")
        if self.min_ft_steps > self.max_ft_steps:
            raise ValueError("min_ft_steps must not exceed max_ft_steps")

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "Limits":
        """The defaults, with ``TALKING_HEADS_<FIELD>`` environment overrides applied."""
        environ = os.environ if environ is None else environ
        changes = {}
        for field in fields(cls):
            text = environ.get(ENV_PREFIX + field.name.upper())
            if text is None or not text.strip():
                continue
            kind = float if field.type in (float, "float") else int
            try:
                changes[field.name] = kind(text)
            except ValueError as error:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={text!r} is not "
                                 f"{'an integer' if kind is int else 'a number'}") from error
        return replace(cls(), **changes)

    def summary(self) -> str:
        """One line for the UI."""
        return (f"Limits: {self.max_photos} photos, {self.max_upload_mb} MB per file, faces "
                f"of at least {self.min_face_px} px, fine-tuning {self.min_ft_steps}-"
                f"{self.max_ft_steps} steps, driving motion cut to {self.max_driving_seconds:g} s"
                f" / {self.max_driving_frames} frames at most {self.max_driving_fps:g} fps, "
                f"{self.queue_size} requests in the queue; your files are deleted when you close "
                f"the page, or after {self.keep_files_s // 60} min at the latest.")


# --------------------------------------------------------------------------- process memory
# glibc gives threads that allocate at the same time their own malloc arenas (64 MB each, up
# to 8 per core) and keeps what is freed inside them. Gradio runs every request on a worker
# thread, so the server's RSS crept from ~1.2 GB after 10 mixed requests to ~1.65 GB (16
# nearly full arenas on 2 cores; benchmarks/soak.py) without any leak. Two remedies, both
# no-ops where the C library is not glibc:
M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """Like ``MALLOC_ARENA_MAX=arenas`` in the environment, for a process already running:
    effective only if called before the first extra arena exists (at start-up, before
    worker threads allocate); setting the variable where the server is launched is surer."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, int(arenas)) == 1)


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (``malloc_trim(0)``):
    call it after each heavy request; it costs a few milliseconds. True if memory was
    returned."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)
