"""VGG perceptual distance for evaluation: Caffe VGG16 activations of x-hat vs x.

Distance = mean over relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 of the mean absolute
difference of activations (the VGG part of L_CNT, unweighted, on Caffe-preprocessed input),
computed on images resized to ``size`` pixels (``None``: as given, i.e. the model's
resolution). The same network is in the training loss, so this metric rewards what the model
optimised: read it next to the baselines, not as independent evidence (CSIM is independent).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from talking_heads.images import image_to_tensor


class VGGFeatures:
    """``features(uint8 (B, S, S, 3)) -> [five activation maps]`` under inference mode."""

    def __init__(self, size: int | None = None, device: str | torch.device = "cpu") -> None:
        from talking_heads.perceptual import VGG16Features

        self.net = VGG16Features.pretrained().to(device).eval()
        self.size = size
        self.device = torch.device(device)
        self.name = f"VGG16-Caffe relu1_1..relu5_1 mean L1 at {size or 'model'} px"

    def features(self, images: np.ndarray) -> list[torch.Tensor]:
        x = image_to_tensor(np.asarray(images)).to(self.device)  # (B, 3, S, S)
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        with torch.inference_mode():
            return self.net(x)


def load_vgg_features(size: int | None = None, device: str = "cpu") -> VGGFeatures:
    return VGGFeatures(size=size, device=device)
