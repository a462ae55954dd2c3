import numpy as np
import torch

from talking_heads.images import image_to_tensor, tensor_to_image, to_rgb_uint8


def test_round_trip_is_exact():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(2, 8, 9, 3), dtype=np.uint8)
    tensor = image_to_tensor(image)
    assert tensor.shape == (2, 3, 8, 9)
    assert tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(tensor_to_image(tensor), image)


def test_formats_become_rgb_uint8():
    gray = np.full((4, 5), 200, np.uint8)
    assert to_rgb_uint8(gray).shape == (4, 5, 3)
    deep = np.full((4, 5, 3), 65535, np.uint16)
    assert to_rgb_uint8(deep).max() == 255
    rgba = np.zeros((4, 5, 4), np.uint8)  # fully transparent black -> white
    assert (to_rgb_uint8(rgba) == 255).all()
    assert tensor_to_image(torch.zeros(3, 2, 2)).dtype == np.uint8
