"""Exact affine geometry for detection augmentation: one matrix moves the pixels and the boxes.

Coordinates are continuous pixel-edge coordinates, x the column and y the row: pixel (row i,
column j) covers [j, j + 1) × [i, i + 1) and its centre is (j + 0.5, i + 0.5); boxes
(x0, y0, x1, y1) use the same frame (VOC's 1-based inclusive corners become (xmin − 1, ymin − 1,
xmax, ymax) at ingest). A transform is a 3×3 forward matrix A mapping an input point (x, y, 1) to
its output point. `warp` samples each output pixel centre at A⁻¹ applied to it, nearest
neighbour (the pixel that contains the point: PIL's and TF AutoAugment's NEAREST), so pixels and
boxes move by the same A. A box becomes the smallest axis-aligned box enclosing its four moved
corners (TF AutoAugment's `_rotate_bbox` / `_shear_bbox` rule), clipped to the image.
"""

from __future__ import annotations

import math

import numpy as np


def rotation(degrees: float, size: tuple[int, int]) -> np.ndarray:
    """Rotation about the image centre, counter-clockwise as displayed for degrees > 0 (PIL's `rotate`).

    Args:
        degrees: angle in degrees.
        size: (H, W) of the image.

    Returns:
        (3, 3) float64 forward matrix.
    """
    h, w = size
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    cx, cy = w / 2, h / 2
    # y points down, so a counter-clockwise turn on screen is x' = c·x + s·y, y' = −s·x + c·y about the centre
    return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy], [0.0, 0.0, 1.0]])


def shear(level: float, axis: str) -> np.ndarray:
    """Shear about the origin (the top-left corner), as TF and PIL AutoAugment do.

    Args:
        level: shear coefficient (tan of the shear angle); `axis="x"` maps x' = x + level·y,
            `axis="y"` maps y' = y + level·x.
        axis: "x" or "y".

    Returns:
        (3, 3) float64 forward matrix.

    Raises:
        ValueError: axis is neither "x" nor "y".
    """
    if axis == "x":
        return np.array([[1.0, level, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    if axis == "y":
        return np.array([[1.0, 0.0, 0.0], [level, 1.0, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"shear axis must be 'x' or 'y', got {axis!r}")


def translation(dx: float, dy: float) -> np.ndarray:
    """Translation by (dx, dy) pixels (content moves right and down for positive values); (3, 3) float64."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def warp(image: np.ndarray, matrix: np.ndarray, fill: int | tuple[int, ...]) -> np.ndarray:
    """Resample `image` under the forward affine `matrix`, nearest neighbour, same output size.

    Args:
        image: uint8 (H, W, C) or (H, W). Not modified.
        matrix: (3, 3) forward matrix (input point -> output point), invertible.
        fill: value of output pixels whose source lies outside the image (an int, or one per channel).

    Returns:
        uint8 array of the input's shape.

    Raises:
        ValueError: the matrix is singular.
    """
    h, w = image.shape[:2]
    if abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        raise ValueError("the affine matrix is singular")
    inverse = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:h, 0:w]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5, np.ones(h * w)])  # (3, H·W): output pixel centres
    src_x, src_y, _ = inverse @ centres
    cols, rows = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    out = np.empty_like(image)
    flat = out.reshape(h * w, *image.shape[2:])
    flat[:] = np.asarray(fill, dtype=np.uint8)
    flat[inside] = image[rows[inside], cols[inside]]
    return out


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray, size: tuple[int, int], min_side: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Move boxes with the pixels: enclose the four moved corners, clip to the image, drop degenerate ones.

    Args:
        boxes: (K, 4) float x0, y0, x1, y1 in pixel-edge coordinates of the image. Not modified.
        matrix: (3, 3) forward matrix, as given to `warp`.
        size: (H, W) of the image (the output has the same size).
        min_side: a clipped box narrower or shorter than this many pixels is dropped.

    Returns:
        (boxes, keep): (K', 4) float64 clipped boxes of the kept ones, in order, and (K,) bool
        telling which input boxes were kept.
    """
    h, w = size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = boxes.T
    corners = np.stack([np.stack([x0, y0]), np.stack([x1, y0]), np.stack([x0, y1]), np.stack([x1, y1])])  # (4, 2, K)
    moved = np.einsum("ij,cjk->cik", matrix[:2, :2], corners) + matrix[:2, 2][None, :, None]
    lo, hi = moved.min(axis=0), moved.max(axis=0)  # (2, K): x then y
    out = np.stack([np.clip(lo[0], 0, w), np.clip(lo[1], 0, h), np.clip(hi[0], 0, w), np.clip(hi[1], 0, h)], axis=1)
    keep = ((out[:, 2] - out[:, 0]) >= min_side) & ((out[:, 3] - out[:, 1]) >= min_side)
    return out[keep], keep
