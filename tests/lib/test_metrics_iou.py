"""Top-set IoU: paper A's thresholding, its tie collapse, and the tie-robust exact mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import reference_metrics as ref
from saliencylab.metrics import iou_top, top_set, top_set_is_degenerate
from saliencylab.metrics.rows import order_statistics, topk_statistics

from tests.lib.test_metrics import P, Y, random_maps


def test_golden_values_on_hand_computed_maps():
    # fraction 0.5 on 6 pixels: quantile position 2.5, k = 6 − 3 = 3.
    # p ascending [0, 0, .5, .5, 1, 1]: threshold .5, paper set = the 4 pixels ≥ .5.
    # y ascending [0, 0, 0, 0, 1, 1]: threshold 0 = the minimum: the paper set collapses to all 6.
    assert iou_top(P, Y, 0.5, mode="paper").item() == pytest.approx(4 / 6, abs=1e-15)
    # exact: p has 2 pixels above its 3rd largest value (.5) and 2 equal to it, sharing 1 -> .5 each;
    # y has 2 above its 3rd largest (0) and 4 equal, sharing 1 -> .25 each.
    # Σ min = .25 + 1 + 1 + .25 = 2.5, Σ max = .25 + .5 + 1 + 1 + .5 + .25 = 3.5 -> 5/7
    assert iou_top(P, Y, 0.5, mode="exact").item() == pytest.approx(5 / 7, abs=1e-15)
    expected_p = torch.tensor([[[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(top_set(P, 0.5), expected_p, rtol=0, atol=0)
    assert torch.equal(top_set(Y, 0.5, mode="paper"), torch.ones_like(Y))
    assert torch.equal(top_set_is_degenerate(torch.cat([P, Y]), 0.5), torch.tensor([False, True]))


def test_paper_tie_collapse_at_512_squared_gives_the_published_value():
    # more than 90 % of the mask at its minimum: its "top 90 %" set is the whole image,
    # so IoU = |other top set| / N = 26,215 / 262,144 = 0.10000229 (research notes §1.3)
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 512, 512, dtype=torch.float64)
    mask.view(-1)[:26_144] = torch.rand(26_144, generator=g, dtype=torch.float64) + 0.5
    other = torch.rand(1, 512, 512, generator=g, dtype=torch.float64)
    value = iou_top(other, mask, 0.1, mode="paper").item()
    assert value == 26_215 / 262_144
    assert round(value, 8) == 0.10000229
    assert top_set_is_degenerate(mask).item() and not top_set_is_degenerate(other).item()
    # exact mode keeps mass k: the 26,144 positive pixels plus 71 shared over the zeros
    assert top_set(mask).sum().item() == pytest.approx(26_215, abs=1e-6)
    assert iou_top(other, mask).item() < 0.2


def test_modes_agree_when_values_are_distinct():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(4, 40, 50, generator=g, dtype=torch.float64), torch.rand(4, 40, 50, generator=g, dtype=torch.float64)
    for fraction in (0.1, 0.25, 0.5, 1.0, 0.003):
        torch.testing.assert_close(iou_top(a, b, fraction, "exact"), iou_top(a, b, fraction, "paper"), rtol=0, atol=1e-15)
        k = 2000 - int(np.ceil((1 - fraction) * 1999))
        assert torch.equal(top_set(a, fraction, "paper").sum(dim=(1, 2)), torch.full((4,), float(k), dtype=torch.float64))


def test_exact_mode_mass_is_always_k():
    x = random_maps(6, seed=2)
    x[1] = 0.0
    x[2, :10] = 7.0
    k = 17 * 23 - int(np.ceil(0.9 * (17 * 23 - 1)))
    torch.testing.assert_close(top_set(x).sum(dim=(1, 2)), torch.full((6,), float(k), dtype=torch.float64))


def test_identical_maps_give_one_in_both_modes():
    x = random_maps(4, seed=3)
    for mode in ("paper", "exact"):
        torch.testing.assert_close(iou_top(x, x, mode=mode), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["paper", "exact"])
@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_matches_numpy_reference_in_float64(mode, fraction):
    a, b = random_maps(6, seed=4), random_maps(6, seed=5)
    reference = getattr(ref, f"iou_{mode}")
    expected = [reference(a[i].numpy(), b[i].numpy(), fraction) for i in range(6)]
    np.testing.assert_allclose(iou_top(a, b, fraction, mode).numpy(), expected, rtol=0, atol=1e-14)
    flags = [ref.collapses(a[i].numpy(), fraction) for i in range(6)]
    assert top_set_is_degenerate(a, fraction).tolist() == flags


def test_paper_threshold_is_numpy_percentile_bit_for_bit():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(3, 31, 37, generator=g, dtype=torch.float64)
    for i in range(3):
        t = np.percentile(x[i].numpy(), 90)
        assert torch.equal(top_set(x[i : i + 1], 0.1, "paper")[0].bool(), x[i] >= t)


def test_iou_is_invariant_to_increasing_transforms_and_batches_like_singles():
    a, b = random_maps(5, seed=7), random_maps(5, seed=8)
    for mode in ("paper", "exact"):
        base = iou_top(a, b, mode=mode)
        torch.testing.assert_close(iou_top(a**3 * 5 + 1, b, mode=mode), base, rtol=0, atol=1e-15)
        singles = torch.cat([iou_top(a[i : i + 1], b[i : i + 1], mode=mode) for i in range(5)])
        torch.testing.assert_close(base, singles, rtol=0, atol=0)


def test_constant_maps_have_defined_values():
    x = random_maps(1, seed=9)
    constant = torch.full_like(x, 2.0)
    n = x.numel()
    k = n - int(np.ceil(0.9 * (n - 1)))
    # paper: the constant map's set is everything, IoU = |other set| / N
    other_size = top_set(x, mode="paper").sum().item()
    assert iou_top(constant, x, mode="paper").item() == pytest.approx(other_size / n, abs=1e-15)
    # exact: every pixel holds k/N
    torch.testing.assert_close(top_set(constant), torch.full_like(x, k / n))
    assert 0 < iou_top(constant, x).item() < 1
    assert iou_top(constant, constant).item() == pytest.approx(1.0)


def tie_heavy_rows() -> torch.Tensor:
    """Rows with large tie blocks at the minimum, the maximum or both (the hard case for selection)."""
    g = torch.Generator().manual_seed(12)
    n = 1000
    rows = torch.rand(9, n, generator=g, dtype=torch.float64)
    rows[0, :800] = 0.0  # 80 % at the minimum: the ranks near 90 % fall between the blocks
    rows[1, :950] = 0.0  # 95 % at the minimum: both ranks inside the block
    rows[2, :899] = 0.0  # the lower rank is the last tied one
    rows[3, :900] = 0.0  # block ends exactly at the lower rank
    rows[4, :300] = 1.0  # 30 % at the maximum
    rows[5, :950] = 1.0  # 95 % at the maximum
    rows[6] = (rows[6] > 0.8).double()  # binary mask: blocks at both ends only
    rows[7, :400], rows[7, 400:700] = 0.0, 1.0  # blocks at both ends and values between
    rows[8] = 0.5  # constant
    return rows


@pytest.mark.parametrize("rows", ["random", "ties"])
def test_selection_paths_agree(rows):
    # CPU uses the numba selection kernel, other devices torch.topk: both give the sorted order statistics
    x = random_maps(4, seed=10).flatten(1) if rows == "random" else tie_heavy_rows()
    ascending = torch.sort(x, dim=1).values
    n = x.shape[1]
    for index in (0, 5, 300, int(0.9 * (n - 1)), n - 2, n - 1):
        expected = (ascending[:, index], ascending[:, min(index + 1, n - 1)])
        for statistics in (order_statistics, topk_statistics):
            below, above = statistics(x, index)
            assert torch.equal(below, expected[0]) and torch.equal(above, expected[1]), (statistics.__name__, index)


def test_tie_heavy_maps_match_the_reference():
    maps = tie_heavy_rows().view(9, 25, 40)
    others = random_maps(9, seed=13, shape=(25, 40))
    for mode in ("paper", "exact"):
        expected = [getattr(ref, f"iou_{mode}")(maps[i].numpy(), others[i].numpy()) for i in range(9)]
        np.testing.assert_allclose(iou_top(maps, others, mode=mode).numpy(), expected, rtol=0, atol=1e-14)


def test_bad_arguments_are_refused():
    x = random_maps(2, seed=11)
    with pytest.raises(ValueError, match="fraction"):
        iou_top(x, x, fraction=0.0)
    with pytest.raises(ValueError, match="fraction"):
        top_set(x, fraction=1.5)
    with pytest.raises(ValueError, match="unknown IoU mode 'top90'"):
        iou_top(x, x, mode="top90")
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"batch indices \[0\]"):
        top_set_is_degenerate(x)
