"""The one place where pixel conventions are converted.

Conventions used everywhere else in the project:

- *image*: ``numpy.ndarray`` uint8, shape (H, W, 3), RGB order (never BGR outside this module
  and the OpenCV calls wrapped here).
- *tensor*: ``torch.Tensor`` float32, shape (3, H, W) or (B, 3, H, W), RGB, range [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any 2-D/3-D array (gray, RGB, RGBA, uint8/uint16/float in [0, 1]) -> uint8 (H, W, 3) RGB."""
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        # Composite transparency onto white, the way a browser shows an RGBA photo.
        rgb = array[:, :, :3].astype(np.float32)
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        array = (rgb * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an image of shape (H, W[, C]), got {np.asarray(image).shape}")
    return np.ascontiguousarray(array)


def bgr_to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """OpenCV's BGR uint8 -> RGB uint8."""
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def rgb_to_bgr(image_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> OpenCV's BGR uint8."""
    return np.ascontiguousarray(image_rgb[:, :, ::-1])


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (N, H, W, 3) -> float32 (3, H, W) or (N, 3, H, W) in [-1, 1]."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {array.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float().div_(127.5).sub_(1.0)
    return tensor.movedim(-1, -3).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float (3, H, W) or (N, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) or (N, H, W, 3)."""
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (N, 3, H, W), got {tuple(tensor.shape)}")
    pixels = tensor.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round()
    return pixels.to(torch.uint8).movedim(-3, -1).cpu().numpy()
