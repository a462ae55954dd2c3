"""Avatar: few-shot adaptation from real photos (FF and FT), rendering, save/load round trip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from talking_heads.avatar import Avatar, NoFaceError
from talking_heads.config import ModelConfig
from talking_heads.images import bgr_to_rgb, image_to_tensor
from talking_heads.models import ProjectionDiscriminator, TalkingHeadModel
from talking_heads.training.config import FinetuneConfig
from talking_heads.training.finetune import CONTENT_ONLY_NOTE

FAST_FT = FinetuneConfig(batch_size=2, content_face=False)


def _photos(photos_dir: Path, person: str, count: int) -> list[np.ndarray]:
    files = sorted((photos_dir / person).iterdir())[:count]
    return [bgr_to_rgb(cv2.imread(str(f), cv2.IMREAD_COLOR)) for f in files]


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    """The tiny nets gain nothing from threads, and lose a lot on a busy shared CPU (the
    autouse wrapper makes conftest's fixture apply before this module's other fixtures)."""


@pytest.fixture(scope="module")
def model() -> TalkingHeadModel:
    torch.manual_seed(0)
    return TalkingHeadModel(ModelConfig.tiny()).eval()


@pytest.fixture(scope="module")
def photos(photos_dir: Path) -> list[np.ndarray]:
    return _photos(photos_dir, "John_Salley", 2)


def test_ff_avatar_keeps_sources_and_renders(model, photos):
    messages = []
    avatar = Avatar.from_images(photos, model, mode="ff",
                                progress=lambda f, m: messages.append((f, m)))
    size = model.config.image_size
    assert avatar.mode == "ff"
    assert avatar.sources.crops.shape == (2, size, size, 3)
    assert avatar.sources.points.shape == (2, 68, 2)
    # The crop transform maps the detected points onto the stored crop points.
    mapped = avatar.sources.transforms[0].points_to_crop(avatar.sources.points[0])
    np.testing.assert_allclose(mapped, avatar.sources.crop_points[0], atol=1e-3)
    # Landmarks of a real face land inside the crop.
    assert (avatar.sources.crop_points >= 0).all() and (avatar.sources.crop_points < size).all()
    y = image_to_tensor(avatar.sources.landmark_images)
    out = avatar.render(y)
    assert out.shape == (2, 3, size, size) and torch.isfinite(out).all()
    assert messages[0][0] == 0.0 and messages[-1][0] == 1.0
    # FF is psi-hat = P e_new with the shared G.
    torch.testing.assert_close(avatar.psi, model.generator.project(avatar.embedding))
    assert avatar.generator is model.generator


def test_ft_avatar_trains_a_private_copy_and_round_trips(model, photos, tmp_path):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    disc = ProjectionDiscriminator(model.config, num_videos=3)
    fractions = []
    avatar = Avatar.from_images(photos, model, mode="ft", steps=3, discriminator=disc,
                                config=FAST_FT, progress=lambda f, m: fractions.append(f))
    assert avatar.info["steps"] == 3 and not avatar.info["content_only"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # The shared model is untouched; the avatar's G differs from it.
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert avatar.generator is not model.generator
    y = image_to_tensor(avatar.sources.landmark_images)
    ff = Avatar.from_images(photos, model, mode="ff")
    assert (avatar.render(y) - ff.render(y)).abs().max() > 1e-4

    avatar.save(tmp_path / "avatar")
    names = sorted(p.name for p in (tmp_path / "avatar").iterdir())
    assert names == ["avatar.json", "avatar.safetensors", "photo_00.png", "photo_01.png"]
    loaded = Avatar.load(tmp_path / "avatar", model)
    assert loaded.mode == "ft" and loaded.info == avatar.info
    torch.testing.assert_close(loaded.render(y), avatar.render(y))
    np.testing.assert_array_equal(loaded.sources.crops, avatar.sources.crops)
    np.testing.assert_allclose(loaded.sources.transforms[1].matrix,
                               avatar.sources.transforms[1].matrix)


def test_ft_without_discriminator_falls_back_to_content_loss(model, photos):
    messages = []
    avatar = Avatar.from_images(photos[:1], model, mode="ft", steps=2, config=FAST_FT,
                                progress=lambda f, m: messages.append(m))
    assert avatar.info["content_only"] is True
    assert CONTENT_ONLY_NOTE in messages


def test_ff_round_trip_and_config_mismatch(model, photos, tmp_path):
    avatar = Avatar.from_images(photos[:1], model, mode="ff")
    avatar.save(tmp_path / "ff")
    loaded = Avatar.load(tmp_path / "ff", model)
    y = image_to_tensor(avatar.sources.landmark_images)
    torch.testing.assert_close(loaded.render(y), avatar.render(y))
    other = TalkingHeadModel(ModelConfig.cpu())
    with pytest.raises(ValueError, match="different model config"):
        Avatar.load(tmp_path / "ff", other)


def test_no_face_is_a_clear_error(model, photos):
    blank = np.full((200, 200, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="photo 2 of 2"):
        Avatar.from_images([photos[0], blank], model, mode="ff")
    with pytest.raises(ValueError, match="mode"):
        Avatar.from_images(photos, model, mode="fast")


def test_finetune_cli_writes_a_reusable_avatar(model, photos_dir, tmp_path):
    from talking_heads.training.checkpoint import export_weights
    from talking_heads.training.finetune import main

    torch.manual_seed(0)
    export_weights(tmp_path / "model", model, ProjectionDiscriminator(model.config, 4), {})
    images = sorted((photos_dir / "John_Savage").iterdir())[:2]
    code = main(["--model", str(tmp_path / "model"), "--images", *map(str, images),
                 "--out", str(tmp_path / "avatar"), "--mode", "ft", "--steps", "2"])
    assert code == 0
    avatar = Avatar.load(tmp_path / "avatar", model)
    assert avatar.mode == "ft" and avatar.info["steps"] == 2
    assert avatar.info["content_only"] is False  # discriminator.safetensors was found and used
