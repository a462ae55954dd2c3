"""Issue 15, item 5: request values get messages that name the field and the allowed values;
a photo is decoded once per content, with bounded memory, and only by the expected decoders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from talking_heads import inputs
from talking_heads.inputs import (InputError, check_adapt_request, check_request, read_photo,
                                  read_photos)
from talking_heads.limits import Limits

LIMITS = Limits()
PRESETS = ["talking", "nodding"]


def _check(**values):
    request = dict(photos=1, mode="ff", steps=100, driving_source="preset", preset="talking",
                   framing="photo", preset_names=PRESETS)
    request.update(values)
    return check_request(LIMITS, **request)


@pytest.mark.parametrize("values, message", [
    ({"mode": "fast"}, "mode must be one of 'ff' (feed-forward), 'ft' (fine-tuning) "
                       "(got 'fast')"),
    ({"mode": None}, "mode must be one of 'ff' (feed-forward), 'ft' (fine-tuning) (got None)"),
    ({"mode": "ft", "steps": 900}, "steps (fine-tuning steps) must be a whole number from 1 "
                                   "to 300 (got 900)"),
    ({"mode": "ft", "steps": 0}, "steps (fine-tuning steps) must be a whole number from 1 to "
                                 "300 (got 0)"),
    ({"mode": "ft", "steps": 2.5}, "from 1 to 300 (got 2.5)"),
    ({"mode": "ft", "steps": None}, "from 1 to 300 (got None)"),
    ({"mode": "ft", "steps": True}, "from 1 to 300 (got True)"),
    ({"mode": "ft", "steps": "many"}, "from 1 to 300 (got 'many')"),
    ({"preset": "dance"}, "preset must be one of 'talking', 'nodding' (got 'dance')"),
    ({"preset": None}, "preset must be one of 'talking', 'nodding' (got None)"),
    ({"framing": "full"}, "framing must be one of 'photo' (pasted into the photo), 'crop' "
                          "(the face crop only) (got 'full')"),
    ({"driving_source": "webcam"}, "driving_source must be one of 'preset' (a preset motion), "
                                   "'video' (an uploaded driving video) (got 'webcam')"),
    ({"driving_source": "video"}, "driving_video: Upload a driving video, or choose a preset "
                                  "motion (driving_source 'preset')."),
    ({"photos": 0}, "photos: Upload between 1 and 8 photos of one person, or an avatar file "
                    "(got 0)."),
    ({"photos": 9}, "photos: Upload between 1 and 8 photos of one person (got 9)."),
])
def test_each_bad_value_is_named_with_what_is_allowed(values, message):
    with pytest.raises(InputError) as error:
        _check(**values)
    assert message in str(error.value)


def test_good_values_are_normalised():
    # Sliders send floats, raw HTTP callers may send text; FF ignores the steps entirely.
    assert _check(mode="ft", steps=20.0).steps == 20
    assert _check(mode="ft", steps=" 300 ").steps == 300
    assert _check(mode="ff", steps=None).steps == 0
    request = _check(driving_source="video", preset="dance", has_driving_video=True,
                     framing="crop", photos=8)
    assert (request.driving_source, request.preset, request.framing, request.photos) == \
        ("video", None, "crop", 8)


def test_the_limits_decide_the_ranges():
    limits = Limits(max_photos=2, min_ft_steps=5, max_ft_steps=50)
    with pytest.raises(InputError, match=r"from 5 to 50 \(got 60\)"):
        check_adapt_request(limits, photos=1, mode="ft", steps=60)
    with pytest.raises(InputError, match=r"between 1 and 2 photos of one person \(got 3\)"):
        check_adapt_request(limits, photos=3, mode="ff", steps=1)
    # The shipped presets by default.
    assert check_request(limits, photos=1, mode="ff", steps=1, driving_source="preset",
                         preset="talking", framing="photo").preset == "talking"


def test_an_avatar_file_stands_in_for_the_photos():
    assert check_request(LIMITS, photos=0, has_avatar_file=True, mode="ff", steps=None,
                         driving_source="preset", preset="talking", framing="crop").photos == 0
    assert check_adapt_request(LIMITS, photos=3, mode="ft", steps=5).steps == 5
    with pytest.raises(InputError, match="between 1 and 8 photos of one person, or an avatar"):
        check_adapt_request(LIMITS, photos=0, mode="ff", steps=1)


@pytest.fixture
def photo_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(path)
    return path


def test_the_same_photo_is_decoded_once(photo_file, tmp_path):
    """/detect then /animate read the same upload: the second read reuses the pixels."""
    inputs.PHOTO_CACHE.clear()
    copy = tmp_path / "renamed.png"
    copy.write_bytes(photo_file.read_bytes())
    before = inputs.PHOTO_CACHE.decodes
    first = read_photo(photo_file, index=1)
    second = read_photos([copy])[0]
    assert inputs.PHOTO_CACHE.decodes == before + 1
    np.testing.assert_array_equal(first.image, second.image)
    assert second.name == "renamed.png"
    first.image[:] = 0  # each caller owns its copy
    assert read_photo(photo_file).image.any()
    read_photo(photo_file, cache=False)
    assert inputs.PHOTO_CACHE.decodes == before + 2


def test_the_photo_cache_is_bounded(tmp_path):
    cache = inputs._PhotoCache(max_bytes=3 * 100 * 100 * 3)
    for index in range(5):
        cache.put((str(index),), inputs._Decoded(np.zeros((100, 100, 3), np.uint8), (100, 100),
                                                 1))
    assert [cache.get((str(i),)) is not None for i in range(5)] == [False, False, True, True,
                                                                    True]


def test_a_large_png_is_refused_from_its_header_when_it_would_not_fit(tmp_path):
    """PNG has no scaled decoding: one whose pixels would exceed max_photo_decode_mb is
    refused before decoding; a JPEG of the same size decodes at a draft scale and passes."""
    image = Image.fromarray(np.full((1200, 1000, 3), 128, np.uint8))
    image.save(tmp_path / "big.png")
    image.save(tmp_path / "big.jpg")
    limits = Limits(max_photo_decode_mb=4, photo_decode_side=256)  # 1000x1200x4 B = 4.6 MB
    with pytest.raises(InputError, match=r"photo 1 \(big\.png\) is too large to decode "
                       r"\(1000x1200 RGB pixels would take 5 MB; at most 4 MB\): send a JPEG"):
        read_photo(tmp_path / "big.png", index=1, limits=limits)
    assert max(read_photo(tmp_path / "big.jpg", limits=limits).image.shape) <= 256


def test_only_photo_formats_reach_a_decoder(tmp_path):
    """EPS would run Ghostscript, PSD and friends are large attack surfaces: refused."""
    eps = tmp_path / "face.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "face.tga")
    for path in (eps, tmp_path / "face.tga"):
        with pytest.raises(InputError, match="is not an image"):
            read_photo(path)


def test_exif_rotation_is_applied_after_downscaling(tmp_path):
    stored = np.zeros((400, 2400, 3), np.uint8)
    stored[:, :100] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the band ends on top
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    photo = read_photo(tmp_path / "phone.jpg", limits=Limits(photo_decode_side=600))
    assert photo.image.shape[:2] == (600, 100)
    assert photo.image[:10].mean() > 200 and photo.image[-10:].mean() < 50
