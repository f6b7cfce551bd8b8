"""The pixel frame around a Deep Image Prior fit: known-pixel masks, padding to the network's size, compositing.

Conventions: images are (H, W, 3) uint8 RGB (as stored) or (3, H, W) float32 in [0, 1] (as fitted,
C x H x W, not the H x W x C the original study passed by mistake); the erase mask is (H, W) uint8
with 255 = erased (hidden) and 0 = kept; the known mask is (H, W) bool with True = known pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def known_from_erase_mask(erase_mask: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """The known-pixel mask of an erase mask, checked for a changed sample.

    Args:
        erase_mask: (H, W) uint8, 255 = erased, 0 = kept; no other values.
        image_shape: the shape of the image it belongs to, (H, W, 3).

    Returns:
        (H, W) bool, True where the pixel is known (kept). A new array.

    Raises:
        ValueError: wrong shape or dtype, values other than 0/255, or a mask that hides every
            pixel (nothing to fit) or none (nothing to fill).
    """
    if erase_mask.dtype != np.uint8 or erase_mask.shape != tuple(image_shape[:2]):
        raise ValueError(
            f"erase mask is {erase_mask.dtype} {erase_mask.shape}; expected uint8 {tuple(image_shape[:2])} (the image's size)"
        )
    values = np.unique(erase_mask)
    if not np.isin(values, (0, 255)).all():
        raise ValueError(f"erase mask holds values {values[:8].tolist()}; expected only 0 (kept) and 255 (erased)")
    known = erase_mask == 0
    if not known.any():
        raise ValueError("erase mask hides every pixel: no known pixel to fit the network to")
    if known.all():
        raise ValueError("the sample is marked changed but its erase mask hides no pixel")
    return known


def padded_size(size: tuple[int, int], multiple: int, min_side: int) -> tuple[int, int]:
    """The (H, W) an image of `size` is padded to: multiples of `multiple`, each side at least `min_side`."""
    return tuple(max(-(-side // multiple) * multiple, -(-min_side // multiple) * multiple) for side in size)


def reflect_pad(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (..., H, W) at the bottom and right to `size` by mirroring (repeatedly when the pad exceeds the side).

    Args:
        x: (C, H, W) or (N, C, H, W) float tensor; not modified.
        size: target (H', W') with H' >= H, W' >= W.

    Returns:
        (..., H', W') on x's device; x occupies the top-left (H, W) corner.
    """
    while x.shape[-2:] != torch.Size(size):
        h, w = x.shape[-2:]
        # one mirror step can add at most side - 1 pixels (reflection excludes the edge pixel)
        dh, dw = min(size[0] - h, max(h - 1, 0)), min(size[1] - w, max(w - 1, 0))
        if (dh, dw) == (0, 0):
            x = F.pad(x, (0, size[1] - w, 0, size[0] - h), mode="replicate")  # 1-pixel sides cannot mirror
        else:
            x = F.pad(x, (0, dw, 0, dh), mode="reflect")
    return x


def composite(image: np.ndarray, known: np.ndarray, fill: torch.Tensor) -> np.ndarray:
    """mask * image + (1 - mask) * net, on uint8 pixels so every known pixel is bit-identical to the input.

    Args:
        image: (H, W, 3) uint8 RGB, the erased image; not modified.
        known: (H, W) bool, True = known.
        fill: (3, H, W) float in [0, 1], the network output (any device).

    Returns:
        (H, W, 3) uint8: `image` where known, round(255 * fill) elsewhere.
    """
    net = (fill.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.where(known[..., None], image, net)
