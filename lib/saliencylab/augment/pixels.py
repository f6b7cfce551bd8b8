"""Pixel-value operations of detection AutoAugment, which leave every pixel (and so every box) in place.

All take and return uint8 (H, W, 3) RGB arrays; the input is never modified. None inverts colours:
the original study's AutoContrast and Posterize inverted the image (research notes §1.6), and its
SolarizeAdd inverted every pixel at or above the threshold; here AutoContrast stretches each channel
to 0–255 keeping the order of values, Posterize keeps the high bits, and SolarizeAdd adds to the
dark pixels only (TF AutoAugment's `solarize_add`). The colour ops use Pillow (`ImageOps`,
`ImageEnhance`), whose results are exact integer arithmetic, so they are reproducible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ENHANCERS = {
    "brightness": ImageEnhance.Brightness,
    "color": ImageEnhance.Color,
    "contrast": ImageEnhance.Contrast,
    "sharpness": ImageEnhance.Sharpness,
}
SOLARIZE_THRESHOLD = 128  # TF AutoAugment's solarize_add threshold: only pixels below it are changed


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Stretch each channel linearly so its darkest value becomes 0 and its brightest 255 (no cutoff, no inversion)."""
    return np.asarray(ImageOps.autocontrast(Image.fromarray(image)))


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram-equalise each channel (Pillow's `ImageOps.equalize`)."""
    return np.asarray(ImageOps.equalize(Image.fromarray(image)))


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keep the `bits` high bits of every value (1..8), zeroing the others.

    Raises:
        ValueError: bits outside 1..8.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"posterize keeps 1 to 8 bits, got {bits}")
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


def solarize_add(image: np.ndarray, addition: int, threshold: int = SOLARIZE_THRESHOLD) -> np.ndarray:
    """Add `addition` (may be negative) to the values below `threshold`, clipped to 0..255; others unchanged."""
    added = np.clip(image.astype(np.int16) + addition, 0, 255).astype(np.uint8)
    return np.where(image < threshold, added, image)


def enhance(image: np.ndarray, kind: str, factor: float) -> np.ndarray:
    """Pillow's ImageEnhance: blend with a degenerate image (factor 1 = unchanged).

    Args:
        image: uint8 (H, W, 3).
        kind: "brightness" (black), "color" (grayscale), "contrast" (mean gray) or "sharpness" (smoothed).
        factor: blend factor; 0 gives the degenerate image, above 1 extrapolates away from it.

    Raises:
        ValueError: unknown kind.
    """
    if kind not in ENHANCERS:
        raise ValueError(f"unknown enhancement {kind!r}; valid: {sorted(ENHANCERS)}")
    return np.asarray(ENHANCERS[kind](Image.fromarray(image)).enhance(factor))


def cutout(image: np.ndarray, centre: tuple[int, int], half: tuple[int, int], fill: int) -> np.ndarray:
    """Fill the rectangle rows [cy − hy, cy + hy) × columns [cx − hx, cx + hx), clipped to the image.

    Args:
        image: uint8 (H, W, 3). Not modified.
        centre: (cy, cx) integer pixel indices.
        half: (hy, hx) half sizes in pixels (the rectangle is 2·hy × 2·hx before clipping).
        fill: gray value written to all channels.
    """
    h, w = image.shape[:2]
    (cy, cx), (hy, hx) = centre, half
    out = image.copy()
    out[max(cy - hy, 0) : min(cy + hy, h), max(cx - hx, 0) : min(cx + hx, w)] = fill
    return out
