"""The Gradio adapter: the Space's event functions over ``Animator``, ``LiveDriver`` and the
per-session keeping (``sessions``). ``app.py`` lays out the page and wires these to it.

Every function here speaks Gradio (``gr.Request``, ``gr.Progress``, ``gr.Error``); nothing
below it does. Errors a visitor can act on (no face, a bad file or option) become
``gr.Error`` messages.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import spaces  # a no-op decorator off ZeroGPU hardware
from gradio.processing_utils import save_file_to_cache

from talking_heads.animator import Animator
from talking_heads.compute_thread import on_compute_thread
from talking_heads.driving import driving_from_preset, driving_from_video
from talking_heads.faces import preview_faces
from talking_heads.inputs import check_adapt_request, check_request, read_photos
from talking_heads.limits import Limits, release_free_memory
from talking_heads.live import LiveDriver
from talking_heads.options import DRIVING_SHARE, AnimateOptions, progress_span
from talking_heads.rendering import first_frame
from talking_heads.sessions import (KeptAvatar, LatestFrames, SessionFiles, SessionObjects,
                                    describe, file_key, photos_key, same_person)

WORK_PREFIX = "talking-heads-request-"  # one temporary folder per request, removed after it
WORK_ROOT: str | None = None  # where those folders go (None: the system's temporary folder)


def paths_of(files) -> list[str]:
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [item if isinstance(item, str) else item.name for item in items]


def read_uploaded_photos(files, limits: Limits) -> list:
    try:
        return read_photos(paths_of(files), limits)
    except ValueError as error:
        raise gr.Error(str(error)) from error


@contextmanager
def request_folder():
    """A private temporary folder for one request, removed when the request ends (also on
    errors and when the client goes away). Results are copied into Gradio's cache before
    the folder goes; that copy and the uploads are deleted when the session ends
    (``SessionFiles``), and in any case after ``keep_files_s`` (``delete_cache``)."""
    folder = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_ROOT))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        release_free_memory()  # freed arenas back to the system (docs/ROBUSTNESS.md, soak)


@contextmanager
def user_errors():
    """Errors a visitor can act on (no face, bad file, option) become gr.Error messages."""
    try:
        yield
    except gr.Error:  # already worded for the user (gr.Error is itself a ValueError)
        raise
    except (ValueError, TypeError, OSError) as error:
        raise gr.Error(str(error)) from error


def _notes_markdown(result, extra: list[str] = ()) -> str:
    t = result.timings
    lines = [f"- {note}" for note in [*extra, *result.notes]]
    lines.append(f"- {result.frames} frames at {result.fps:g} fps; seconds: detect {t.detect:.1f}"
                 f", adapt {t.adapt:.1f}, render {t.render:.1f}, encode {t.encode:.1f}, "
                 f"total {t.total:.1f}")
    return "\n".join(lines)


class Handlers:
    """The event functions, bound to one loaded model; driving is cut to ``max_seconds``;
    every upload and result is registered with ``session_files`` under the caller's
    session. The session's adapted person (``avatars``) and live driver (``drivers``) are
    kept here; the events' ``gr.State`` values (``kept``, ``driver``) are only their tokens
    (``SessionObjects``). ``end_session`` lets go of all of it."""

    def __init__(self, animator: Animator, max_seconds: float, session_files: SessionFiles,
                 live_keep_s: float = 120.0):
        self.animator, self.max_seconds = animator, max_seconds
        self.limits = animator.limits
        self.session_files = session_files
        self.frames = LatestFrames()
        self.avatars: SessionObjects[KeptAvatar] = SessionObjects(self.limits.keep_files_s)
        self.drivers: SessionObjects[LiveDriver] = SessionObjects(live_keep_s)

    def end_session(self, request: gr.Request) -> None:
        """The tab closed or the API client went away (``demo.unload``): drop the session's
        avatar, live driver and latest frame, and delete its files."""
        session = request.session_hash
        self.avatars.release(session)
        self.drivers.release(session)
        self.frames.clear(session)
        self.session_files.release(session)
        release_free_memory()  # what the avatar held, back to the system

    # -- the person ----------------------------------------------------------------------------
    def _person(self, files, avatar_file, mode: str, steps: int, kept: KeptAvatar | None,
                report, session: str | None, on_ff=None):
        """The avatar to render: the kept one when nothing changed, else loaded from the
        avatar file, else adapted from the photos. Returns it, notes for the user and the
        ``Adaptation`` when one was made now (else None)."""
        reused = (f"avatar reused: {kept.description}, kept from an earlier request (no "
                  "detection, no adaptation)") if kept is not None else ""
        if avatar_file:
            key = file_key(avatar_file)
            if kept is not None and kept.key == key:
                return kept, [reused], None
            avatar = self.animator.load_avatar(avatar_file)
            name = Path(avatar_file).name
            return (KeptAvatar(key, avatar, f"{describe(avatar)}, from the avatar file {name}",
                               file=avatar_file),
                    [f"avatar file {name} loaded: {describe(avatar)} (no adaptation)"], None)
        paths = paths_of(files)
        if not paths:
            raise gr.Error("Upload 1-8 photos of one person, or an avatar file.")
        key = photos_key(paths, mode, steps)
        if kept is not None and kept.key == key:
            return kept, [reused], None
        photos = read_uploaded_photos(files, self.limits)
        if on_ff is not None and mode == "ft":  # an instant look while fine-tuning runs
            on_ff(self.animator.adapt([p.image for p in photos], "ff").avatar)
        adapted = self.animator.adapt([p.image for p in photos], mode, steps, report,
                                      names=[p.name for p in photos])
        notes = [n for p in photos for n in p.notes]
        notes.append(f"avatar adapted ({describe(adapted.avatar)}) in "
                     f"{adapted.detect_s + adapted.adapt_s:.1f} s and kept for this session: "
                     "another motion will reuse it")
        return KeptAvatar(key, adapted.avatar, describe(adapted.avatar)), notes, adapted

    def _avatar_file(self, kept: KeptAvatar, session: str | None) -> str:
        """The kept avatar as a downloadable file in Gradio's cache (written once)."""
        if kept.file is None:
            with request_folder() as folder:
                name = f"talking-head-{kept.avatar.mode}.avatar.safetensors"
                path = self.animator.save_avatar(kept.avatar, folder / name)
                kept.file = save_file_to_cache(path, str(self.session_files.cache_dir))
        self.session_files.hold(session, [kept.file])
        return kept.file

    # -- events --------------------------------------------------------------------------------
    @on_compute_thread
    def detect(self, files, request: gr.Request):
        self.session_files.hold(request.session_hash, paths_of(files))
        try:
            photos = read_uploaded_photos(files, self.limits) if paths_of(files) else []
            previews = preview_faces([p.image for p in photos], self.animator.detector)
            return [(preview.image, f"{preview.caption} ({photo.name})")
                    for photo, preview in zip(photos, previews)]
        finally:
            release_free_memory()

    @spaces.GPU(duration=120)
    @on_compute_thread
    def adapt(self, files, mode, steps, kept_token, request: gr.Request,
              progress=gr.Progress()):
        """Photos -> an avatar file (safetensors) to download and reuse."""
        session = request.session_hash
        kept = self.avatars.get(session, kept_token)
        self.session_files.hold(session, paths_of(files))
        report = lambda fraction, message: progress(fraction, desc=message)  # noqa: E731
        with user_errors():
            try:
                values = check_adapt_request(self.limits, photos=len(paths_of(files)),
                                             mode=mode, steps=steps)
                kept, notes, adapted = self._person(files, None, values.mode, values.steps,
                                                    kept, report, session)
                path = self._avatar_file(kept, session)
            finally:
                release_free_memory()
        notes += list(adapted.notes) if adapted else []
        return path, "\n".join(f"- {note}" for note in notes), self.avatars.put(session, kept)

    @spaces.GPU(duration=120)
    @on_compute_thread
    def animate(self, files, driving_source, preset, driving_video, mode, steps, relative,
                framing, label, layout="result", avatar_file=None, kept_token=None,
                request: gr.Request = None, progress=gr.Progress()):
        # A generator: the code after ``yield`` runs once Gradio has taken the result, so
        # the request's folder is removed right after the answer is served.
        session = request.session_hash if request else None
        kept = self.avatars.get(session, kept_token)
        uploads = paths_of(files) + [p for p in (driving_video, avatar_file) if p]
        self.session_files.hold(session, uploads)
        report = lambda fraction, message: progress(fraction, desc=message)  # noqa: E731
        show = lambda frame: self.frames.put(session, frame)  # noqa: E731
        self.frames.clear(session)  # nothing left from an earlier request that failed
        with user_errors():
            # Every value a caller sent (UI or raw API), checked before any work.
            values = check_request(self.limits, photos=len(paths_of(files)), mode=mode,
                                   steps=steps, driving_source=driving_source, preset=preset,
                                   has_driving_video=bool(driving_video), framing=framing,
                                   has_avatar_file=bool(avatar_file))
            options = AnimateOptions(mode=values.mode, steps=values.steps or 100,
                                     relative_motion=bool(relative),
                                     paste_back=values.framing == "photo", label=bool(label),
                                     layout=layout or "result")
            start = 0.0
            if values.driving_source == "video":
                start = DRIVING_SHARE
                driving = driving_from_video(driving_video, self.animator.detector,
                                             self.max_seconds, progress_span(report, 0.0, start),
                                             self.limits, on_frame=show)
            else:
                driving = driving_from_preset(values.preset, self.max_seconds)
            split = start + (1 - start) * (0.5 if options.mode == "ft" else 0.1)
            kept, notes, adapted = self._person(
                files, avatar_file, options.mode, options.steps, kept,
                progress_span(report, start, split), session,
                on_ff=lambda ff: show(first_frame(ff, driving, options)))
            with request_folder() as folder:
                result = self.animator.drive(kept.avatar, driving, folder / "talking-head.mp4",
                                             options, progress_span(report, split, 1.0),
                                             notes=notes, on_frame=show, adapted=adapted)
                # The copy Gradio serves (it hands out this very file rather than copying
                # again), registered so it goes when the session ends.
                served = save_file_to_cache(result.path, str(self.session_files.cache_dir))
                self.session_files.hold(session, [served])
                self.frames.clear(session)
                yield served, _notes_markdown(result), self.avatars.put(session, kept)

    @on_compute_thread
    def download(self, kept_token, request: gr.Request):
        """After /animate: offer the kept avatar as a file (private event)."""
        kept = self.avatars.get(request.session_hash, kept_token)
        if kept is None:
            return gr.skip()
        with user_errors():
            return self._avatar_file(kept, request.session_hash)

    def start_polling(self, request: gr.Request):
        """Animate was pressed: forget old frames, poll for new ones (private event)."""
        self.frames.clear(request.session_hash)
        return gr.Timer(active=True), gr.Image(visible=True, value=None), 0

    def latest_frame(self, seen, request: gr.Request):
        """Timer tick while rendering: the newest frame, if any (private event)."""
        count, frame = self.frames.take(request.session_hash, seen or 0)
        return (gr.skip(), seen) if frame is None else (frame, count)

    @on_compute_thread
    def live(self, frame, files, avatar_file, kept_token, driver_token, request: gr.Request):
        """One webcam frame -> one rendered frame (private streaming event)."""
        if frame is None:
            return gr.skip(), gr.skip(), driver_token, kept_token
        session = request.session_hash
        kept = self.avatars.get(session, kept_token)
        driver = self.drivers.get(session, driver_token)
        with user_errors():
            if driver is None:
                if kept is None and not avatar_file and not paths_of(files):
                    raise gr.Error("First upload photos (or an avatar file) in the Video tab.")
                if not same_person(kept, paths_of(files), avatar_file):
                    # The Video tab's avatar (FF or FT) when it is this person, else an
                    # instant one.
                    kept, _, _ = self._person(files, avatar_file, "ff", 0, None, None,
                                              session)
                driver = LiveDriver(kept.avatar, self.animator.detector)
            tick = time.perf_counter()
            out = driver.step(frame)
            spent = (time.perf_counter() - tick) * 1000
        status = (f"frame {driver.frames}: tracking {out.detect_s * 1000:.0f} ms, render "
                  f"{out.render_s * 1000:.0f} ms, total {spent:.0f} ms; avatar: "
                  f"{kept.description if kept else driver.avatar.mode}")
        if not out.found:
            status = "no face in the webcam frame: look at the camera" + (
                "" if driver.started else " (the first frame with a face is the reference)")
        return (out.image, status, self.drivers.put(session, driver),
                self.avatars.put(session, kept))
