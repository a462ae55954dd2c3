"""Issue 8, photos: what a user sees for awkward or broken photos (real photos of the Johns,
re-encoded by the tests). Every message names the photo; every odd format is handled."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from talking_heads import pipeline
from talking_heads.avatar import NoFaceError
from talking_heads.inputs import InputError, read_photo, read_photos
from talking_heads.limits import Limits

from conftest import PROJECT_ROOT


# `animator` (a seeded untrained tiny model) comes from conftest.py.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def johns(photos_dir) -> dict[str, np.ndarray]:
    """The first photo of each John, uint8 RGB."""
    return {d.name: np.asarray(Image.open(sorted(d.glob("*.jpg"))[0]).convert("RGB"))
            for d in sorted(photos_dir.iterdir()) if d.is_dir()}


@pytest.fixture(scope="module")
def face(johns) -> np.ndarray:
    """A John photo upscaled to 300 px, so that its face is well above the 64 px minimum."""
    return cv2.resize(johns["John_Simm"], (300, 300), interpolation=cv2.INTER_CUBIC)


def _animate(animator, images, tmp_path, names=None):
    driving = pipeline.driving_from_preset("talking", max_seconds=0.1)
    return animator.animate(images, driving, tmp_path / "out.mp4", names=names)


def _save(image: np.ndarray, path, **kwargs):
    Image.fromarray(image).save(path, **kwargs)
    return path


def _close(a: np.ndarray, b: np.ndarray, tolerance: float = 12.0) -> bool:
    return a.shape == b.shape and np.abs(a.astype(float) - b.astype(float)).mean() < tolerance


def test_no_face_names_the_photo(animator, face, tmp_path):
    blank = np.full((200, 200, 3), 180, np.uint8)
    with pytest.raises(NoFaceError, match=r"no face found in photo 2 \(wall\.png\)"):
        _animate(animator, [face, blank], tmp_path, names=["me.jpg", "wall.png"])


def test_several_faces_use_the_largest_and_say_so(animator, johns, tmp_path):
    big = cv2.resize(johns["John_Simm"], (300, 300))
    small = np.zeros((300, 300, 3), np.uint8)
    small[75:225, 75:225] = johns["John_Savage"]
    group = np.concatenate([small, big], axis=1)  # (300, 600, 3): two people
    detection = animator.detector.detect(group)
    assert detection.num_faces == 2 and detection.box[0] >= 300  # the larger, right face
    result = _animate(animator, [group], tmp_path, names=["group.jpg"])
    assert "photo 1 (group.jpg): 2 faces, the largest is used" in result.notes


def test_tiny_face_is_refused_with_a_message(animator, johns, tmp_path):
    tiny = cv2.resize(johns["John_Simm"], (60, 60), interpolation=cv2.INTER_AREA)
    assert animator.detector.detect(tiny).found  # found, but too small to animate
    with pytest.raises(InputError, match=r"face in photo 1 \(tiny\.jpg\) is too small"):
        _animate(animator, [tiny], tmp_path, names=["tiny.jpg"])


def test_huge_photo_is_downscaled_with_bounded_memory(face, tmp_path):
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), cv2.resize(face[:, :, ::-1], (8000, 8000)),
                [cv2.IMWRITE_JPEG_QUALITY, 80])
    script = ("import resource, sys; from talking_heads.inputs import read_photo; "
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
              "p = read_photo(sys.argv[1]); "
              "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
              "print(p.image.shape[0], p.image.shape[1], (after - before) // 1024, p.notes[0])")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, check=True, cwd=PROJECT_ROOT).stdout.split(maxsplit=3)
    height, width, growth_mb = int(out[0]), int(out[1]), int(out[2])
    assert max(height, width) <= Limits().photo_decode_side
    # Decoding all 8000x8000 RGB pixels would take 192 MB; the JPEG decoder's 1/4 draft
    # keeps the peak far below that.
    assert growth_mb < 64, f"decoding grew the peak RSS by {growth_mb} MB"  # measured: 27
    assert "downscaled from 8000x8000" in out[3]


def test_photo_over_the_pixel_limit_is_refused_before_decoding(face, tmp_path):
    path = _save(cv2.resize(face, (2000, 1500)), tmp_path / "big.png")
    with pytest.raises(InputError, match=r"photo 1 \(big\.png\) is too large \(2000x1500"):
        read_photos([path], Limits(max_photo_pixels=1_000_000))


def test_exif_rotated_photo_is_turned_upright(animator, face, tmp_path):
    stored = np.ascontiguousarray(np.rot90(face[:, 20:], k=1))  # as a sideways camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = _save(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    photo = read_photo(path).image
    assert _close(photo, face[:, 20:])
    assert animator.detector.detect(photo).found
    assert not animator.detector.detect(stored).found  # sideways, no face would be found


@pytest.mark.parametrize("kind", ["gray", "rgba", "rgb16", "gray16", "cmyk", "palette"])
def test_unusual_pixel_formats_are_handled(animator, face, tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    expected = face
    if kind == "gray":
        Image.fromarray(face).convert("L").save(path)
        expected = np.repeat(np.asarray(Image.open(path))[:, :, None], 3, axis=2)
    elif kind == "rgba":
        rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
        rgba[:10, :10, 3] = 0  # a transparent corner shows white
        Image.fromarray(rgba).save(path)
        expected = face.copy()
        expected[:10, :10] = 255
    elif kind == "rgb16":
        cv2.imwrite(str(path), face[:, :, ::-1].astype(np.uint16) * 257)  # 48-bit PNG
    elif kind == "gray16":
        gray = np.asarray(Image.fromarray(face).convert("L"))
        cv2.imwrite(str(path), gray.astype(np.uint16) * 257)
        expected = np.repeat(gray[:, :, None], 3, axis=2)
    elif kind == "cmyk":
        path = tmp_path / "cmyk.jpg"
        Image.fromarray(face).convert("CMYK").save(path, quality=95)
    elif kind == "palette":
        Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    photo = read_photo(path).image
    assert photo.dtype == np.uint8 and _close(photo, expected), kind
    result = _animate(animator, [photo], tmp_path)
    assert result.frames > 0


def test_non_image_and_truncated_files_get_a_message(face, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    with pytest.raises(InputError, match=r"photo 1 \(notes\.jpg\) is not an image"):
        read_photos([text])
    whole = _save(face, tmp_path / "whole.jpg", quality=95).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match=r"photo 2 \(cut\.jpg\) is damaged or truncated"):
        read_photos([tmp_path / "whole.jpg", cut])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png\) is not an image"):
        read_photos([empty])


def test_different_people_warn_then_proceed(animator, johns, tmp_path):
    a = cv2.resize(johns["John_Simm"], (300, 300))
    b = cv2.resize(johns["John_Savage"], (300, 300))
    result = _animate(animator, [a, b], tmp_path)
    assert result.frames > 0
    assert any("photo 2 may show a different person than photo 1" in n for n in result.notes)


def test_photo_count_and_steps_are_limited_on_the_server(animator, face, tmp_path):
    with pytest.raises(InputError, match="at most 8 photos"):
        read_photos([tmp_path / "x.jpg"] * 9)
    driving = pipeline.driving_from_preset("talking", max_seconds=0.1)
    with pytest.raises(InputError, match=r"photos: Upload between 1 and 8 photos .*\(got 9\)"):
        animator.animate([face] * 9, driving, tmp_path / "out.mp4")
    options = pipeline.AnimateOptions(mode="ft", steps=900)
    with pytest.raises(InputError, match=r"steps \(fine-tuning steps\) must be a whole number "
                                         r"from 1 to 300 \(got 900\)"):
        animator.animate([face], driving, tmp_path / "out.mp4", options)


def test_animated_photo_uses_its_first_frame_and_says_so(face, tmp_path):
    path = tmp_path / "moving.gif"
    first, second = Image.fromarray(face), Image.fromarray(face[:, ::-1])
    first.save(path, save_all=True, append_images=[second], duration=100)
    photo = read_photo(path, index=2)
    assert photo.image.shape[:2] == face.shape[:2]
    assert "photo 2 (moving.gif) is animated (2 frames): its first frame is used" in photo.notes


def test_weak_texture_boxes_do_not_count_as_faces(animator):
    """dlib's HOG also fires weakly (score 0.1) on the example's spacesuit: not a second face."""
    photo = read_photo(PROJECT_ROOT / "examples" / "astronaut.jpg").image
    assert animator.detector.detect(photo).num_faces == 1
