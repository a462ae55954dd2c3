"""Face crops: 68 landmarks -> a square crop at the model's resolution, and back.

The paper's VoxCeleb crops are loose, face-centred squares with room for hair and chin. Here
the crop is centred on the landmark bounding box, its side is ``extent_scale`` times the
larger side of that box, and it is moved up by ``shift_up`` of its side for the hair. The
transform is a similarity without rotation (scale + translation, no shear), so head roll stays
in the data as motion and a generated crop can be pasted back exactly.

Coordinates: pixel centres at integer (x, y), as in OpenCV and dlib. ``CropTransform.matrix``
maps image pixels to crop pixels: crop = matrix @ [x, y, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d


@dataclass(frozen=True)
class CropConfig:
    extent_scale: float = 1.7   # crop side / larger side of the landmark bounding box
    shift_up: float = 0.08      # centre moved up by this fraction of the side (hair room)


@dataclass(frozen=True, eq=False)
class CropTransform:
    """Image -> crop similarity. ``matrix``: float64 (2, 3); ``size``: crop side in pixels."""

    matrix: np.ndarray
    size: int

    @classmethod
    def from_center(cls, center: np.ndarray, side: float, size: int) -> "CropTransform":
        """Square of ``side`` image pixels centred at ``center`` (x, y) -> ``size`` pixels."""
        s = size / float(side)
        half = (size - 1) / 2.0
        cx, cy = float(center[0]), float(center[1])
        matrix = np.array([[s, 0.0, half - s * cx], [0.0, s, half - s * cy]], dtype=np.float64)
        return cls(matrix=matrix, size=int(size))

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (sqrt of the determinant: rotation-invariant)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def side(self) -> float:
        """Crop side measured in image pixels."""
        return self.size / self.scale

    @property
    def center(self) -> np.ndarray:
        """Image point (x, y) that lands on the crop centre."""
        half = (self.size - 1) / 2.0
        return self.points_to_image(np.array([[half, half]]))[0]

    def inverse_matrix(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.matrix)

    def points_to_crop(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) image pixels -> (N, 2) crop pixels, float32."""
        p = np.asarray(points, dtype=np.float64)
        return (p @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(np.float32)

    def points_to_image(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) crop pixels -> (N, 2) image pixels, float32."""
        inverse = self.inverse_matrix()
        p = np.asarray(points, dtype=np.float64)
        return (p @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)

    def warp_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) image -> uint8 (size, size, 3) crop.

        Large downscales are pre-filtered (area resize) so that 720p/1080p frames do not alias;
        outside the frame the border is replicated."""
        matrix = self.matrix
        scale = self.scale
        if scale < 0.5:
            # Only the crop's region of the frame is needed (2 px margin for interpolation);
            # cutting it out first keeps 1080p frames cheap.
            corners = self.points_to_image(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]) * self.size)
            x0, y0 = np.maximum(np.floor(corners.min(axis=0)) - 2, 0).astype(int)
            x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 3
            image = image[y0:y1, x0:x1]
            if image.size == 0:
                return np.zeros((self.size, self.size, 3), np.uint8)
            matrix = matrix @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
            # Resize by f first; cv2.resize maps x_small = (x + 0.5) * f - 0.5.
            f = min(1.0, 2.0 * scale)
            small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            fx = small.shape[1] / image.shape[1]
            fy = small.shape[0] / image.shape[0]
            to_small = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
            matrix = matrix @ np.linalg.inv(to_small)
            image = small
        return cv2.warpAffine(image, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)


def crop_transform(points: np.ndarray, size: int = 256,
                   config: CropConfig = CropConfig()) -> CropTransform:
    """68 landmarks (image pixels) -> the face's square crop at ``size`` pixels."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"expected (N, 2) points, got {p.shape}")
    low, high = p.min(axis=0), p.max(axis=0)
    side = config.extent_scale * float(max(high - low))
    center = (low + high) / 2.0
    center[1] -= config.shift_up * side
    return CropTransform.from_center(center, max(side, 1.0), size)


def shot_segments(transforms: list[CropTransform], max_jump: float = 0.2) -> list[slice]:
    """Split a crop track where it jumps (a cut, or a gap of skipped frames): more than
    ``max_jump`` of the side in position, or log(1 + max_jump) in scale, between neighbours."""
    if not transforms:
        return []
    centers = np.stack([t.center for t in transforms]).astype(np.float64)  # (T, 2)
    log_sides = np.log([t.side for t in transforms])  # (T,)
    move = np.linalg.norm(np.diff(centers, axis=0), axis=1) / np.exp(log_sides[1:])  # (T - 1,)
    zoom = np.abs(np.diff(log_sides))
    cuts = np.nonzero((move > max_jump) | (zoom > np.log1p(max_jump)))[0] + 1
    bounds = [0, *cuts.tolist(), len(transforms)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def smooth_transforms(transforms: list[CropTransform], sigma: float = 3.0,
                      max_jump: float = 0.2) -> list[CropTransform]:
    """Temporally stable crops for a video: zero-phase Gaussian smoothing (``sigma`` in frames)
    of each crop's centre and log side, so there is no lag and a still head gets a still crop.
    Shots are smoothed separately: a jump above ``max_jump`` (see ``shot_segments``) starts a
    new one, so a cut never blends two crops."""
    if len(transforms) < 2 or sigma <= 0:
        return list(transforms)
    size = transforms[0].size
    centers = np.stack([t.center for t in transforms]).astype(np.float64)  # (T, 2)
    log_sides = np.log([t.side for t in transforms])  # (T,)
    for part in shot_segments(transforms, max_jump):
        centers[part] = gaussian_filter1d(centers[part], sigma, axis=0, mode="nearest")
        log_sides[part] = gaussian_filter1d(log_sides[part], sigma, mode="nearest")
    return [CropTransform.from_center(c, float(np.exp(s)), size)
            for c, s in zip(centers, log_sides)]


def feather_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """float32 (size, size) mask: 1 in the middle, falling smoothly to 0 at the crop's edges."""
    border = max(1, int(round(feather * size)))
    mask = np.zeros((size, size), np.float32)
    mask[border:size - border, border:size - border] = 1.0
    kernel = 2 * border + 1
    return cv2.GaussianBlur(mask, (kernel, kernel), border / 2.0)


def paste_back(image: np.ndarray, crop: np.ndarray, transform: CropTransform,
               feather: float = 0.08) -> np.ndarray:
    """Blend a (generated) crop back into the original frame with a feathered edge."""
    if crop.shape[:2] != (transform.size, transform.size):
        crop = cv2.resize(crop, (transform.size, transform.size), interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    inverse = transform.inverse_matrix()
    warped = cv2.warpAffine(crop, inverse, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(feather_mask(transform.size, feather), inverse, (width, height),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = mask[:, :, None]  # (H, W, 1)
    out = alpha * warped.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
