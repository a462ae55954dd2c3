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


# -- the downloadable avatar file (one safetensors file, JSON in its metadata) --------------

def _retrained(model: TalkingHeadModel) -> TalkingHeadModel:
    """The same config with other weights (as after more training)."""
    other = TalkingHeadModel(model.config).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        for parameter in other.generator.projection.parameters():  # P
            parameter.add_(0.01)
    return other


def test_avatar_file_round_trip_ff_and_ft(model, photos, tmp_path, monkeypatch):
    """One file holds the whole person; loading it unpickles nothing and renders the same."""
    import pickle

    from safetensors import safe_open

    ff = Avatar.from_images(photos, model, mode="ff")
    torch.manual_seed(0)
    ft = Avatar.from_images(photos[:1], model, mode="ft", steps=2, config=FAST_FT)
    for avatar in (ff, ft):
        path = avatar.save_file(tmp_path / f"{avatar.mode}.avatar.safetensors")
        with safe_open(str(path), framework="pt") as stream:
            assert "talking_heads.avatar" in stream.metadata()

        def refuse(*args, **kwargs):
            raise AssertionError("an avatar file must never be unpickled")

        with monkeypatch.context() as patch:
            for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
                patch.setattr(module, name, refuse)
            loaded = Avatar.load_file(path, model)
        assert loaded.mode == avatar.mode and loaded.info == avatar.info
        assert loaded.weights_digest == avatar.weights_digest
        y = image_to_tensor(avatar.sources.landmark_images)
        torch.testing.assert_close(loaded.render(y), avatar.render(y))
        np.testing.assert_array_equal(loaded.sources.photos[0], avatar.sources.photos[0])


@pytest.fixture(scope="module")
def ff_file(model, photos, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("avatar_file")
    return Avatar.from_images(photos[:1], model, mode="ff").save_file(
        folder / "ff.avatar.safetensors")


def _rewrite(source: Path, target: Path, change) -> Path:
    """A copy of an avatar file with its tensors / metadata changed by ``change``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as stream:
        tensors = {k: stream.get_tensor(k) for k in stream.keys()}
        metadata = dict(stream.metadata())
    change(tensors, metadata)
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_avatar_file_problems_are_named(model, ff_file, tmp_path):
    import json

    from talking_heads.avatar_file import AvatarFileError

    text = tmp_path / "notes.avatar.safetensors"
    text.write_text("hello, not an avatar")
    cases = [(text, "not in safetensors format")]
    pickled = tmp_path / "pickled.avatar.safetensors"
    torch.save({"psi": torch.zeros(3)}, pickled)  # a torch pickle: refused, never unpickled
    cases.append((pickled, "not in safetensors format"))
    cases.append((_rewrite(ff_file, tmp_path / "plain.safetensors",
                           lambda t, m: m.clear()), "not a talking-heads avatar"))
    cases.append((_rewrite(ff_file, tmp_path / "names.safetensors",
                           lambda t, m: t.update(extra=t.pop("psi"))),
                  r"wrong tensors \(missing psi; unexpected extra\)"))
    cases.append((_rewrite(ff_file, tmp_path / "shape.safetensors",
                           lambda t, m: t.update(psi=t["psi"][:, :-1].contiguous())),
                  r"tensor psi .* expected F32 \(1, "))
    cases.append((_rewrite(ff_file, tmp_path / "nan.safetensors",
                           lambda t, m: t["embedding"].fill_(float("nan"))), "NaN"))

    def other_config(tensors, metadata):
        meta = json.loads(metadata["talking_heads.avatar"])
        meta["model"] = ModelConfig.cpu().to_dict()
        metadata["talking_heads.avatar"] = json.dumps(meta)

    cases.append((_rewrite(ff_file, tmp_path / "config.safetensors", other_config),
                  "made for the model 'cpu'"))
    for path, message in cases:
        with pytest.raises(AvatarFileError, match=message):
            Avatar.load_file(path, model)
    with pytest.raises(AvatarFileError, match="at most 0 MB"):
        Avatar.load_file(ff_file, model, max_bytes=1000)


def test_avatar_made_with_other_weights_is_refused(model, photos, ff_file, tmp_path):
    """An FF avatar's psi-hat came from the old E and P: other weights of the same config
    would render garbage, so both the file and the folder format refuse them."""
    from talking_heads.avatar_file import AvatarFileError

    retrained = _retrained(model)
    with pytest.raises(AvatarFileError, match="made with other weights"):
        Avatar.load_file(ff_file, retrained)
    Avatar.from_images(photos[:1], model, mode="ff").save(tmp_path / "folder")
    with pytest.raises(ValueError, match="other weights"):
        Avatar.load(tmp_path / "folder", retrained)
    assert Avatar.load(tmp_path / "folder", model).mode == "ff"
