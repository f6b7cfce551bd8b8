"""resize_to: bilinear, align_corners=False, antialiased only when shrinking; never overshoots."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saliencylab.metrics import resize_to


def test_same_size_is_a_copy():
    x = torch.rand(2, 5, 7, dtype=torch.float64)
    out = resize_to(x, (5, 7))
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_upsampling_is_plain_bilinear_with_half_pixel_centres():
    x = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)  # one row, two pixels
    out = resize_to(x, (1, 4))
    # output centres at 0.25, 0.75, 1.25, 1.75 in input pixels -> clamp, ¼, ¾, clamp
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]], dtype=torch.float64))


def test_shrinking_is_antialiased():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 64, 48, generator=g, dtype=torch.float64)
    out = resize_to(x, (16, 12))
    expected = F.interpolate(x[:, None], size=(16, 12), mode="bilinear", align_corners=False, antialias=True)[:, 0]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # a 4x box-like average keeps the mean, unlike point sampling
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=1e-2)
    assert out.std().item() < 0.5 * x.std().item()


def test_values_stay_within_the_input_range_and_dtype_is_kept():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 13, 17, generator=g, dtype=torch.float32)
    for size in ((40, 9), (5, 50), (7, 7)):
        out = resize_to(x, size)
        assert out.shape == (2, *size) and out.dtype == torch.float32
        assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6


def test_bad_arguments_are_refused():
    x = torch.rand(1, 4, 4)
    with pytest.raises(TypeError):
        resize_to(x.to(torch.uint8), (2, 2))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        resize_to(x[0], (2, 2))
    with pytest.raises(ValueError, match="positive integers"):
        resize_to(x, (0, 2))
    with pytest.raises(ValueError, match="positive integers"):
        resize_to(x, (2.0, 2))
