"""Video I/O: browser-playable H.264 mp4 with AAC audio and the synthetic tag."""

from __future__ import annotations

import av
import numpy as np
import pytest

from talking_heads import video

CLIP_WITH_AUDIO = "clips/sadtalker__WDA_KatieHill_000.mp4"


def _gradient_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        frame = np.stack([(xs * 255 // width + 8 * t) % 256, ys * 255 // height,
                          np.full_like(xs, 128)], axis=-1)
        frames.append(frame.astype(np.uint8))
    return frames


def test_mp4_is_h264_yuv420p_faststart_and_tagged(tmp_path):
    out = tmp_path / "odd.mp4"
    frames = _gradient_frames(12, 101, 75)  # odd sides must still encode
    video.write_mp4(out, frames, fps=25)
    info = video.probe(out)
    assert info.video_codec == "h264"
    assert info.pixel_format == "yuv420p"
    assert (info.width, info.height) == (74, 100)
    assert info.num_frames == 12
    assert info.audio_codec is None
    assert info.metadata["comment"] == video.SYNTHETIC_TAG
    head = out.read_bytes()[:64]
    assert head.index(b"moov") < 64, "moov atom must precede the media data (+faststart)"


def test_frames_round_trip_close_to_input(tmp_path):
    frames = _gradient_frames(10, 64, 96)
    out = video.write_mp4(tmp_path / "g.mp4", frames, fps=30)
    decoded, fps = video.read_video(out)
    assert decoded.shape == (10, 64, 96, 3)
    assert fps == pytest.approx(30.0)
    error = np.abs(decoded.astype(np.int16) - np.stack(frames).astype(np.int16)).mean()
    assert error < 4.0, f"mean abs error {error:.2f} grey levels"


def test_frame_size_must_not_change(tmp_path):
    with pytest.raises(ValueError, match="differs"):
        video.write_mp4(tmp_path / "x.mp4", [np.zeros((32, 32, 3), np.uint8),
                                             np.zeros((34, 32, 3), np.uint8)], fps=25)
    assert not (tmp_path / "x.mp4").exists(), "a failed write must not leave a broken file"


def test_no_frames_leaves_no_file(tmp_path):
    out = tmp_path / "empty.mp4"
    with pytest.raises(ValueError, match="no frames were written"):
        with video.Mp4Writer(out, fps=25):
            pass
    assert not out.exists()


def test_a_failure_while_muxing_audio_leaves_no_file(tmp_path, monkeypatch):
    """The frames were all written and the body ended normally; finishing the file failed."""
    def broken_encoder(self):
        raise av.error.FFmpegError(-22, "aac encoder failed")  # -22: EINVAL

    monkeypatch.setattr(video.Mp4Writer, "_mux_audio", broken_encoder)
    out = tmp_path / "a.mp4"
    tone = video.AudioTrack(np.full((2, 16000), 0.1, np.float32), 16000)
    with pytest.raises(av.error.FFmpegError, match="aac encoder failed"):
        video.write_mp4(out, _gradient_frames(5, 32, 32), fps=25, audio=tone)
    assert not out.exists()


def test_real_clip_audio_is_kept_and_trimmed(shared_data, tmp_path):
    source = shared_data / CLIP_WITH_AUDIO
    frames, fps = video.read_video(source, max_frames=50, max_side=128)
    assert frames.shape[0] == 50 and max(frames.shape[1:3]) == 128
    audio = video.read_audio(source)
    assert audio is not None and audio.duration > 5.0
    # The original audio is not silent, and neither is the copy.
    assert np.abs(audio.samples).max() > 0.01
    out = video.write_mp4(tmp_path / "a.mp4", frames, fps=fps, audio=audio)
    info = video.probe(out)
    assert info.audio_codec == "aac"
    copy = video.read_audio(out)
    assert copy.duration == pytest.approx(50 / fps, abs=0.1)  # trimmed to the video
    assert np.abs(copy.samples).max() > 0.01


def test_iter_frames_streams_and_limits(shared_data):
    source = shared_data / CLIP_WITH_AUDIO
    first = next(video.iter_frames(source))
    assert first.dtype == np.uint8 and first.ndim == 3
    assert sum(1 for _ in video.iter_frames(source, max_frames=7)) == 7
