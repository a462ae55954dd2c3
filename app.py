"""Gradio Space entry point: the UI only; the work happens in ``talking_heads`` (``Animator``
for adapting and rendering, ``live`` for the webcam, ``sessions`` for per-session keeping).

Public API (see README "Using the Space from Python"): ``/detect`` shows the face and
landmarks found in each photo, ``/adapt`` returns an avatar file, ``/animate`` renders a video
from photos or an avatar file. Within one session (a browser tab or one ``gradio_client``),
the adapted person is kept: another motion re-renders without detecting or adapting again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
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
from talking_heads.live import LiveDriver  # noqa: E402
from talking_heads.options import DRIVING_SHARE, AnimateOptions, progress_span  # noqa: E402
from talking_heads.pipeline import (Animator, driving_from_preset,  # noqa: E402
                                    driving_from_video, preview_faces)
from talking_heads.previews import write_previews  # noqa: E402
from talking_heads.rendering import first_frame  # noqa: E402
from talking_heads.sessions import (KeptAvatar, LatestFrames, SessionFiles,  # noqa: E402, F401
                                    describe, file_key, photos_key, same_person)

PROJECT = Path(__file__).resolve().parent
EXAMPLES_DIR = PROJECT / "examples"
EXAMPLE_PHOTO = str(EXAMPLES_DIR / "astronaut.jpg")
EXAMPLE_PHOTOS = [str(EXAMPLES_DIR / name) for name in (
    "mona_lisa.jpg", "girl_with_a_pearl_earring.jpg", "van_gogh_self_portrait.jpg",
    "frederick_douglass.jpg", "astronaut.jpg")]
WORK_PREFIX = "talking-heads-request-"  # one temporary folder per request, removed after it
WORK_ROOT: str | None = None  # where those folders go (None: the system's temporary folder)
# Gradio gives each event its own concurrency group unless told otherwise, so /detect and
# /animate would each get ``limits.concurrency`` slots and run side by side. Every event that
# detects faces, adapts or renders (the live stream too) shares this group: heavy work gets
# one bounded budget in total.
HEAVY = "heavy"
LIVE_EVERY_S = 0.07     # the browser sends a webcam frame this often (at most ~14 fps)
LIVE_SECONDS = 60       # one live session's time limit; press Record again to continue
POLL_S = 0.5            # how often the page asks for the latest frame of a running render

# Example rows (photos, driving, preset, video, mode, steps, relative, framing, label), shown
# as a gallery whose click fills the inputs; tests/test_app.py runs each through /animate.
EXAMPLES = [
    [[EXAMPLE_PHOTOS[0]], "preset", "talking", None, "ff", 100, True, "photo", True],
    [[EXAMPLE_PHOTOS[1]], "preset", "smiling", None, "ff", 100, True, "photo", True],
    [[EXAMPLE_PHOTOS[2]], "preset", "turning", None, "ff", 100, True, "crop", True],
    [[EXAMPLE_PHOTOS[3]], "preset", "nodding", None, "ft", 20, True, "photo", True],
    [[EXAMPLE_PHOTO], "preset", "expressions", None, "ff", 100, True, "photo", True],
]

INTRO = """# Talking Heads
Few-shot talking-head videos after Zakharov et al., *Few-Shot Adversarial Learning of Realistic
Neural Talking Head Models* (ICCV 2019). Upload 1-8 photos of **one** person (or a painting),
choose a motion and press **Animate**; the adapted person is kept, so other motions render
straight away, and the **Live** tab lets your webcam drive it. Every video is synthetic: it
carries a visible label (unless you turn it off) and a metadata tag.
"""


def _example_caption(row: list) -> str:
    name = Path(row[0][0]).stem.replace("_", " ")
    return f"{name}: {row[2]}" + (f", fine-tuned {row[5]} steps" if row[4] == "ft" else "")


def _use_example(event: gr.SelectData):
    """A click on an example fills the inputs with its row (the upload then shows the face)."""
    photos, *rest = EXAMPLES[event.index]
    return [photos, *rest]


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
    errors and when the client goes away). Results are copied into Gradio's cache before
    the folder goes; that copy and the uploads are deleted when the session ends
    (``SessionFiles``), and in any case after ``keep_files_s`` (``delete_cache``)."""
    folder = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=WORK_ROOT))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    session."""

    def __init__(self, animator: Animator, max_seconds: float, session_files: SessionFiles):
        self.animator, self.max_seconds = animator, max_seconds
        self.limits = animator.limits
        self.session_files = session_files
        self.frames = LatestFrames()

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
        paths = _paths(files)
        if not paths:
            raise gr.Error("Upload 1-8 photos of one person, or an avatar file.")
        key = photos_key(paths, mode, steps)
        if kept is not None and kept.key == key:
            return kept, [reused], None
        photos = _read_photos(files, self.limits)
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
    def detect(self, files, request: gr.Request):
        self.session_files.hold(request.session_hash, _paths(files))
        photos = _read_photos(files, self.limits) if _paths(files) else []
        previews = preview_faces([p.image for p in photos], self.animator.detector)
        return [(preview.image, f"{preview.caption} ({photo.name})")
                for photo, preview in zip(photos, previews)]

    @spaces.GPU(duration=120)
    def adapt(self, files, mode, steps, kept, request: gr.Request, progress=gr.Progress()):
        """Photos -> an avatar file (safetensors) to download and reuse."""
        session = request.session_hash
        self.session_files.hold(session, _paths(files))
        report = lambda fraction, message: progress(fraction, desc=message)  # noqa: E731
        with user_errors():
            kept, notes, adapted = self._person(files, None, mode, int(steps), kept, report,
                                                session)
            path = self._avatar_file(kept, session)
        notes += list(adapted.notes) if adapted else []
        return path, "\n".join(f"- {note}" for note in notes), kept

    @spaces.GPU(duration=120)
    def animate(self, files, driving_source, preset, driving_video, mode, steps, relative,
                framing, label, layout="result", avatar_file=None, kept=None,
                request: gr.Request = None, progress=gr.Progress()):
        # A generator: the code after ``yield`` runs once Gradio has taken the result, so
        # the request's folder is removed right after the answer is served.
        session = request.session_hash if request else None
        uploads = _paths(files) + [p for p in (driving_video, avatar_file) if p]
        self.session_files.hold(session, uploads)
        report = lambda fraction, message: progress(fraction, desc=message)  # noqa: E731
        show = lambda frame: self.frames.put(session, frame)  # noqa: E731
        with user_errors():
            options = AnimateOptions(mode=mode, steps=int(steps),
                                     relative_motion=bool(relative),
                                     paste_back=framing == "photo", label=bool(label),
                                     layout=layout or "result")
            start = 0.0
            if driving_source == "video":
                if not driving_video:
                    raise gr.Error("Upload a driving video, or choose a preset motion.")
                start = DRIVING_SHARE
                driving = driving_from_video(driving_video, self.animator.detector,
                                             self.max_seconds, progress_span(report, 0.0, start),
                                             self.limits, on_frame=show)
            else:
                if preset not in presets.preset_names():
                    raise gr.Error(f"Unknown preset {preset!r}.")
                driving = driving_from_preset(preset, self.max_seconds)
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
                yield served, _notes_markdown(result), kept

    def download(self, kept, request: gr.Request):
        """After /animate: offer the kept avatar as a file (private event)."""
        if kept is None:
            return gr.skip()
        with user_errors():
            return self._avatar_file(kept, request.session_hash)

    def latest_frame(self, seen, request: gr.Request):
        """Timer tick while rendering: the newest frame, if any (private event)."""
        count, frame = self.frames.take(request.session_hash, seen or 0)
        return (gr.skip(), seen) if frame is None else (frame, count)

    def live(self, frame, files, avatar_file, kept, driver, request: gr.Request):
        """One webcam frame -> one rendered frame (private streaming event)."""
        if frame is None:
            return gr.skip(), gr.skip(), driver, kept
        with user_errors():
            if driver is None:
                if kept is None and not avatar_file and not _paths(files):
                    raise gr.Error("First upload photos (or an avatar file) in the Video tab.")
                if not same_person(kept, _paths(files), avatar_file):
                    # The Video tab's avatar (FF or FT) when it is this person, else an
                    # instant one.
                    kept, _, _ = self._person(files, avatar_file, "ff", 0, None, None,
                                              request.session_hash)
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
        return out.image, status, driver, kept


def build_demo(animator: Animator, max_seconds: float | None = None) -> gr.Blocks:
    """The UI; ``animator.limits`` bound every request (``max_seconds`` may cut further)."""
    limits = animator.limits
    max_seconds = min(max_seconds or limits.max_driving_seconds, limits.max_driving_seconds)
    max_photos = limits.max_photos
    session_files = SessionFiles(get_upload_folder(), protected=EXAMPLE_PHOTOS)
    handlers = Handlers(animator, max_seconds, session_files)
    descriptions = presets.preset_descriptions()
    previews = write_previews(tempfile.mkdtemp(prefix="talking-heads-previews-"))
    keep = limits.keep_files_s
    with gr.Blocks(title="Talking Heads", delete_cache=(max(1, min(60, keep // 2)), keep)) \
            as demo:
        gr.Markdown(INTRO)
        gr.Markdown(_weights_banner(animator), elem_id="weights-label")
        with gr.Accordion("Limits", open=False):
            gr.Markdown(limits.summary(), elem_id="limits")
        kept = gr.State(None, time_to_live=keep)   # the session's adapted person
        with gr.Tabs():
            with gr.Tab("Video", id="video", elem_id="tab-video"):
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=320):
                        photos = gr.File(label=f"Photos of one person (1-{max_photos})",
                                         file_count="multiple", file_types=["image"],
                                         elem_id="photos")
                        faces = gr.Gallery(label="Detected face and landmarks", columns=4,
                                           height=180, elem_id="faces")
                        with gr.Accordion("Reuse an avatar file instead of photos",
                                          open=False):
                            avatar_in = gr.File(label="Avatar file (.safetensors, from "
                                                "Adapt or a previous render)",
                                                file_types=[".safetensors"],
                                                elem_id="avatar-in")
                        driving_source = gr.Radio([("Preset motion", "preset"),
                                                   ("Uploaded video", "video")],
                                                  value="preset", label="Driving motion",
                                                  elem_id="driving-source")
                        with gr.Row(equal_height=True) as preset_row:
                            preset = gr.Dropdown([(f"{name}: {text}", name)
                                                  for name, text in descriptions.items()],
                                                 value="talking", label="Preset", scale=3,
                                                 min_width=160, elem_id="preset")
                            preview = gr.Image(str(previews["talking"]), label="Motion",
                                               interactive=False, height=128, width=128,
                                               scale=1, min_width=128, show_label=False,
                                               buttons=[], elem_id="preset-preview")
                        driving_video = gr.Video(label="Driving video (its audio is kept; "
                                                 f"first {max_seconds:g} s)",
                                                 sources=["upload"], visible=False,
                                                 elem_id="driving-video")
                        mode = gr.Radio([("Instant (feed-forward)", "ff"), ("Fine-tune", "ft")],
                                        value="ff", label="Mode", elem_id="mode")
                        steps = gr.Slider(limits.min_ft_steps, limits.max_ft_steps,
                                          value=min(100, limits.max_ft_steps), step=1,
                                          label="Fine-tuning steps")
                        relative = gr.Checkbox(True, label="Relative motion (keep this face's "
                                               "shape; move it like the driver)")
                        framing = gr.Radio([("Paste into the photo", "photo"),
                                            ("Face crop only", "crop")], value="photo",
                                           label="Output")
                        layout = gr.Radio([("Result only", "result"),
                                           ("Side by side with the motion", "side_by_side")],
                                          value="result", label="Layout", elem_id="layout")
                        label = gr.Checkbox(True, label="Visible 'SYNTHETIC' label")
                        with gr.Row():
                            adapt_button = gr.Button("Adapt only (avatar file)",
                                                     elem_id="adapt")
                            button = gr.Button("Animate", variant="primary", elem_id="animate")
                    with gr.Column(min_width=320):
                        latest = gr.Image(label="Rendering… (latest frame)", visible=False,
                                          interactive=False, format="jpeg", height=320,
                                          elem_id="progress-frame")
                        output = gr.Video(label="Result (synthetic)", elem_id="result")
                        notes = gr.Markdown(elem_id="notes")
                        avatar_out = gr.File(label="Avatar file (download to reuse: drive it "
                                             "again here, or from Python)", interactive=False,
                                             height=90, elem_id="avatar-out")
                inputs = [photos, driving_source, preset, driving_video, mode, steps, relative,
                          framing, label]
                examples = gr.Gallery([(row[0][0], _example_caption(row)) for row in EXAMPLES],
                                      label="Examples: public-domain paintings and photos "
                                      "(click one, then Animate)", columns=5, rows=1,
                                      height=200, object_fit="cover", allow_preview=False,
                                      elem_id="examples")
            with gr.Tab("Live", id="live", elem_id="tab-live"):
                gr.Markdown(f"Your webcam drives the person from the **Video** tab (the kept "
                            f"avatar, or an instant one from the photos). The first frame with "
                            f"a face is the reference: hold still, then move. Each run stops "
                            f"after {LIVE_SECONDS} s; press record again to continue.")
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        webcam = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                                          label="Webcam", elem_id="webcam")
                    with gr.Column(min_width=300):
                        live_out = gr.Image(label="Live result (synthetic)", format="jpeg",
                                            interactive=False, elem_id="live-result")
                        live_notes = gr.Markdown(elem_id="live-notes")
                        reset = gr.Button("New reference frame", elem_id="live-reset")
        driver = gr.State(None, time_to_live=LIVE_SECONDS * 2)
        seen = gr.State(0)
        timer = gr.Timer(POLL_S, active=False)

        photos.change(handlers.detect, photos, faces, api_name="detect", concurrency_id=HEAVY)
        examples.select(_use_example, None, inputs, api_visibility="private", queue=False,
                        show_progress="hidden")
        preset.change(lambda name: str(previews.get(name, previews["talking"])), preset,
                      preview, api_visibility="private", queue=False, show_progress="hidden")
        driving_source.change(lambda source: (gr.update(visible=source != "video"),
                                              gr.update(visible=source == "video")),
                              driving_source, [preset_row, driving_video],
                              api_visibility="private", queue=False, show_progress="hidden")
        adapt_button.click(handlers.adapt, [photos, mode, steps, kept],
                           [avatar_out, notes, kept], api_name="adapt", concurrency_id=HEAVY)
        # While /animate runs, the page polls for the newest frame (clip analysis with its
        # landmarks, the instant preview during fine-tuning, then each rendered batch).
        button.click(lambda: (gr.Timer(active=True), gr.Image(visible=True, value=None), 0),
                     None, [timer, latest, seen], api_visibility="private", queue=False,
                     show_progress="hidden")
        timer.tick(handlers.latest_frame, seen, [latest, seen], api_visibility="private",
                   concurrency_limit=None, show_progress="hidden")
        rendered = button.click(handlers.animate, [*inputs, layout, avatar_in, kept],
                                [output, notes, kept], api_name="animate",
                                concurrency_id=HEAVY)
        rendered.then(lambda: (gr.Timer(active=False), gr.Image(visible=False)), None,
                      [timer, latest], api_visibility="private", queue=False,
                      show_progress="hidden")
        rendered.success(handlers.download, kept, avatar_out, api_visibility="private",
                         show_progress="hidden")
        webcam.stream(handlers.live, [webcam, photos, avatar_in, kept, driver],
                      [live_out, live_notes, driver, kept], stream_every=LIVE_EVERY_S,
                      time_limit=LIVE_SECONDS, concurrency_id=HEAVY, api_visibility="private",
                      show_progress="hidden")
        reset.click(lambda: None, None, driver, api_visibility="private", queue=False)
        # Another person or avatar file: the live driver must start again.
        for source in (photos, avatar_in):
            source.change(lambda: None, None, driver, api_visibility="private", queue=False)

        def end_session(request: gr.Request):
            session_files.release(request.session_hash)
            handlers.frames.clear(request.session_hash)

        demo.unload(end_session)  # the tab closed or the API client went away
    demo.session_files = session_files  # for tests and operators
    demo.animator = animator
    return demo


def serve(demo: gr.Blocks, limits: Limits, **launch_kwargs):
    """Queue and launch with the server limits: ``limits.concurrency`` requests at a time,
    ``limits.queue_size`` waiting (more get "queue is full"), uploads of at most
    ``limits.max_upload_mb``; no extra ``allowed_paths`` (only Gradio's own cache is served)."""
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    return demo.launch(max_file_size=f"{limits.max_upload_mb}mb", allowed_paths=[],
                       css=CSS, **launch_kwargs)


CSS = """
#preset-preview img { image-rendering: auto; border-radius: 6px; }
"""


def main() -> None:
    limits = Limits.from_environment()
    animator = Animator.from_environment(limits=limits)  # Hub -> checkpoints -> untrained
    print(animator.weights_label, *animator.source.notes, limits.summary(), sep="\n",
          flush=True)
    serve(build_demo(animator), limits,
          server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))


if __name__ == "__main__":
    main()
