"""Gradio Space entry point: the UI only; the work happens in ``talking_heads`` (``Animator``
for adapting and rendering, ``live`` for the webcam, ``sessions`` for per-session keeping).

Public API (see README "Using the Space from Python"): ``/detect`` shows the face and
landmarks found in each photo, ``/adapt`` returns an avatar file, ``/animate`` renders a video
from photos or an avatar file. Within one session (a browser tab or one ``gradio_client``),
the adapted person is kept: another motion re-renders without detecting or adapting again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from talking_heads import compute_thread, presets  # noqa: E402
from talking_heads.gradio_adapter import Handlers  # noqa: E402
# The values the handlers check themselves (the field named in every message):
from talking_heads.gradio_fields import (CheckedDropdown, CheckedRadio,  # noqa: E402
                                         CheckedSlider)
from talking_heads.limits import Limits  # noqa: E402
from talking_heads.pipeline import Animator  # noqa: E402
from talking_heads.previews import write_previews  # noqa: E402
from talking_heads.sessions import SessionFiles  # noqa: E402, F401  (tests use app.SessionFiles)

PROJECT = Path(__file__).resolve().parent
EXAMPLES_DIR = PROJECT / "examples"
EXAMPLE_PHOTO = str(EXAMPLES_DIR / "astronaut.jpg")
EXAMPLE_PHOTOS = [str(EXAMPLES_DIR / name) for name in (
    "mona_lisa.jpg", "girl_with_a_pearl_earring.jpg", "van_gogh_self_portrait.jpg",
    "frederick_douglass.jpg", "astronaut.jpg")]
# Gradio gives each event its own concurrency group unless told otherwise, so /detect and
# /animate would each get ``limits.concurrency`` slots and run side by side. Every event that
# detects faces, adapts or renders (the live stream too) shares this group: heavy work gets
# one bounded budget in total.
HEAVY = "heavy"
LIVE_EVERY_S = 0.07     # the browser sends a webcam frame this often (at most ~14 fps)
LIVE_SECONDS = 60       # one live session's time limit; press Record again to continue
POLL_S = 0.5            # how often the page asks for the latest frame of a running render
# Gradio keeps each session's page state (about 75 kB here), closed or not, until this many
# newer sessions have come (its default, 10,000, is about 0.7 GB); the least recently used
# goes first. The heavy per-session objects are not in it (``Handlers.avatars``).
STATE_SESSIONS = 1000

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


def build_demo(animator: Animator, max_seconds: float | None = None) -> gr.Blocks:
    """The UI; ``animator.limits`` bound every request (``max_seconds`` may cut further)."""
    limits = animator.limits
    max_seconds = min(max_seconds or limits.max_driving_seconds, limits.max_driving_seconds)
    max_photos = limits.max_photos
    session_files = SessionFiles(get_upload_folder(), protected=EXAMPLE_PHOTOS)
    handlers = Handlers(animator, max_seconds, session_files, live_keep_s=LIVE_SECONDS * 2)
    descriptions = presets.preset_descriptions()
    previews = write_previews(tempfile.mkdtemp(prefix="talking-heads-previews-"))
    keep = limits.keep_files_s
    with gr.Blocks(title="Talking Heads", delete_cache=(max(1, min(60, keep // 2)), keep)) \
            as demo:
        gr.Markdown(INTRO)
        gr.Markdown(_weights_banner(animator), elem_id="weights-label")
        with gr.Accordion("Limits", open=False):
            gr.Markdown(limits.summary(), elem_id="limits")
        # The session's adapted person and live driver are kept by ``handlers`` (dropped
        # when the session ends); these States hold only their tokens.
        kept = gr.State(None, time_to_live=keep)
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
                        driving_source = CheckedRadio([("Preset motion", "preset"),
                                                   ("Uploaded video", "video")],
                                                  value="preset", label="Driving motion",
                                                  elem_id="driving-source")
                        with gr.Column(variant="compact") as preset_row:
                            with gr.Row(equal_height=True):
                                preset = CheckedDropdown([(f"{name}: {text}", name)
                                                      for name, text in descriptions.items()],
                                                     value="talking", label="Preset", scale=3,
                                                     min_width=160, elem_id="preset")
                                preview = gr.Image(str(previews["talking"]), label="Motion",
                                                   interactive=False, height=128, width=128,
                                                   scale=1, min_width=128, show_label=False,
                                                   buttons=[], elem_id="preset-preview")
                            motions = gr.Gallery([(str(path), name)
                                                  for name, path in previews.items()],
                                                 label="Every motion (click one to pick it)",
                                                 columns=len(previews), rows=1, height=120,
                                                 object_fit="contain", allow_preview=False,
                                                 buttons=[], elem_id="preset-motions")
                        driving_video = gr.Video(label="Driving video (its audio is kept; "
                                                 f"first {max_seconds:g} s)",
                                                 sources=["upload"], visible=False,
                                                 elem_id="driving-video")
                        mode = CheckedRadio([("Instant (feed-forward)", "ff"),
                                             ("Fine-tune", "ft")],
                                            value="ff", label="Mode", elem_id="mode")
                        steps = CheckedSlider(limits.min_ft_steps, limits.max_ft_steps,
                                              value=min(100, limits.max_ft_steps), step=1,
                                              label="Fine-tuning steps")
                        relative = gr.Checkbox(True, label="Relative motion (keep this face's "
                                               "shape; move it like the driver)")
                        framing = CheckedRadio([("Paste into the photo", "photo"),
                                                ("Face crop only", "crop")], value="photo",
                                               label="Output")
                        layout = CheckedRadio([("Result only", "result"),
                                               ("Side by side with the motion",
                                                "side_by_side")],
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
        preset.change(lambda name: str(previews.get(str(name), previews["talking"])), preset,
                      preview, api_visibility="private", queue=False, show_progress="hidden")
        names = list(previews)

        def pick_motion(event: gr.SelectData) -> str:
            return names[event.index]

        motions.select(pick_motion, None, preset, api_visibility="private", queue=False,
                       show_progress="hidden")
        driving_source.change(lambda source: (gr.update(visible=source != "video"),
                                              gr.update(visible=source == "video")),
                              driving_source, [preset_row, driving_video],
                              api_visibility="private", queue=False, show_progress="hidden")
        adapt_button.click(handlers.adapt, [photos, mode, steps, kept],
                           [avatar_out, notes, kept], api_name="adapt", concurrency_id=HEAVY)
        # While /animate runs, the page polls for the newest frame (clip analysis with its
        # landmarks, the instant preview during fine-tuning, then each rendered batch).
        button.click(handlers.start_polling, None, [timer, latest, seen],
                     api_visibility="private", queue=False, show_progress="hidden")
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
        demo.unload(handlers.end_session)  # the tab closed or the API client went away
    demo.session_files = session_files  # for tests and operators
    demo.handlers = handlers
    demo.animator = animator
    return demo


def serve(demo: gr.Blocks, limits: Limits, **launch_kwargs):
    """Queue and launch with the server limits: ``limits.concurrency`` requests at a time,
    ``limits.queue_size`` waiting (more get "queue is full"), uploads of at most
    ``limits.max_upload_mb``; no extra ``allowed_paths`` (only Gradio's own cache is served);
    the page state of at most ``STATE_SESSIONS`` sessions."""
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    return demo.launch(max_file_size=f"{limits.max_upload_mb}mb", allowed_paths=[],
                       state_session_capacity=STATE_SESSIONS, css=CSS, **launch_kwargs)


CSS = """
#preset-preview img { image-rendering: auto; border-radius: 6px; }
"""


def main() -> None:
    limits = Limits.from_environment()
    # Hub -> checkpoints -> untrained; loaded on the thread that will run every request's
    # model work, so that the main thread never starts a second OpenMP team (compute_thread).
    animator = compute_thread.run(Animator.from_environment, limits=limits)
    print(animator.weights_label, *animator.source.notes, limits.summary(), sep="\n",
          flush=True)
    serve(build_demo(animator), limits,
          server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))


if __name__ == "__main__":
    main()
