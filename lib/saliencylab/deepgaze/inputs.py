"""Validation of DeepGaze IIE inputs: 0–255 RGB images and a matching centre bias.

DeepGaze IIE divides by 255 itself. Feeding [0, 1] images (as the paper-A notebooks did) gives
nearly black input and meaningless maps without any error, so the model refuses them.
"""

from __future__ import annotations

import torch

MIN_IMAGE_SIDE = 64  # EfficientNet-B5 needs ≥ 32 px after the model's ×½ downsampling
RANGE_ATOL = 1e-3  # slack on [0, 255] for float round-off (e.g. x * 255.0)
UNIT_RANGE_MAX = 1.0 + 1e-3  # an image whose maximum is at most this looks [0, 1]-scaled


def check_image_range(images: torch.Tensor) -> None:
    """Raise unless `images` hold 0–255 RGB values.

    Args:
        images: (B, 3, H, W) float (any shape with the batch first works), not modified.

    Raises:
        TypeError: If `images` is not a floating-point tensor.
        ValueError: If a value is NaN/inf or outside [0, 255] (± 1e-3), or if some item's
            maximum is ≤ 1.001, i.e. it looks [0, 1]-scaled. An all-black 0–255 image is
            rejected by the same rule; it carries no information for the model anyway.
    """
    _check_values(images)
    items = images.reshape(images.shape[0], -1) if images.ndim > 1 else images.reshape(1, -1)
    item_max = items.amax(dim=1)
    dark = torch.nonzero(item_max <= UNIT_RANGE_MAX).flatten().tolist()
    if dark:
        raise ValueError(
            f"images look [0, 1]-scaled: batch items {dark[:10]} have maximum <= {UNIT_RANGE_MAX}. "
            "DeepGaze IIE expects 0-255 RGB; pass images * 255"
        )


def check_images(images: torch.Tensor) -> None:
    """Raise unless `images` is a (B, 3, H, W) float 0–255 batch with H, W ≥ 64.

    Raises:
        TypeError: If `images` is not a floating-point tensor.
        ValueError: On a wrong shape, a side below 64 pixels or a value range that
            `check_image_range` refuses.
    """
    _check_layout(images, "(B, 3, H, W)")
    check_image_range(images)


def check_image(image: torch.Tensor) -> None:
    """Raise unless one image is usable by DeepGaze IIE: `check_images` for a single item.

    Used to sort out bad items before batching, so one bad image never fails its whole batch.

    Args:
        image: (3, H, W) float RGB, 0-255, H and W >= 64; not modified.

    Raises:
        TypeError: If `image` is not a floating-point tensor.
        ValueError: On a wrong shape, a side below 64 pixels, NaN/inf or values outside [0, 255],
            or a maximum <= 1.001: an all-black image, or one scaled to [0, 1].
    """
    _check_layout(image, "(3, H, W)")
    _check_values(image)
    high = float(image.max())
    if high <= UNIT_RANGE_MAX:
        raise ValueError(
            f"image is black or [0, 1]-scaled: its maximum is {high:.4g} <= {UNIT_RANGE_MAX}; "
            "DeepGaze IIE expects 0-255 RGB with some light in it"
        )


def _check_layout(images: torch.Tensor, layout: str) -> None:
    """A tensor of `layout` ("(B, 3, H, W)" or "(3, H, W)") with sides of at least MIN_IMAGE_SIDE."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor {layout}, got {_describe(images)}")
    if images.ndim != layout.count(",") + 1 or images.shape[-3] != 3:
        raise ValueError(f"images must have shape {layout}, got {tuple(images.shape)}")
    if min(images.shape[-2:]) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"images must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels, got {tuple(images.shape[-2:])}"
        )


def _check_values(images: torch.Tensor) -> None:
    """Floating point, not empty, finite, within [0, 255] (± RANGE_ATOL)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a floating-point torch.Tensor of 0-255 RGB, got {_describe(images)}")
    if images.numel() == 0:
        raise ValueError(f"images is empty (shape {tuple(images.shape)})")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or inf; pass finite 0-255 RGB values")
    low, high = float(images.min()), float(images.max())
    if low < -RANGE_ATOL or high > 255.0 + RANGE_ATOL:
        raise ValueError(
            f"images must be RGB in [0, 255], got values in [{low:.4g}, {high:.4g}]; clamp after resizing"
        )


def check_centerbias(centerbias: torch.Tensor | None, images: torch.Tensor) -> None:
    """Raise unless `centerbias` is a finite (B, H, W) float tensor matching `images` (B, 3, H, W).

    Raises:
        ValueError: If it is missing (None), has another shape, or holds NaN/inf.
        TypeError: If it is not a floating-point tensor.
    """
    expected = (images.shape[0], *images.shape[2:])
    if centerbias is None:
        raise ValueError(
            f"a centre bias of shape {expected} is required (a log density over the image); "
            "use uniform_centerbias((H, W)) or centerbias_from_template(...), expanded to the batch"
        )
    if not isinstance(centerbias, torch.Tensor) or not centerbias.is_floating_point():
        raise TypeError(f"centerbias must be a floating-point torch.Tensor, got {_describe(centerbias)}")
    if tuple(centerbias.shape) != expected:
        raise ValueError(
            f"centerbias must have shape (B, H, W) = {expected} to match images, got {tuple(centerbias.shape)}"
        )
    if not bool(torch.isfinite(centerbias).all()):
        raise ValueError("centerbias contains NaN or inf; it must be a finite log density")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return type(value).__name__
