"""Photos + driving -> labelled mp4, on a tiny seeded model with real photos and clips."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from talking_heads import pipeline, video
from talking_heads.avatar import Avatar, NoFaceError
from talking_heads.landmarks import retarget

from conftest import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "examples" / "astronaut.jpg"
CLIP = "clips/sadtalker__WDA_KatieHill_000.mp4"  # train split, has audio


# `animator` (a seeded untrained tiny model) comes from conftest.py.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photo():
    return pipeline.load_photo(EXAMPLE)


def _short_preset(name: str = "talking", frames: int = 12) -> pipeline.Driving:
    driving = pipeline.driving_from_preset(name)
    return replace(driving, points=driving.points[:frames])


def test_preset_to_pasted_back_labelled_mp4(animator, photo, tmp_path):
    events = []
    result = animator.animate([photo], _short_preset(), tmp_path / "out.mp4",
                              progress=lambda f, m: events.append((f, m)))
    info = video.probe(result.path)
    assert (info.video_codec, info.pixel_format) == ("h264", "yuv420p")
    assert info.num_frames == result.frames == 12
    assert info.fps == pytest.approx(30.0)
    assert (info.width, info.height) == (photo.shape[1], photo.shape[0])  # the whole photo
    assert info.metadata["comment"] == video.SYNTHETIC_TAG
    assert "UNTRAINED" in result.weights_label and result.weights_label in result.notes
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] == 1.0
    stages = " ".join(m for _, m in events)
    for stage in ("detect", "adapt", "render", "encode"):
        assert stage in stages
    assert result.timings.total >= result.timings.render > 0


def test_a_preset_needs_no_detector_pass(animator, photo, tmp_path, monkeypatch):
    """Only the photo is searched for a face; a preset's motion is already landmarks."""
    calls = []
    inner = animator.detector

    class Counting:
        def __getattr__(self, name):  # name, etc. of the real detector
            return getattr(inner, name)

        def detect(self, image, near=None):
            calls.append(image.shape)
            return inner.detect(image, near=near)

    monkeypatch.setattr(animator, "detector", Counting())
    result = animator.animate([photo], _short_preset(frames=6), tmp_path / "p.mp4")
    assert result.frames == 6 and calls == [photo.shape]


def test_label_is_visible_and_can_be_turned_off(animator, photo, tmp_path):
    driving = _short_preset(frames=2)
    on = animator.animate([photo], driving, tmp_path / "on.mp4")
    off = animator.animate([photo], driving, tmp_path / "off.mp4",
                           pipeline.AnimateOptions(label=False))
    a, _ = video.read_video(on.path)
    b, _ = video.read_video(off.path)
    diff = np.abs(a[0].astype(int) - b[0].astype(int)).max(axis=-1)  # (H, W)
    h, w = diff.shape
    ys, xs = np.nonzero(diff > 40)  # pixels the label changed
    assert len(ys) > 300, "no visible label"
    assert ys.min() > 0.8 * h and xs.max() < 0.5 * w, "the label belongs in the bottom-left"
    assert diff[: int(0.8 * h)].mean() < 2, "the label must not touch the rest of the frame"


def test_far_from_face_the_photo_is_unchanged(animator, photo, tmp_path):
    result = animator.animate([photo], _short_preset(frames=2), tmp_path / "p.mp4",
                              pipeline.AnimateOptions(label=False))
    frame, _ = video.read_video(result.path)
    # The face is in the upper middle of the astronaut photo; the right edge is far from it.
    edge = np.abs(frame[0, :200, -60:].astype(int) - photo[:200, -60:].astype(int)).mean()
    assert edge < 6, f"paste-back changed pixels far from the face ({edge:.1f})"


def test_crop_only_output_is_a_square_face_crop(animator, photo, tmp_path):
    result = animator.animate([photo], _short_preset(frames=3), tmp_path / "c.mp4",
                              pipeline.AnimateOptions(paste_back=False))
    info = video.probe(result.path)
    assert info.width == info.height == pipeline.MIN_CROP_OUTPUT


def test_relative_motion_keeps_the_source_face(animator, photo):
    avatar = Avatar.from_images([photo], animator.model, detector=animator.detector)
    driving = pipeline.driving_from_preset("talking")
    source = avatar.sources.crop_points[0]
    moved = pipeline.driving_landmarks(avatar, driving, relative=True)
    plain = pipeline.driving_landmarks(avatar, driving, relative=False)
    ref = retarget.closest_frame(source, plain)
    np.testing.assert_allclose(moved[ref], source, atol=1e-3)
    np.testing.assert_allclose(plain, driving.points * avatar.config.image_size - 0.5,
                               atol=1e-4)
    # The mouth still moves with the driver.
    gap = np.linalg.norm(moved[:, 62] - moved[:, 66], axis=-1)
    assert np.ptp(gap) > 0.02 * avatar.config.image_size


def test_photo_without_a_face_is_reported(animator, tmp_path):
    blank = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="photo 1"):
        animator.animate([blank], _short_preset(frames=2), tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="between 1 and 8"):
        animator.animate([], _short_preset(frames=2), tmp_path / "x.mp4")


def test_face_previews_show_landmarks(animator, photo):
    blank = np.zeros((100, 100, 3), np.uint8)
    previews = pipeline.preview_faces([photo, blank], animator.detector)
    assert previews[0].found and not previews[1].found
    assert "no face" in previews[1].caption
    assert not np.array_equal(previews[0].image, photo)  # something was drawn


def test_real_driving_clip_keeps_its_audio(animator, shared_data, tmp_path):
    photo = pipeline.load_photo(next((shared_data / "photos" / "johns").rglob("*.jpg")))
    driving = pipeline.driving_from_video(shared_data / CLIP, animator.detector, max_seconds=1.0)
    assert driving.points.shape == (25, 68, 2) and driving.fps == 25.0
    assert 0 < driving.points.min() and driving.points.max() < 1
    assert any("cut to its first 1 s" in note for note in driving.notes)
    result = animator.animate([photo], driving, tmp_path / "v.mp4")
    info = video.probe(result.path)
    assert info.audio_codec == "aac" and info.num_frames == 25
    audio = video.read_audio(result.path)
    assert audio.duration == pytest.approx(1.0, abs=0.1) and np.abs(audio.samples).max() > 0.01


def test_several_photos_and_a_warning_for_someone_else(animator, photos_dir, tmp_path):
    same = [pipeline.load_photo(p) for p in sorted((photos_dir / "John_Salley").glob("*"))[:3]]
    result = animator.animate(same, _short_preset(frames=2), tmp_path / "m.mp4")
    assert result.frames == 2
    assert not any("different person" in note for note in result.notes)
    other = pipeline.load_photo(sorted((photos_dir / "John_Simm").glob("*"))[0])
    result = animator.animate(same[:2] + [other], _short_preset(frames=2), tmp_path / "d.mp4")
    assert any("photo 3 may show a different person" in note for note in result.notes)


def test_fine_tuning_mode_runs(animator, photo, tmp_path, monkeypatch):
    """FT really fine-tunes: an "ft" avatar after the asked-for steps, rendering other pixels
    than the FF avatar of the same photo (a silent fallback to FF would render the same)."""
    import torch

    avatars = []
    original = Avatar.from_images.__func__

    def spy(cls, *args, **kwargs):
        avatars.append(original(cls, *args, **kwargs))
        return avatars[-1]

    monkeypatch.setattr(Avatar, "from_images", classmethod(spy))
    runs = {}
    for mode in ("ff", "ft"):
        runs[mode] = animator.animate([photo], _short_preset(frames=2), tmp_path / f"{mode}.mp4",
                                      pipeline.AnimateOptions(mode=mode, steps=2))
    ff, ft = avatars
    assert (ff.mode, ft.mode) == ("ff", "ft") and ft.info["steps"] == 2
    assert runs["ft"].frames == 2 and runs["ft"].timings.adapt > 0
    assert ft.generator is not animator.model.generator  # this person's copy of G
    _, y = ft.sources.tensors()
    points = torch.from_numpy(ft.sources.crop_points)
    difference = (ft.render(y, points) - ff.render(y, points)).abs().max().item()
    assert difference > 0


def test_cli_writes_a_video(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TALKING_HEADS_CHECKPOINT", "")
    out = tmp_path / "cli.mp4"
    code = pipeline.main(["--source", str(EXAMPLE), "--preset", "nodding", "--out", str(out),
                          "--max-seconds", "0.2", "--crop-only"])
    assert code == 0
    assert video.probe(out).num_frames == 5
    assert "wrote" in capsys.readouterr().out


def test_cli_driving_clip_progress_only_moves_forward(shared_data, tmp_path, capsys,
                                                     monkeypatch):
    """Analysing an uploaded clip and animating share one bar: it never jumps back."""
    monkeypatch.setenv("TALKING_HEADS_CHECKPOINT", "")
    out = tmp_path / "clip.mp4"
    code = pipeline.main(["--source", str(EXAMPLE), "--driving", str(shared_data / CLIP),
                          "--out", str(out), "--max-seconds", "0.6", "--crop-only"])
    assert code == 0
    fractions = [float(m.group(1)) for m in re.finditer(r"^\[ *([\d.]+)%\]",
                                                         capsys.readouterr().err, re.M)]
    assert len(fractions) > 4 and fractions == sorted(fractions) and fractions[-1] == 100.0
    assert any(f <= 100 * pipeline.DRIVING_SHARE for f in fractions[:2])


def test_cli_uses_the_server_limits_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TALKING_HEADS_CHECKPOINT", "")
    monkeypatch.setenv("TALKING_HEADS_MAX_FT_STEPS", "3")
    code = pipeline.main(["--source", str(EXAMPLE), "--preset", "nodding", "--out",
                          str(tmp_path / "x.mp4"), "--mode", "ft", "--steps", "5"])
    assert code == 1 and "steps (fine-tuning steps) must be a whole number from 1 to 3 (got 5)" \
        in capsys.readouterr().err


def test_cli_reports_a_missing_face(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.zeros((64, 64, 3), np.uint8))
    code = pipeline.main(["--source", str(blank), "--preset", "talking", "--out",
                          str(tmp_path / "x.mp4"), "--max-seconds", "0.1"])
    assert code == 1 and "no face" in capsys.readouterr().err


def test_footprint_paste_equals_full_paste_back(photo):
    """The fast paste-back changes exactly what align.paste_back changes."""
    from talking_heads.landmarks.align import crop_transform, paste_back
    from talking_heads.landmarks.detector import get_detector

    points = get_detector("dlib").detect(photo).points
    for size, photo_in in ((64, photo), (128, photo[40:300, 100:400])):
        shifted = points - ([100, 40] if photo_in is not photo else [0, 0])
        transform = crop_transform(shifted, size)
        crop = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
        expected = paste_back(photo_in, crop, transform)
        got = pipeline.paste_into_photo(photo_in, crop, transform)
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


PAINTINGS = ["mona_lisa.jpg", "girl_with_a_pearl_earring.jpg", "van_gogh_self_portrait.jpg"]


def test_example_paintings_have_one_usable_face(animator):
    """The Space's painted examples pass the same face checks as any upload."""
    from talking_heads.faces import check_faces

    photos = [pipeline.limit_side(pipeline.load_photo(PROJECT_ROOT / "examples" / name), 720)
              for name in PAINTINGS]
    detections, notes = check_faces(photos, animator.detector, animator.limits, PAINTINGS)
    assert notes == [] and all(d.num_faces == 1 for d in detections)


def test_a_painting_animates(animator, tmp_path):
    """The Mona Lisa is found, adapted and rendered pasted back: six frames of the painting
    whose face region is the model's, the rest as painted."""
    painting = pipeline.load_photo(PROJECT_ROOT / "examples" / "mona_lisa.jpg")
    result = animator.animate([painting], _short_preset("talking", frames=6), tmp_path / "m.mp4",
                              pipeline.AnimateOptions(label=False))
    frames, _ = video.read_video(result.path)
    assert len(frames) == 6 and frames[0].shape[:2] == (720, 720)  # downscaled to 720
    painted = pipeline.limit_side(painting, 720).astype(int)
    box = animator.detector.detect(pipeline.limit_side(painting, 720)).box
    x0, y0, x1, y1 = (int(v) for v in box)
    side = x1 - x0
    outside = np.ones(painted.shape[:2], bool)
    outside[max(0, y0 - side):y1 + side, max(0, x0 - side):x1 + side] = False
    change = np.abs(frames.astype(int) - painted[None]).mean(axis=(0, -1))  # (H, W)
    assert change[outside].mean() < 3, "paste-back changed the painting away from the face"


def test_a_missing_face_says_why(animator, tmp_path):
    """A photo the detector cannot use gets a reason a visitor can act on."""
    flat = np.full((400, 300, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match="trained on photographs.*both eyes visible"):
        animator.animate([flat], _short_preset(frames=2), tmp_path / "x.mp4", names=["p.png"])


def test_a_kept_avatar_drives_again_without_detection(animator, photo, tmp_path, monkeypatch):
    """adapt once, drive twice: the second motion detects nothing and adapts nothing."""
    adapted = animator.adapt([photo], "ff")
    calls = []
    inner = animator.detector

    class Counting:
        name = inner.name

        def detect(self, image, near=None):
            calls.append(image.shape)
            return inner.detect(image, near=near)

    monkeypatch.setattr(animator, "detector", Counting())
    first = animator.drive(adapted.avatar, _short_preset("talking", 3), tmp_path / "a.mp4")
    second = animator.drive(adapted.avatar, _short_preset("nodding", 3), tmp_path / "b.mp4",
                            notes=["avatar reused"])
    assert calls == [] and first.frames == second.frames == 3
    assert (second.timings.detect, second.timings.adapt) == (0.0, 0.0)
    assert "avatar reused" in second.notes


def test_side_by_side_shows_the_driving_clip(animator, photo, shared_data, tmp_path):
    driving = pipeline.driving_from_video(shared_data / CLIP, animator.detector, max_seconds=0.4)
    options = pipeline.AnimateOptions(paste_back=False, label=False, layout="side_by_side")
    result = animator.animate([photo], driving, tmp_path / "sbs.mp4", options)
    frames, _ = video.read_video(result.path)
    clip = next(video.iter_frames(shared_data / CLIP, max_frames=1, max_side=640))
    width = round(clip.shape[1] * 256 / clip.shape[0])
    assert frames.shape[1:3] == (256, width + 256)
    left = pipeline.side_by_side(clip, np.zeros((256, 256, 3), np.uint8))[:, :width]
    assert np.abs(frames[0, :, :width].astype(int) - left.astype(int)).mean() < 8


def test_cli_saves_an_avatar_and_drives_it_again(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TALKING_HEADS_CHECKPOINT", "")
    avatar = tmp_path / "me.avatar.safetensors"
    code = pipeline.main(["--source", str(EXAMPLE), "--preset", "nodding", "--out",
                          str(tmp_path / "a.mp4"), "--max-seconds", "0.2", "--crop-only",
                          "--save-avatar", str(avatar)])
    assert code == 0 and avatar.is_file()
    capsys.readouterr()
    code = pipeline.main(["--avatar", str(avatar), "--preset", "talking", "--out",
                          str(tmp_path / "b.mp4"), "--max-seconds", "0.2", "--crop-only",
                          "--side-by-side"])
    err = capsys.readouterr().err
    assert code == 0 and "avatar file me.avatar.safetensors (ff)" in err
    info = video.probe(tmp_path / "b.mp4")
    assert info.num_frames == 6 and info.width == 2 * info.height  # drawing | crop
