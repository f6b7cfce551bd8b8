"""Decode images from bytes and resize them, with one resampling path for the whole project.

Arrays are uint8 (H, W, 3) RGB or (H, W) grayscale. Resizing uses PIL bilinear, which low-pass
filters when shrinking (antialiasing), so the same image gives the same pixels on every stage.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

RESAMPLE = Image.Resampling.BILINEAR


def decode_image(data: bytes, source: str, mode: str = "RGB") -> tuple[np.ndarray, str]:
    """Decode image bytes fully into a uint8 array in `mode` ("RGB" or "L"); also return the file's own mode.

    Raises ValueError naming `source` when the bytes are not a complete image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            original_mode = image.mode
            return np.asarray(image.convert(mode)), original_mode
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{source} is not a readable image: {e}") from e


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W) or (H, W, 3) array to `size` = (height, width) with PIL bilinear."""
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), RESAMPLE))


def target_size(original: tuple[int, int], size: int, policy: str) -> tuple[int, int]:
    """The (height, width) an image of `original` (height, width) gets under a resize policy.

    `squash`: size×size regardless of aspect ratio (the paper's 512×512); `none`: unchanged.
    """
    if policy == "squash":
        if size < 1:
            raise ValueError(f"resize policy 'squash' needs size >= 1, got {size}")
        return (size, size)
    if policy == "none":
        return original
    raise ValueError(f"unknown resize policy {policy!r}; valid: ['squash', 'none']")
