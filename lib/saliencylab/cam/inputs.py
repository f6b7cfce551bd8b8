"""Checks on the image batches the CAM functions accept."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def image_batch(images: torch.Tensor | Sequence[torch.Tensor], size_multiple: int = 1) -> torch.Tensor:
    """`images` as one (B, 3, H, W) tensor, after checking shape, dtype, range and size.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1] (CHW, not HWC; not 0-255), or a sequence of
            (3, H, W) tensors of one size. Not modified.
        size_multiple: H and W must be multiples of this (e.g. 32 for YOLOv5).

    Returns:
        The tensor itself, or the stacked sequence, on the input's device.

    Raises:
        ValueError: If the batch is empty, not 3-channel (B, 3, H, W), of mixed sizes, not a
            floating dtype, outside [0, 1] or NaN, or H, W are not multiples of `size_multiple`.
    """
    if isinstance(images, torch.Tensor):
        batch = images
    else:
        images = list(images)
        if not images or not all(isinstance(i, torch.Tensor) and i.ndim == 3 for i in images):
            raise ValueError("a sequence of images must hold (3, H, W) tensors and be non-empty")
        sizes = sorted({tuple(i.shape) for i in images})
        if len(sizes) > 1:
            raise ValueError(f"images in a batch must share one size; got shapes {sizes}. Resize them first, or "
                             "call once per size")
        batch = torch.stack(images)
    if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[0] == 0:
        hint = " (one channel: repeat grayscale to RGB)" if batch.ndim == 4 and batch.shape[1] == 1 else ""
        hint = " (channels last? permute HWC to CHW)" if batch.ndim == 4 and batch.shape[-1] == 3 else hint
        raise ValueError(f"images must be a non-empty (B, 3, H, W) RGB batch; got shape {tuple(batch.shape)}{hint}")
    if not batch.is_floating_point():
        raise ValueError(f"images must be float RGB in [0, 1]; got dtype {batch.dtype} (divide uint8 images by 255)")
    low, high = batch.min().item(), batch.max().item()
    if not (0 <= low and high <= 1):  # also catches NaN
        raise ValueError(f"images must be RGB in [0, 1]; got values in [{low:.4g}, {high:.4g}]"
                         + (" (0-255 images: divide by 255)" if high > 1 else ""))
    height, width = batch.shape[-2:]
    if height % size_multiple or width % size_multiple:
        raise ValueError(f"image size {height}×{width} is not a multiple of {size_multiple} (the model's stride); "
                         f"resize to e.g. {max(1, round(height / size_multiple)) * size_multiple}×"
                         f"{max(1, round(width / size_multiple)) * size_multiple}")
    return batch
