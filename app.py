"""Gradio Space entry point: the UI only; the work happens in ``talking_heads.pipeline``.

Public API (see README "Using the Space from Python"): ``/animate`` renders a video, ``/detect``
shows the face and landmarks found in each photo.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import spaces  # noqa: E402  (a no-op decorator off ZeroGPU hardware)
from gradio.processing_utils import save_file_to_cache  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from talking_heads import presets  # noqa: E402
from talking_heads.inputs import read_photos  # noqa: E402
from talking_heads.limits import Limits  # noqa: E402
from talking_heads.pipeline import (DRIVING_SHARE, AnimateOptions, Animator,  # noqa: E402
                                    driving_from_preset, driving_from_video, preview_faces,
                                    progress_span)

PROJECT = Path(__file__).resolve().parent
EXAMPLE_PHOTO = str(PROJECT / "examples" / "astronaut.jpg")
WORK_PREFIX = "talking-heads-request-"  # one temporary folder per request, removed after it
WORK_ROOT: str | None = None  # where those folders go (None: the system's temporary folder)
# Gradio gives each event its own concurrency group unless told otherwise, so /detect and
# /animate would each get ``limits.concurrency`` slots and run side by side. Every event that
# detects faces or renders shares this group: heavy work gets one bounded budget in total.
HEAVY = "heavy"

# Rows of inputs for gr.Examples (photos, driving, preset, video, mode, steps, relative,
# framing, label); tests/test_app.py runs each through /animate.
EXAMPLES = [
    [[EXAMPLE_PHOTO], "preset", "talking", None, "ff", 100, True, "photo", True],
    [[EXAMPLE_PHOTO], "preset", "turning", None, "ff", 100, True, "crop", True],
    [[EXAMPLE_PHOTO], "preset", "nodding", None, "ft", 20, True, "photo", True],
]

INTRO = """# Talking Heads
Few-shot talking-head videos after Zakharov et al., *Few-Shot Adversarial Learning of Realistic
Neural Talking Head Models* (ICCV 2019). Upload 1-8 photos of **one** person, choose a preset
motion or upload a driving video, and press **Animate**. Every video is synthetic: it carries a
visible label (unless you turn it off) and a metadata tag.
"""


def _weights_banner(animator: Animator) -> str:
    label = animator.weights_label
    notes = "".join(f" ({note})" for note in animator.source.notes)
    if not animator.source.trained:
        return f"**⚠ {label}.** Trained weights have not been installed yet.{notes}"
    return f"*{label}*{notes}"


def _paths(files) -> list[str]:
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [item if isinstance(item, str) else item.name for item in items]


def _read_photos(files, limits: Limits) -> list:
    try:
        return read_photos(_paths(files), limits)
    except ValueError as error:
        raise gr.Error(str(error)) from error


@contextmanager
def request_folder():
    """A private temporary folder for one request, removed when the request ends (also on
    errors and when the client goes away). The result is copied into Gradio's cache before
    the folder goes; that copy and the uploads are deleted when the session ends
    (``SessionFiles``), and in any case after ``keep_files_s`` (``delete_cache``)."""
    folder = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_ROOT))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


class SessionFiles:
    """The files in Gradio's cache that each session uploaded or was served, so they can be
    deleted as soon as the session ends (the tab is closed, or a ``gradio_client`` closes)
    rather than only when ``keep_files_s`` expires, which stays the backstop.

    Gradio stores files by content, so two sessions uploading the same photo share one file:
    it goes when the last of them ends. Files outside the cache folder and the app's own
    examples (``protected``, compared by content) are never deleted.
    """

    def __init__(self, cache_dir: str | Path, protected: list[str] = ()) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self._protected = {_sha256(Path(path)) for path in protected} - {None}
        self._holders: dict[Path, set[str]] = {}
        self._lock = threading.Lock()

    def hold(self, session: str | None, paths) -> None:
        """Remember that ``session`` holds ``paths`` (those outside the cache are ignored)."""
        if not session:  # a raw REST call without a session: the expiry deletes its files
            return
        with self._lock:
            self._forget_expired()
            for path in paths:
                resolved = Path(path).resolve()
                if resolved.is_relative_to(self.cache_dir) and resolved != self.cache_dir:
                    self._holders.setdefault(resolved, set()).add(session)

    def held(self, session: str) -> list[Path]:
        with self._lock:
            return [path for path, sessions in self._holders.items() if session in sessions]

    def release(self, session: str | None) -> list[Path]:
        """The session ended: delete the files no other session holds; returns them.

        Deleting under the lock means no other session can register a file between the
        check that nobody holds it and its deletion."""
        if not session:
            return []
        with self._lock:
            deleted = []
            for path, sessions in list(self._holders.items()):
                sessions.discard(session)
                if not sessions:
                    del self._holders[path]
                    if self._delete(path):
                        deleted.append(path)
            return deleted

    def _forget_expired(self) -> None:
        """Drop files that are gone (``delete_cache`` expired them), so that sessions which
        never end, e.g. a client that never closes, do not grow ``_holders`` for ever."""
        for path in [path for path in self._holders if not path.exists()]:
            del self._holders[path]

    def _delete(self, path: Path) -> bool:
        """Delete an orphaned file unless it is protected or already gone."""
        if _sha256(path) in self._protected or not path.is_file():
            return False
        path.unlink(missing_ok=True)
        try:  # Gradio's per-file folder, named by the content hash
            if path.parent != self.cache_dir:
                path.parent.rmdir()
        except OSError:
            pass  # not empty: another file with the same content hash
        return True


def _notes_markdown(result, extra: list[str] = ()) -> str:
    t = result.timings
    lines = [f"- {note}" for note in [*extra, *result.notes]]
    lines.append(f"- {result.frames} frames at {result.fps:g} fps; seconds: detect {t.detect:.1f}"
                 f", adapt {t.adapt:.1f}, render {t.render:.1f}, encode {t.encode:.1f}, "
                 f"total {t.total:.1f}")
    return "\n".join(lines)


def make_handlers(animator: Animator, max_seconds: float, session_files: SessionFiles):
    """The event functions, bound to one loaded model; driving is cut to ``max_seconds``;
    every upload and result is registered with ``session_files`` under the caller's session."""
    limits = animator.limits

    def detect(files, request: gr.Request):
        session_files.hold(request.session_hash, _paths(files))
        photos = _read_photos(files, limits) if _paths(files) else []
        previews = preview_faces([p.image for p in photos], animator.detector)
        return [(preview.image, f"{preview.caption} ({photo.name})")
                for photo, preview in zip(photos, previews)]

    @spaces.GPU(duration=120)
    def animate(files, driving_source, preset, driving_video, mode, steps, relative, framing,
                label, request: gr.Request, progress=gr.Progress()):
        # A generator: the code after ``yield`` runs once Gradio has taken the result, so
        # the request's folder is removed right after the answer is served.
        session = request.session_hash
        session_files.hold(session, _paths(files) + ([driving_video] if driving_video else []))
        photos = _read_photos(files, limits)
        report = lambda fraction, message: progress(fraction, desc=message)  # noqa: E731
        try:
            options = AnimateOptions(mode=mode, steps=int(steps),
                                     relative_motion=bool(relative),
                                     paste_back=framing == "photo", label=bool(label))
            start = 0.0
            if driving_source == "video":
                if not driving_video:
                    raise gr.Error("Upload a driving video, or choose a preset motion.")
                start = DRIVING_SHARE
                driving = driving_from_video(driving_video, animator.detector, max_seconds,
                                             progress_span(report, 0.0, start), limits)
            else:
                if preset not in presets.preset_names():
                    raise gr.Error(f"Unknown preset {preset!r}.")
                driving = driving_from_preset(preset, max_seconds)
            with request_folder() as folder:
                result = animator.animate([p.image for p in photos], driving,
                                          folder / "talking-head.mp4", options,
                                          progress_span(report, start, 1.0),
                                          names=[p.name for p in photos])
                notes = [n for p in photos for n in p.notes]
                # The copy Gradio serves (it hands out this very file rather than copying
                # again), registered so it goes when the session ends.
                served = save_file_to_cache(result.path, str(session_files.cache_dir))
                session_files.hold(session, [served])
                yield served, _notes_markdown(result, notes)
        except gr.Error:  # already worded for the user (gr.Error is itself a ValueError)
            raise
        except (ValueError, TypeError, OSError) as error:  # no face, bad video or option
            raise gr.Error(str(error)) from error

    return detect, animate


def build_demo(animator: Animator, max_seconds: float | None = None) -> gr.Blocks:
    """The UI; ``animator.limits`` bound every request (``max_seconds`` may cut further)."""
    limits = animator.limits
    max_seconds = min(max_seconds or limits.max_driving_seconds, limits.max_driving_seconds)
    max_photos = limits.max_photos
    session_files = SessionFiles(get_upload_folder(), protected=[EXAMPLE_PHOTO])
    detect, animate = make_handlers(animator, max_seconds, session_files)
    descriptions = presets.preset_descriptions()
    keep = limits.keep_files_s
    with gr.Blocks(title="Talking Heads", delete_cache=(max(1, min(60, keep // 2)), keep)) \
            as demo:
        gr.Markdown(INTRO)
        gr.Markdown(_weights_banner(animator), elem_id="weights-label")
        gr.Markdown(limits.summary(), elem_id="limits")
        with gr.Row():
            with gr.Column():
                photos = gr.File(label=f"Photos of one person (1-{max_photos})",
                                 file_count="multiple", file_types=["image"], elem_id="photos")
                faces = gr.Gallery(label="Detected face and landmarks", columns=4, height=220,
                                   elem_id="faces")
                driving_source = gr.Radio([("Preset motion", "preset"),
                                           ("Uploaded video", "video")], value="preset",
                                          label="Driving motion", elem_id="driving-source")
                preset = gr.Dropdown([(f"{name}: {text}", name)
                                      for name, text in descriptions.items()],
                                     value="talking", label="Preset", elem_id="preset")
                driving_video = gr.Video(label="Driving video (its audio is kept; first "
                                         f"{max_seconds:g} s)", sources=["upload"],
                                         elem_id="driving-video")
                mode = gr.Radio([("Instant (feed-forward)", "ff"), ("Fine-tune", "ft")],
                                value="ff", label="Mode", elem_id="mode")
                steps = gr.Slider(limits.min_ft_steps, limits.max_ft_steps,
                                  value=min(100, limits.max_ft_steps), step=1,
                                  label="Fine-tuning steps")
                relative = gr.Checkbox(True, label="Relative motion (keep this face's shape; "
                                       "move it like the driver)")
                framing = gr.Radio([("Paste into the photo", "photo"),
                                    ("Face crop only", "crop")], value="photo", label="Output")
                label = gr.Checkbox(True, label="Visible 'SYNTHETIC' label")
                button = gr.Button("Animate", variant="primary", elem_id="animate")
            with gr.Column():
                output = gr.Video(label="Result (synthetic)", elem_id="result")
                notes = gr.Markdown(elem_id="notes")
        inputs = [photos, driving_source, preset, driving_video, mode, steps, relative, framing,
                  label]
        gr.Examples(
            examples=EXAMPLES, inputs=inputs, outputs=[output, notes], fn=animate,
            cache_examples=False,
            run_on_click=False, label="Examples (click one, then Animate)")
        photos.change(detect, photos, faces, api_name="detect", concurrency_id=HEAVY)
        # UI conveniences: choosing a driving input also selects it as the driving source.
        driving_video.upload(lambda _: "video", driving_video, driving_source,
                             api_visibility="private")
        preset.select(lambda: "preset", None, driving_source, api_visibility="private")
        button.click(animate, inputs, [output, notes], api_name="animate",
                     concurrency_id=HEAVY)

        def end_session(request: gr.Request):
            session_files.release(request.session_hash)

        demo.unload(end_session)  # the tab closed or the API client went away
    demo.session_files = session_files  # for tests and operators
    return demo


def serve(demo: gr.Blocks, limits: Limits, **launch_kwargs):
    """Queue and launch with the server limits: ``limits.concurrency`` requests at a time,
    ``limits.queue_size`` waiting (more get "queue is full"), uploads of at most
    ``limits.max_upload_mb``; no extra ``allowed_paths`` (only Gradio's own cache is served)."""
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    return demo.launch(max_file_size=f"{limits.max_upload_mb}mb", allowed_paths=[],
                       **launch_kwargs)


def main() -> None:
    limits = Limits.from_environment()
    animator = Animator.from_environment(limits=limits)  # Hub -> checkpoints -> untrained
    print(animator.weights_label, *animator.source.notes, limits.summary(), sep="\n",
          flush=True)
    serve(build_demo(animator), limits,
          server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))


if __name__ == "__main__":
    main()
