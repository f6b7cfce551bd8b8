"""The decoding contract of `saliencylab.images.decode_image`, on tiny images encoded in memory."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from saliencylab.images import IMAGE_BACKGROUND, MASK_BACKGROUND, decode_image


def _png(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_sixteen_bit_takes_the_high_byte_golden():
    values = np.array([[0, 255, 256, 257 * 7], [32768, 40000, 65280, 65535]], dtype=np.uint16)
    decoded = decode_image(_png(Image.fromarray(values)), "g16.png", mode="L")
    np.testing.assert_array_equal(decoded.pixels, [[0, 0, 1, 7], [128, 156, 255, 255]])
    assert decoded.mode == "I;16" and decoded.notes == ("I;16 scaled to 8-bit (high byte)",)


def test_thirty_two_bit_integers_outside_sixteen_bits_are_refused():
    data = _png(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)), "TIFF")
    with pytest.raises(ValueError, match=r"i32.tif cannot be read as 8-bit RGB: .*\[0, 70000\]"):
        decode_image(data, "i32.tif")
    with pytest.raises(ValueError, match="32-bit float"):
        decode_image(_png(Image.fromarray(np.ones((2, 2), np.float32)), "TIFF"), "f.tif")


@pytest.mark.parametrize("mode, background", [("RGB", IMAGE_BACKGROUND), ("L", MASK_BACKGROUND)])
def test_alpha_is_composited_on_the_background(mode, background):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque
    rgba[0, 1] = (200, 100, 50, 0)  # transparent
    rgba[1, 0] = (0, 0, 0, 128)  # half black
    decoded = decode_image(_png(Image.fromarray(rgba)), "a.png", mode, background=background)
    expected_rgb = np.array([[(200, 100, 50), background], [np.rint(np.array(background) * 127 / 255), background]])
    expected = Image.fromarray(expected_rgb.astype(np.uint8)).convert(mode)
    np.testing.assert_allclose(decoded.pixels, np.asarray(expected), atol=1)
    assert decoded.notes[0] == f"alpha composited on RGB {background}"


def test_palette_transparency_counts_as_alpha():
    image = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    image.putpalette([10, 20, 30, 40, 50, 60])
    decoded = decode_image(_png(image, transparency=1), "p.png")
    np.testing.assert_array_equal(decoded.pixels, [[(10, 20, 30), (255, 255, 255)]])


def test_orientation_is_applied_before_conversion():
    pixels = np.zeros((2, 3), np.uint8)
    pixels[0, 0] = 255  # top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 8  # display rotated 90 degrees counter-clockwise
    decoded = decode_image(_png(Image.fromarray(pixels), exif=exif), "o.png")
    assert decoded.pixels.shape == (3, 2, 3) and decoded.pixels[2, 0, 0] == 255
    assert decoded.notes == ("EXIF orientation 8 applied", "L converted to RGB")


def test_max_pixels_is_checked_before_decoding_and_errors_name_the_file():
    data = _png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)))
    assert decode_image(data, "x.png", max_pixels=100).pixels.shape == (10, 10, 3)
    with pytest.raises(ValueError, match=r"x.png is too large to decode: 10x10 = 100 pixels is more than max_pixels=99"):
        decode_image(data, "x.png", max_pixels=99)
    with pytest.raises(ValueError, match=r"^junk.bin is not a readable image: not a format Pillow recognises$"):
        decode_image(b"junk", "junk.bin")
    with pytest.raises(ValueError, match=r"^cut.png is not a readable image: OSError: ") as caught:
        decode_image(data[: len(data) // 2], "cut.png")
    assert "0x" not in str(caught.value)
