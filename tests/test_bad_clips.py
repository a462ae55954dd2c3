"""Issue 8, driving clips: broken files, no audio, frames without a face, variable frame
rate, long and large clips, portrait and landscape (made from a real clip by the tests)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from talking_heads import pipeline, presets, video
from talking_heads.avatar import NoFaceError
from talking_heads.inputs import InputError, check_clip
from talking_heads.landmarks.detector import Detection
from talking_heads.limits import Limits

from conftest import PROJECT_ROOT

CLIP = "clips/sadtalker__WDA_KatieHill_000.mp4"  # 512x512, 25 fps, 8 s, AAC audio


# `animator` (a seeded untrained tiny model) comes from conftest.py.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(shared_data):
    return shared_data / CLIP


@pytest.fixture(scope="module")
def frames(clip) -> np.ndarray:
    return video.read_video(clip, max_frames=12)[0]  # (12, 512, 512, 3)


def _write(path, frames, times_ms=None, fps=25):
    """An H.264 mp4 without audio; ``times_ms`` sets each frame's pts (variable rate)."""
    times_ms = times_ms if times_ms is not None else [i * 1000 // fps for i in range(len(frames))]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, time in zip(frames, times_ms):
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            out.pts, out.time_base = time, Fraction(1, 1000)
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _animate(animator, driving, tmp_path):
    photo = pipeline.load_photo(PROJECT_ROOT / "examples" / "astronaut.jpg")
    return animator.animate([photo], driving, tmp_path / "out.mp4",
                            pipeline.AnimateOptions(paste_back=False))


def test_corrupt_and_non_video_files_get_a_message(animator, clip, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    data = clip.read_bytes()
    headless = tmp_path / "headless.mp4"
    headless.write_bytes(b"\0" * 4096 + data[4096:])  # the container header is destroyed
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w") as container:  # a valid file with audio and no video
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        silence = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp",
                                             layout="stereo")
        silence.sample_rate, silence.pts = 48000, 0
        for packet in [*stream.encode(silence), *stream.encode(None)]:
            container.mux(packet)
    for path, message in [(text, "is not a readable video"), (headless, "is not a readable"),
                          (sound, "has no video stream"),
                          (tmp_path / "gone.mp4", "was not found")]:
        with pytest.raises(InputError, match=f"the driving video \\({path.name}\\) "
                           f"({message})"):
            pipeline.driving_from_video(path, animator.detector)


def test_no_audio_gives_a_silent_video(animator, frames, tmp_path):
    silent = _write(tmp_path / "silent.mp4", frames[:6])
    driving = pipeline.driving_from_video(silent, animator.detector)
    assert driving.audio is None
    assert "the driving video has no audio: the result is silent" in driving.notes
    result = _animate(animator, driving, tmp_path)
    info = video.probe(result.path)
    assert info.audio_codec is None and info.num_frames == 6


def test_frames_without_a_face_are_interpolated_and_counted(animator, frames, tmp_path):
    damaged = frames.copy()
    damaged[3:6] = 0  # three black frames in the middle
    path = _write(tmp_path / "gaps.mp4", damaged)
    driving = pipeline.driving_from_video(path, animator.detector)
    assert len(driving.points) == 12 and np.isfinite(driving.points).all()
    assert any(note.startswith("3 of 12 driving frames had no face") for note in driving.notes)
    # The filled frames lie between their neighbours (held/interpolated, not zeros).
    assert np.abs(driving.points[4] - driving.points[2]).max() < 0.1
    black = _write(tmp_path / "black.mp4", np.zeros_like(frames[:4]))
    with pytest.raises(NoFaceError, match="no face found in the driving video"):
        pipeline.driving_from_video(black, animator.detector)


class _BrightnessMouth:
    """Stub detector: a fixed face whose mouth opens with the frame's brightness, so that the
    track says which moment of the clip each output frame shows."""

    name = "stub"

    def __init__(self):
        self.face = presets.load_preset("talking").points_in_crop(256)[0]  # (68, 2)

    def detect(self, image, near=None):
        points = self.face.copy()
        points[48:68, 1] += image.mean() / 10.0  # mouth moves down by brightness / 10 px
        return Detection(points.astype(np.float32), (40.0, 40.0, 216.0, 216.0), 1)


def test_variable_frame_rate_keeps_real_timing(tmp_path):
    # 8 frames 40 ms apart, then 4 frames 400 ms apart; brightness grows with the real time.
    times = [i * 40 for i in range(8)] + [280 + 400 * i for i in range(1, 5)]
    gray = [np.full((256, 256, 3), 20 + t // 10, np.uint8) for t in times]
    path = _write(tmp_path / "vfr.mp4", np.stack(gray), times_ms=times)
    driving = pipeline.driving_from_video(path, _BrightnessMouth(), max_seconds=20)
    assert any("variable frame rate" in note for note in driving.notes)
    assert len(driving.points) / driving.fps == pytest.approx(1.88 + 0.4, abs=2 / driving.fps)
    # Mouth height at output frame k must follow the brightness at real time k / fps.
    mouth = driving.points[:, 48:68, 1].mean(axis=1) * 256  # crop px
    seconds = np.arange(len(mouth)) / driving.fps
    expected = (20 + np.minimum(seconds, 1.88) * 100) / 10  # brightness at that time / 10
    slope = np.polyfit(expected, mouth, 1)[0]
    residual = mouth - np.polyval(np.polyfit(expected, mouth, 1), expected)
    assert slope > 0.3 and np.abs(residual).max() < 1.0, (slope, residual)


def test_long_and_large_clips_are_trimmed_with_a_notice(animator, clip, frames, tmp_path):
    limits = Limits(max_driving_seconds=2.0, max_driving_frames=30, driving_side=256)
    driving = pipeline.driving_from_video(clip, animator.detector, max_seconds=20,
                                          limits=limits)
    assert len(driving.points) == 30 and driving.fps == 25  # 30 frames < 2 s at 25 fps
    assert any("cut to its first 1.2 s (of 8.0 s" in note for note in driving.notes)
    assert any("512x512 analysed at 256x256" in note for note in driving.notes)
    assert driving.audio.duration == pytest.approx(1.2, abs=0.05)
    with pytest.raises(InputError, match=r"is 512x512; frames of at most 0.1 megapixels"):
        check_clip(clip, Limits(max_driving_pixels=100_000))
    fast = _write(tmp_path / "fast.mp4", frames, fps=60)  # 60 fps -> resampled to 30
    driving = pipeline.driving_from_video(fast, animator.detector)
    assert driving.fps == 30 and len(driving.points) == 6


@pytest.mark.parametrize("shape", ["portrait", "landscape"])
def test_portrait_and_landscape_clips(animator, frames, tmp_path, shape):
    if shape == "portrait":
        cut = frames[:6, :, 112:400]  # (6, 512, 288, 3): 9:16
    else:
        cut = np.pad(frames[:6], ((0, 0), (0, 0), (200, 200), (0, 0)))  # (6, 512, 912, 3)
    path = _write(tmp_path / f"{shape}.mp4", np.ascontiguousarray(cut))
    info = check_clip(path)
    assert (info.height > info.width) == (shape == "portrait")
    driving = pipeline.driving_from_video(path, animator.detector)
    assert len(driving.points) == 6 and not any("no face" in n for n in driving.notes)
    assert _animate(animator, driving, tmp_path).frames == 6


def test_a_clip_cut_short_says_it_is_damaged(animator, clip, tmp_path):
    """A file whose second half is missing decodes without an error up to the cut: the notes
    must blame the file, not the limits."""
    frames, _ = video.read_video(clip, max_frames=50)
    whole = video.write_mp4(tmp_path / "whole.mp4", frames, 25, comment="")  # index first
    data = Path(whole).read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[:len(data) // 2])
    driving = pipeline.driving_from_video(half, animator.detector)
    assert 0 < len(driving.points) < 50
    assert any(note.startswith("the driving video is damaged after") for note in driving.notes)
    assert not any("cut to its first" in note for note in driving.notes)
    intact = pipeline.driving_from_video(whole, animator.detector)
    assert len(intact.points) == 50 and not any("damaged" in n for n in intact.notes)
