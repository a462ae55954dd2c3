"""Live driving (one webcam frame at a time) and the preset motion previews."""

from __future__ import annotations

import numpy as np
import pytest

from talking_heads import video
from talking_heads.compositing import compose_frame
from talking_heads.faces import load_photo
from talking_heads.live import LiveDriver
from talking_heads.rendering import render_crops

from conftest import PROJECT_ROOT

CLIP = "clips/sadtalker__WDA_KatieHill_000.mp4"  # stands in for a webcam
PAINTING = PROJECT_ROOT / "examples" / "mona_lisa.jpg"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingDetector:
    """The real detector, remembering whether each call had a ``near`` box."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.near = inner, inner.name, []

    def detect(self, image, near=None):
        self.near.append(near is not None)
        return self.inner.detect(image, near=near)


@pytest.fixture(scope="module")
def avatar(animator):
    return animator.adapt([load_photo(PAINTING)], "ff").avatar


def test_webcam_frames_drive_the_avatar(animator, avatar, shared_data):
    frames = list(video.iter_frames(shared_data / CLIP, max_frames=8, max_side=640))
    detector = CountingDetector(animator.detector)
    driver = LiveDriver(avatar, detector)
    outputs = [driver.step(frame) for frame in frames]
    assert all(out.found for out in outputs) and driver.frames == len(frames)
    # Relative motion against the first frame: the first target is the avatar's own face,
    # so the first frame is exactly the avatar rendering its source landmarks.
    own = render_crops(avatar, avatar.sources.crop_points[:1])[0]
    np.testing.assert_array_equal(outputs[0].image,
                                  compose_frame(avatar, own, paste_back_=False))
    # Tracking: after the first frame the detector searches around the previous box.
    assert detector.near == [False] + [True] * (len(frames) - 1)
    # The face moves, so the frames differ.
    assert any(not np.array_equal(outputs[0].image, out.image) for out in outputs[1:])


def test_a_frame_without_a_face_keeps_the_last_picture(animator, avatar, shared_data):
    frame = next(video.iter_frames(shared_data / CLIP, max_frames=1, max_side=640))
    driver = LiveDriver(avatar, animator.detector)
    blank = np.zeros_like(frame)
    before = driver.step(blank)  # nothing seen yet: the avatar's own photo crop
    assert not before.found and not driver.started
    first = driver.step(frame)
    after = driver.step(blank)
    assert first.found and not after.found
    np.testing.assert_array_equal(after.image, first.image)


def test_motion_previews_are_small_looping_gifs(tmp_path):
    from PIL import Image

    from talking_heads import presets
    from talking_heads.previews import write_previews

    written = write_previews(tmp_path)
    assert set(written) == set(presets.preset_names())
    for name, path in written.items():
        with Image.open(path) as gif:
            assert gif.format == "GIF" and gif.info.get("loop") == 0 and gif.n_frames >= 20
            frames = []
            for index in (0, gif.n_frames // 2):
                gif.seek(index)
                frames.append(np.asarray(gif.convert("RGB")))
        assert path.stat().st_size < 80_000, name
        # A landmark drawing: coloured lines on black, and the motion changes it.
        assert np.median(frames[0]) == 0 and (frames[0].max(axis=-1) > 120).mean() > 0.01
        assert not np.array_equal(frames[0], frames[1]), name


def test_session_keeping_helpers(tmp_path):
    """Keys: same photo contents -> same person in any mode; the latest frame is handed out
    once per new frame."""
    from talking_heads.sessions import KeptAvatar, LatestFrames, photos_key, same_person

    a, b, a_copy = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "copy.jpg"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    a_copy.write_bytes(b"one")
    kept = KeptAvatar(photos_key([str(a)], "ft", 100), avatar=None, description="ft")
    assert photos_key([str(a_copy)], "ft", 100) == kept.key  # by content, not by name
    assert photos_key([str(a)], "ft", 50) != kept.key and photos_key([str(a)], "ff", 1) != \
        kept.key
    assert same_person(kept, [str(a_copy)], None) and not same_person(kept, [str(b)], None)
    assert not same_person(kept, [str(a), str(b)], None)
    frames = LatestFrames()
    assert frames.take("s", 0) == (0, None)
    frames.put("s", np.zeros((2, 2, 3), np.uint8))
    count, frame = frames.take("s", 0)
    assert count == 1 and frame is not None
    assert frames.take("s", count) == (1, None)  # nothing newer
    frames.clear("s")
    assert frames.take("s", 0) == (0, None)
