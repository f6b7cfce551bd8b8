"""`auc_shuffled_at`: shuffled AUC from fixation coordinates (pysaliency's input) instead of maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliencylab.metrics import auc_shuffled, auc_shuffled_at


def batch(seed: int, dtype=torch.float64):
    """Quantised (heavily tied) maps with sparse fixations and denser other-image fixations."""
    g = torch.Generator().manual_seed(seed)
    saliency = (torch.round(torch.rand(5, 24, 31, generator=g, dtype=torch.float64) * 12) / 12).to(dtype)
    fixated = torch.rand(5, 24, 31, generator=g) > 0.97
    others = torch.rand(5, 24, 31, generator=g) > 0.9
    fixated[:, 0, 0] = others[:, 1, 1] = True  # every map has both
    return saliency, fixated, others


def mann_whitney(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(pos > neg) + ½ P(pos = neg) over all pairs, by brute force."""
    p, n = positives[:, None], negatives[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_points_of_fixation_maps_score_as_the_maps(seed):
    saliency, fixated, others = batch(seed)
    expected = auc_shuffled(saliency, fixated, others)
    torch.testing.assert_close(auc_shuffled_at(saliency, fixated.nonzero(), others.nonzero()), expected, rtol=0, atol=1e-15)
    shuffled = fixated.nonzero()[torch.randperm(int(fixated.sum()), generator=torch.Generator().manual_seed(seed))]
    torch.testing.assert_close(auc_shuffled_at(saliency, shuffled, others.nonzero()), expected, rtol=0, atol=1e-15)


def test_every_listed_point_counts_like_pysaliency():
    saliency, fixated, others = batch(2)
    points, other_points = fixated.nonzero(), others.nonzero()
    points = torch.cat([points, points[:4], points[:1]])  # fixated twice and three times: weighs more
    got = auc_shuffled_at(saliency, points, other_points)
    for i in range(saliency.shape[0]):
        mine = points[points[:, 0] == i]
        theirs = other_points[other_points[:, 0] == i]
        s = saliency[i].numpy()
        expected = mann_whitney(s[mine[:, 1], mine[:, 2]], s[theirs[:, 1], theirs[:, 2]])
        assert got[i].item() == pytest.approx(expected, abs=1e-15)
    assert not torch.equal(got, auc_shuffled(saliency, fixated, others))  # the duplicates changed it


def test_float32_maps_give_float32_scores_equal_to_float64():
    saliency, fixated, others = batch(3, torch.float32)
    got = auc_shuffled_at(saliency, fixated.nonzero(), others.nonzero())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), auc_shuffled_at(saliency.double(), fixated.nonzero(), others.nonzero()), rtol=0, atol=1e-7)


def test_only_values_at_the_points_are_read():
    saliency, fixated, others = batch(4)
    free = ~(fixated | others)
    poisoned = torch.where(free, torch.nan, saliency)
    torch.testing.assert_close(auc_shuffled_at(poisoned, fixated.nonzero(), others.nonzero()), auc_shuffled(saliency, fixated, others))
    poisoned[2][fixated[2]] = torch.inf
    with pytest.raises(ValueError, match=r"NaN or ±inf values at fixations at batch indices \[2\]"):
        auc_shuffled_at(poisoned, fixated.nonzero(), others.nonzero())


@pytest.mark.parametrize(
    ("points", "error", "message"),
    [
        (np.zeros((4, 3)), TypeError, "torch.Tensor"),
        (torch.zeros(4, 3), TypeError, "integer"),
        (torch.zeros(4, 2, dtype=torch.long), ValueError, r"shape \(N, 3\)"),
        (torch.tensor([[0, 0, 0], [5, 0, 0]]), ValueError, r"rows \[1\] lie outside"),
        (torch.tensor([[0, 0, 0], [1, 24, 0], [1, 0, -1]]), ValueError, r"rows \[1, 2\] lie outside"),
        (torch.tensor([[0, 0, 0], [1, 0, 0], [3, 0, 0], [4, 0, 0]]), ValueError, r"fixations has no point at batch indices \[2\]"),
    ],
)
def test_bad_points_are_refused_with_the_rows_or_maps_named(points, error, message):
    saliency, _, others = batch(5)
    with pytest.raises(error, match=message):
        auc_shuffled_at(saliency, points, others.nonzero())


def test_branch_free_placement_counts_every_tie():
    from saliencylab.metrics.fixation_kernels import _twice_wins

    rng = np.random.default_rng(7)
    for k in range(1, 41):
        positives = np.sort(rng.integers(0, 6, k).astype(np.float64))  # many ties
        negatives = rng.choice([-1.0, 0.0, 2.0, 2.5, 5.0, 9.0], size=k % 19 + 1)  # groups full and partial
        expected = sum(2 * int((positives > n).sum()) + int((positives == n).sum()) for n in negatives)
        assert sum(_twice_wins(positives, n) for n in negatives) == expected, (k, negatives)
