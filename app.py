"""Gradio Space entry point: the UI only; the work happens in ``talking_heads.pipeline``.

Public API (see README "Using the Space from Python"): ``/animate`` renders a video, ``/detect``
shows the face and landmarks found in each photo.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import spaces  # noqa: E402  (a no-op decorator off ZeroGPU hardware)

from talking_heads import presets  # noqa: E402
from talking_heads.pipeline import (MAX_PHOTOS, AnimateOptions, Animator,  # noqa: E402
                                    driving_from_preset, driving_from_video, load_photo,
                                    preview_faces)

PROJECT = Path(__file__).resolve().parent
EXAMPLE_PHOTO = str(PROJECT / "examples" / "astronaut.jpg")
OUTPUT_DIR = Path(tempfile.gettempdir()) / "talking-heads-outputs"
OUTPUT_MAX_AGE_S = 3600
MAX_DRIVING_SECONDS = 20.0

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


def _read_photos(files) -> list:
    paths = _paths(files)
    if not paths:
        raise gr.Error("Upload at least one photo of a face.")
    if len(paths) > MAX_PHOTOS:
        raise gr.Error(f"Upload at most {MAX_PHOTOS} photos (got {len(paths)}).")
    try:
        return [load_photo(path) for path in paths]
    except ValueError as error:
        raise gr.Error(str(error)) from error


def _new_output_path() -> Path:
    """A fresh mp4 path; outputs older than an hour are removed."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_DIR.glob("*.mp4"):
        if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
            old.unlink(missing_ok=True)
    return OUTPUT_DIR / f"talking-head-{uuid.uuid4().hex[:12]}.mp4"


def _notes_markdown(result) -> str:
    t = result.timings
    lines = [f"- {note}" for note in result.notes]
    lines.append(f"- {result.frames} frames at {result.fps:g} fps; seconds: detect {t.detect:.1f}"
                 f", adapt {t.adapt:.1f}, render {t.render:.1f}, encode {t.encode:.1f}, "
                 f"total {t.total:.1f}")
    return "\n".join(lines)


def make_handlers(animator: Animator, max_seconds: float):
    """The event functions, bound to one loaded model; driving is cut to ``max_seconds``."""

    def detect(files):
        photos = _read_photos(files) if _paths(files) else []
        return [(p.image, p.caption) for p in preview_faces(photos, animator.detector)]

    @spaces.GPU(duration=120)
    def animate(files, driving_source, preset, driving_video, mode, steps, relative, framing,
                label, progress=gr.Progress()):
        photos = _read_photos(files)
        report = lambda fraction, message: progress(fraction, desc=message)  # noqa: E731
        options = AnimateOptions(mode=mode, steps=int(steps), relative_motion=bool(relative),
                                 paste_back=framing == "photo", label=bool(label))
        try:
            if driving_source == "video":
                if not driving_video:
                    raise gr.Error("Upload a driving video, or choose a preset motion.")
                driving = driving_from_video(driving_video, animator.detector, max_seconds,
                                             report)
            else:
                if preset not in presets.preset_names():
                    raise gr.Error(f"Unknown preset {preset!r}.")
                driving = driving_from_preset(preset, max_seconds)
            result = animator.animate(photos, driving, _new_output_path(), options, report)
        except (ValueError, OSError) as error:  # no face, unreadable video, bad option
            raise gr.Error(str(error)) from error
        return str(result.path), _notes_markdown(result)

    return detect, animate


def build_demo(animator: Animator, max_seconds: float = MAX_DRIVING_SECONDS) -> gr.Blocks:
    detect, animate = make_handlers(animator, max_seconds)
    descriptions = presets.preset_descriptions()
    with gr.Blocks(title="Talking Heads", delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) \
            as demo:
        gr.Markdown(INTRO)
        gr.Markdown(_weights_banner(animator), elem_id="weights-label")
        with gr.Row():
            with gr.Column():
                photos = gr.File(label=f"Photos of one person (1-{MAX_PHOTOS})",
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
                steps = gr.Slider(10, 300, value=100, step=10, label="Fine-tuning steps")
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
            examples=EXAMPLES, inputs=inputs, outputs=[output, notes], fn=animate, cache_examples=False,
            run_on_click=False, label="Examples (click one, then Animate)")
        photos.change(detect, photos, faces, api_name="detect")
        # UI conveniences: choosing a driving input also selects it as the driving source.
        driving_video.upload(lambda _: "video", driving_video, driving_source,
                             api_visibility="private")
        preset.select(lambda: "preset", None, driving_source, api_visibility="private")
        button.click(animate, inputs, [output, notes], api_name="animate")
    return demo


def main() -> None:
    animator = Animator.from_environment()  # Hub -> bundled checkpoints -> untrained
    print(animator.weights_label, *animator.source.notes, sep="\n", flush=True)
    demo = build_demo(animator)
    demo.queue(default_concurrency_limit=1, max_size=32).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), max_file_size="50mb")


if __name__ == "__main__":
    main()
