"""Non-learned baselines of the self-reenactment protocol, in the same crop space as the model.

- **copy**: the few-shot frame whose landmarks are nearest to the target's, unchanged. It shows
  what a method gains over simply showing the person's photo.
- **warp**: that frame warped piecewise-affinely from its own landmarks to the target's over a
  Delaunay triangulation of the 68 points plus fixed points on the image border. It moves the
  real pixels exactly to the target's geometry, so it wins pixel metrics on small motions by
  construction and cannot invent unseen content (teeth, the far side of a turned head).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay

from talking_heads.evaluation.metrics import outer_eye_distance


def nearest_frame(source_points: np.ndarray, target_points: np.ndarray) -> int:
    """Index k of the few-shot frame whose landmarks are nearest to the target's.

    ``source_points``: (T, 68, 2) landmarks of the few-shot frames, ``target_points``: (68, 2),
    both in crop pixels. Distance: mean point distance / the target's outer-eye distance (no
    alignment: position and scale in the crop matter for a frame that is shown unchanged).
    """
    source = np.asarray(source_points, dtype=np.float64)
    target = np.asarray(target_points, dtype=np.float64)
    if source.ndim != 3 or source.shape[1:] != (68, 2) or target.shape != (68, 2):
        raise ValueError(f"expected (T, 68, 2) and (68, 2), got {source.shape}, {target.shape}")
    distances = np.linalg.norm(source - target[None], axis=2).mean(axis=1)  # (T,)
    return int(np.argmin(distances / max(outer_eye_distance(target), 1e-6)))


def copy_baseline(source_images: np.ndarray, source_points: np.ndarray,
                  target_points: np.ndarray) -> np.ndarray:
    """The nearest few-shot frame, unchanged: uint8 (H, W, 3)."""
    return np.array(source_images[nearest_frame(source_points, target_points)])


def border_points(height: int, width: int, per_side: int = 4) -> np.ndarray:
    """(4 * per_side, 2) points evenly spaced on the image border, corners included."""
    xs = np.linspace(0, width - 1, per_side + 1)
    ys = np.linspace(0, height - 1, per_side + 1)
    top = np.stack([xs[:-1], np.zeros(per_side)], axis=1)
    right = np.stack([np.full(per_side, width - 1), ys[:-1]], axis=1)
    bottom = np.stack([xs[::-1][:-1], np.full(per_side, height - 1)], axis=1)
    left = np.stack([np.zeros(per_side), ys[::-1][:-1]], axis=1)
    return np.concatenate([top, right, bottom, left]).astype(np.float64)


def piecewise_affine_warp(image: np.ndarray, source_points: np.ndarray,
                          target_points: np.ndarray) -> np.ndarray:
    """Warp ``image`` so that ``source_points`` move onto ``target_points`` (both (P, 2) x, y).

    The plane is triangulated on the *target* points plus fixed border points; every output
    pixel finds its target triangle, takes its barycentric coordinates there and samples the
    image at the same barycentric position of the source triangle (one bilinear resampling,
    so there are no seams between triangles). Output pixels outside every triangle (only
    possible when landmarks lie outside the image) keep their identity mapping.
    """
    height, width = image.shape[:2]
    border = border_points(height, width)
    target = np.concatenate([np.asarray(target_points, np.float64), border])  # (P + B, 2)
    source = np.concatenate([np.asarray(source_points, np.float64), border])
    triangulation = Delaunay(target)
    grid_y, grid_x = np.mgrid[0:height, 0:width]
    pixels = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float64)  # (H*W, 2)
    simplex = triangulation.find_simplex(pixels)
    inside = simplex >= 0
    # Barycentric coordinates from qhull's per-simplex affine transform: (n, 3).
    transform = triangulation.transform[simplex[inside]]  # (n, 3, 2)
    partial = np.einsum("nij,nj->ni", transform[:, :2], pixels[inside] - transform[:, 2])
    barycentric = np.concatenate([partial, 1.0 - partial.sum(axis=1, keepdims=True)], axis=1)
    corners = source[triangulation.simplices[simplex[inside]]]  # (n, 3, 2)
    mapped = pixels.copy()
    mapped[inside] = np.einsum("ni,nij->nj", barycentric, corners)
    # Bilinear sampling, border replicated. scipy rather than cv2.remap: single-threaded, so a
    # few-millisecond warp does not stall on a thread pool when the CPU is oversubscribed.
    coords = [mapped[:, 1].reshape(height, width), mapped[:, 0].reshape(height, width)]  # (y, x)
    channels = [ndimage.map_coordinates(image[:, :, c].astype(np.float32), coords, order=1,
                                        mode="nearest") for c in range(image.shape[2])]
    return np.clip(np.stack(channels, axis=2) + 0.5, 0, 255).astype(np.uint8)


def warp_baseline(source_images: np.ndarray, source_points: np.ndarray,
                  target_points: np.ndarray) -> np.ndarray:
    """The nearest few-shot frame warped to the target's landmarks: uint8 (H, W, 3)."""
    k = nearest_frame(source_points, target_points)
    return piecewise_affine_warp(np.asarray(source_images[k]), source_points[k], target_points)
