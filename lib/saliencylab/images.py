"""Decode image bytes under one decoding contract, and resize with one resampling path for the project.

The decoding contract (docs/architecture.md, "Decoding contract"), applied to every image and mask:

- the pixel count is checked against `max_pixels` before any pixel is decoded (decompression bombs);
- EXIF orientation is applied, so arrays hold the image as displayed;
- 16-bit values become 8-bit by their high byte (`v >> 8`, what Pillow does for 16-bit RGB PNGs),
  never by clipping; 32-bit integer images are read as 16-bit and refused outside 0..65535;
- an alpha channel (or a palette/tRNS transparency) is composited on a fixed background: white for
  images (`IMAGE_BACKGROUND`), black for attention masks (`MASK_BACKGROUND`: transparent = no attention);
- palette, grayscale, bilevel, CMYK, YCbCr, LAB and HSV become the requested mode by Pillow's conversion;
- every such step adds a note to `Decoded.notes`; embedded ICC profiles are ignored (values read as sRGB).

Arrays are uint8 (H, W, 3) RGB or (H, W) grayscale. Resizing uses PIL bilinear, which low-pass
filters when shrinking (antialiasing), so the same image gives the same pixels on every stage.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESAMPLE = Image.Resampling.BILINEAR
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb warning threshold (Image.MAX_IMAGE_PIXELS)
IMAGE_BACKGROUND = (255, 255, 255)  # white: what a transparent region shows on a page
MASK_BACKGROUND = (0, 0, 0)  # black: a transparent mask pixel carries no attention
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
EXIF_ORIENTATION = 0x0112
_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


class _TooLarge(Exception):
    """The image has more pixels than max_pixels (raised before decoding)."""


class _Unsupported(Exception):
    """The pixel format has no defined 8-bit reading."""


@dataclass(frozen=True)
class Decoded:
    """One decoded image: `pixels` uint8 (H, W, 3) or (H, W) as displayed, the file's own Pillow mode
    and the contract's notes (orientation, bit depth, alpha, conversion), in the order applied."""

    pixels: np.ndarray
    mode: str
    notes: tuple[str, ...]


def decode_image(
    data: bytes,
    source: str,
    mode: str = "RGB",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = IMAGE_BACKGROUND,
) -> Decoded:
    """Decode image bytes fully into a uint8 array in `mode` ("RGB" or "L") under the decoding contract.

    Args:
        data: the file's bytes (any format Pillow reads).
        source: the file's URI, used in error messages.
        mode: "RGB" for (H, W, 3) output, "L" for (H, W).
        max_pixels: the largest width × height accepted, checked before decoding. Pillow refuses
            more than 2 × DEFAULT_MAX_PIXELS by itself; that refusal is reported the same way.
        background: RGB colour under transparent pixels.

    Raises:
        ValueError: naming `source`, when the bytes are not a complete image, the image has more
            than `max_pixels` pixels, or its pixel format has no 8-bit reading (float images).
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"decode_image mode must be 'RGB' or 'L', got {mode!r}")
    try:
        with warnings.catch_warnings():
            # Pillow's own size warning is superseded by the max_pixels check below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _TooLarge(f"{width}x{height} = {width * height} pixels is more than max_pixels={max_pixels}")
                image.load()  # decode now, so a truncated file fails here and not later
                return _apply_contract(image, mode, background)
    except _TooLarge as e:
        raise ValueError(f"{source} is too large to decode: {e}; raise max_pixels if the file is trusted") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"{source} is too large to decode: Pillow refuses it as a decompression bomb ({e})") from e
    except UnidentifiedImageError:
        raise ValueError(f"{source} is not a readable image: not a format Pillow recognises") from None
    except _Unsupported as e:
        raise ValueError(f"{source} cannot be read as 8-bit {mode}: {e}") from None
    except Exception as e:  # Pillow's decoders raise many types (OSError, SyntaxError, struct.error, ...) on bad bytes
        raise ValueError(f"{source} is not a readable image: {type(e).__name__}: {_ADDRESS.sub('<file>', str(e))}") from e


def _apply_contract(image: Image.Image, mode: str, background: tuple[int, int, int]) -> Decoded:
    """Orientation, bit depth, alpha and mode conversion of a loaded image, with their notes."""
    original_mode, notes = image.mode, []
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation in range(2, 9):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied")
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray(_sixteen_to_eight(np.asarray(image)))
        notes.append(f"{original_mode} scaled to 8-bit (high byte)")
    elif image.mode == "F":
        raise _Unsupported("32-bit float pixels have no defined 0-255 scale; store the image as 8- or 16-bit")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")
        notes.append(f"alpha composited on RGB {background}")
    if image.mode != mode:
        notes.append(f"{image.mode} converted to {mode}")
        image = image.convert(mode)
    return Decoded(np.asarray(image), original_mode, tuple(notes))


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """uint8 high bytes of 16-bit values; refuses 32-bit values outside 0..65535."""
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise _Unsupported(f"32-bit integer pixels in [{low}, {high}] are outside the 16-bit range 0..65535")
    return (values.astype(np.uint32) >> 8).astype(np.uint8)


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
