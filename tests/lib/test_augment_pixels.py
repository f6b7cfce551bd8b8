"""Pixel-value ops: no colour inversion, exact posterize and solarize-add, clipped cutouts."""

from __future__ import annotations

import numpy as np
import pytest

from saliencylab.augment import pixels


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = np.linspace(20, 230, h * w).reshape(h, w)
    return np.clip(base[..., None] + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_colour_ops_never_invert():
    image = _photo()
    stretched = pixels.autocontrast(image).astype(int)
    for c in range(3):  # per channel, a monotone non-decreasing map of the values: order kept
        order = np.argsort(image[..., c], axis=None, kind="stable")
        assert (np.diff(stretched[..., c].ravel()[order]) >= 0).all()
    assert stretched.min() == 0 and stretched.max() == 255
    assert np.array_equal(pixels.posterize(image, 5), image & 0b11111000)
    solar = pixels.solarize_add(image, 40)
    bright = image >= 128
    assert np.array_equal(solar[bright], image[bright])
    assert np.array_equal(solar[~bright], np.minimum(image[~bright].astype(int) + 40, 255))
    equalised = pixels.equalize(image).astype(int)
    assert np.corrcoef(equalised.ravel(), image.ravel())[0, 1] > 0.9
    with pytest.raises(ValueError, match="1 to 8 bits"):
        pixels.posterize(image, 0)


def test_cutout_is_clipped_to_the_image_and_leaves_the_input_alone():
    image = _photo(20, 30)
    out = pixels.cutout(image, (2, 28), (5, 4), fill=128)
    changed = (out != image).any(axis=2)
    assert (out[0:7, 24:30] == 128).all() and not changed[7:].any() and not changed[:, :24].any()
    assert not np.shares_memory(out, image)
    with pytest.raises(ValueError, match="unknown enhancement"):
        pixels.enhance(image, "hue", 1.0)
