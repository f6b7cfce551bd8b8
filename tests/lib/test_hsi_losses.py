"""HSI's differentiable loss terms against the metric suite, golden values and gradients."""

from __future__ import annotations

import pytest
import torch

from saliencylab.hsi.losses import cc_term, hsi_loss, kl_term, nss_term
from saliencylab.metrics import cc, kldiv, nss


@pytest.fixture
def maps():
    generator = torch.Generator().manual_seed(3)
    p = torch.rand(3, 9, 11, generator=generator, dtype=torch.float64)
    g = torch.rand(3, 9, 11, generator=generator, dtype=torch.float64) ** 3
    fixations = torch.rand(3, 9, 11, generator=generator, dtype=torch.float64) > 0.8
    return p, g, fixations


def test_terms_equal_the_metric_suite(maps):
    p, g, fixations = maps
    torch.testing.assert_close(kl_term(p, g), kldiv(p, g), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cc_term(p, g), cc(p, g), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nss_term(p, fixations), nss(p, fixations), rtol=1e-10, atol=1e-12)


def test_degenerate_maps_follow_the_metric_conventions(maps):
    p, g, fixations = maps
    flat, zero = torch.full_like(p, 0.5), torch.zeros_like(p)
    torch.testing.assert_close(cc_term(flat, g), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(nss_term(flat, fixations), nss(flat, fixations))
    torch.testing.assert_close(kl_term(zero, g), kldiv(zero, g))  # all-zero = uniform
    torch.testing.assert_close(kl_term(g, g), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match=r"batch indices \[1\]"):
        nss_term(p, torch.stack([fixations[0], torch.zeros_like(fixations[1]), fixations[2]]))


def test_loss_is_kl_minus_cc_minus_nss_and_differentiable(maps):
    p, g, fixations = maps
    expected = (kldiv(p, g) - cc(p, g) - nss(p, fixations)).mean()
    torch.testing.assert_close(hsi_loss(p, g, fixations), expected)
    small = p[:1, :4, :5].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: hsi_loss(x, g[:1, :4, :5], fixations[:1, :4, :5] | True), (small,))
    better = hsi_loss(g, g, fixations)  # the target itself beats a random map
    assert better < hsi_loss(p, g, fixations)
