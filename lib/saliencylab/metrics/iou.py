"""IoU of the top-fraction pixel sets of two maps: paper A's thresholding and a tie-robust variant.

Paper A (`EvaluateSaliencyMaps.ipynb`, upstream Gkao03/Saliency-Map-Visualization) thresholds
each map at its own `np.percentile(x, 90)` (linear interpolation) and keeps `x >= t`: the top
~10 % of pixels, k = H·W − ⌈0.9 (H·W − 1)⌉ of them (26,215 at 512²) when values are distinct.
When ≥ ~90 % of a map's pixels tie at its minimum, t is that minimum and the "top" set
collapses to the whole image, so IoU = |other top set| / (H·W) (0.10000229 at 512²).

`mode="paper"` reproduces that exactly. `mode="exact"` (the default) gives every map a top set
of mass exactly k with a deterministic, order-free tie rule (research notes §5.4): pixels
above the k-th largest value get membership 1, pixels equal to it share the remaining mass
equally, and IoU = Σ min(a, b) / Σ max(a, b). Without ties both modes agree.

Precision: the quantile is interpolated in float64 between the two order statistics around the
cut (exact values of the map) and every value is compared with it as a float64, whatever the
input dtype: the paper set of a float32 map is the set of `x64 >= np.percentile(x64, 90)` with
x64 = x.astype(np.float64), the same as for that map stored in float64. (NumPy on a float32
array interpolates and rounds the threshold in float32, which can put it on the lower order
statistic and add that value's whole tie group to the set.) Since no value lies strictly
between the two order statistics, the set is x ≥ `cut`, one of them, compared in the input
dtype. All sums and ratios of both modes are computed in float64 and rounded once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from saliencylab.metrics.inputs import check_fraction, check_maps, value_range
from saliencylab.metrics.rows import count, order_statistics

IOU_MODES = ("exact", "paper")


class TopStats(NamedTuple):
    """Order statistics of a batch of maps that both IoU modes need, from one selection per map."""

    k: int  # pixels in the top set when values are distinct (the same for every map)
    cut: Tensor  # (B,) input dtype: the smallest map value ≥ paper A's threshold (the linear quantile)
    kth: Tensor  # (B,) input dtype: the k-th largest value


def top_quantile(n: int, fraction: float) -> tuple[int, float, int]:
    """Where the top-`fraction` cut of n values lies: (lower, weight, k).

    NumPy's linear quantile (1 − fraction) has virtual index v = (1 − fraction)(n − 1): lower
    index ⌊v⌋ (0-based, ascending) and weight g = v − ⌊v⌋; k = n − ⌈v⌉ values lie in the top
    set when values are distinct.
    """
    position = (1.0 - fraction) * (n - 1)
    lower = math.floor(position)
    return lower, position - lower, n - math.ceil(position)


def top_stats(flat: Tensor, fraction: float) -> TopStats:
    """Paper cut and k-th largest value of each row of a (B, H·W) tensor.

    The quantile follows NumPy's default (`method="linear"`) bit for bit (`top_quantile`),
    with NumPy's two-sided lerp (from the upper value when g ≥ 0.5), computed in float64.
    """
    lower, weight, k = top_quantile(flat.shape[1], fraction)
    below, above = order_statistics(flat, lower)
    below64, above64 = below.to(torch.float64), above.to(torch.float64)
    diff = above64 - below64
    threshold = above64 - diff * (1.0 - weight) if weight >= 0.5 else below64 + diff * weight
    # below ≤ threshold ≤ above and no value lies strictly between them
    cut = torch.where(threshold > below64, above, below)
    kth = above if weight > 0 else below
    return TopStats(k, cut, kth)


def paper_sets(flat: Tensor, stats: TopStats) -> Tensor:
    """Paper A's top sets: bool (B, H·W), true where x ≥ its map's threshold (x ≥ cut)."""
    return flat >= stats.cut[:, None]


def soft_sets(flat: Tensor, stats: TopStats) -> Tensor:
    """Tie-robust memberships (B, H·W) in flat's dtype: 1 above the k-th largest value, the
    remaining mass shared equally by the pixels equal to it, 0 below; each row sums to k."""
    kth = stats.kth[:, None]
    above = flat > kth
    equal = flat == kth
    # equal holds at least the k-th largest pixel, so the division is safe
    share = ((stats.k - count(above)).to(torch.float64) / count(equal).to(torch.float64)).to(flat.dtype)
    return torch.where(above, 1.0, torch.where(equal, share[:, None], 0.0))


def top_set(x: Tensor, fraction: float = 0.1, mode: str = "exact") -> Tensor:
    """Membership of each pixel in its map's top-`fraction` set.

    Args:
        x: (B, H, W) float32/float64 maps, finite. Not modified.
        fraction: share of pixels in the top set, in (0, 1]; 0.1 is paper A's "top 90 %".
        mode: "paper" — 1.0 where x ≥ the map's linear (1 − fraction) quantile (np.percentile,
            interpolated in float64), else 0.0; "exact" — the tie-robust soft membership (module docstring), summing to
            k = H·W − ⌈(1 − fraction)(H·W − 1)⌉ per map.

    Returns:
        (B, H, W) in x's dtype on x's device, values in [0, 1].

    Raises:
        TypeError, ValueError: wrong type, dtype or shape; NaN or ±inf (batch indices listed);
            fraction outside (0, 1]; unknown mode.
    """
    check_maps(x=x)
    value_range(x, "x")
    fraction = check_fraction(fraction)
    _check_mode(mode)
    flat = x.flatten(1)
    stats = top_stats(flat, fraction)
    sets = paper_sets(flat, stats).to(x.dtype) if mode == "paper" else soft_sets(flat, stats)
    return sets.view_as(x)


def iou_top(a: Tensor, b: Tensor, fraction: float = 0.1, mode: str = "exact") -> Tensor:
    """Intersection over union of the top-`fraction` pixel sets of two maps (paper A's IoU).

    IoU = Σ min(m_a, m_b) / Σ max(m_a, m_b) with m the memberships of `top_set`; for the
    binary sets of paper mode this is |A ∩ B| / |A ∪ B|. Each map is thresholded on its own,
    so IoU is invariant to any increasing transformation applied to one map (min-max scaling
    included, up to rounding that merges values).

    Args:
        a: (B, H, W) float32/float64 maps, finite. Not modified.
        b: (B, H, W), same shape, dtype and device.
        fraction: share of pixels in each top set, in (0, 1]; default 0.1 as in paper A.
        mode: "exact" (default, tie-robust, mass exactly k) or "paper" (x ≥ percentile; a map
            with ≥ (1 − fraction) of its pixels tied at the minimum keeps every pixel).

    Returns:
        (B,) in [0, 1], input dtype and device. Symmetric; 1 for identical maps.

    Raises:
        TypeError, ValueError: as `top_set`, plus mismatched shapes, dtypes or devices.
    """
    check_maps(a=a, b=b)
    value_range(a, "a")
    value_range(b, "b")
    fraction = check_fraction(fraction)
    _check_mode(mode)
    flat_a, flat_b = a.flatten(1), b.flatten(1)
    stats_a, stats_b = top_stats(flat_a, fraction), top_stats(flat_b, fraction)
    if mode == "paper":
        return paper_iou(flat_a, flat_b, stats_a, stats_b)[0]
    return exact_iou(flat_a, flat_b, stats_a, stats_b)


def top_set_is_degenerate(x: Tensor, fraction: float = 0.1) -> Tensor:
    """Which maps suffer paper A's tie collapse: their paper-mode top set is the whole image.

    That happens when the (1 − fraction) quantile equals the map's minimum, i.e. when more
    than (1 − fraction)(H·W − 1) pixels tie at the minimum (a mostly-zero mask, a constant
    map). Paper-mode IoU against such a map is |other top set| / (H·W). Exact mode is not
    affected: it spreads the remaining mass over the tied pixels. Milder ties at the cut only
    make the paper set slightly larger than k and are not flagged.

    Args:
        x: (B, H, W) float32/float64 maps, finite. Not modified.
        fraction: share of pixels in the top set, in (0, 1].

    Returns:
        (B,) bool on x's device.

    Raises:
        TypeError, ValueError: wrong type, dtype or shape; NaN or ±inf; fraction outside (0, 1].
    """
    check_maps(x=x)
    lo, _ = value_range(x, "x")
    flat = x.flatten(1)
    return top_stats(flat, check_fraction(fraction)).cut <= lo


def paper_iou(flat_a: Tensor, flat_b: Tensor, stats_a: TopStats, stats_b: TopStats) -> tuple[Tensor, Tensor, Tensor]:
    """|A ∩ B| / |A ∪ B| of the paper top sets of two (B, n) batches, and the set sizes.

    Args:
        flat_a, flat_b: (B, n) float maps. Not modified.
        stats_a, stats_b: their `top_stats`.

    Returns:
        (iou, size_a, size_b): iou (B,) in flat_a's dtype (the float64 ratio rounded once); sizes
        (B,) int64 (n for a collapsed set).
    """
    set_a = paper_sets(flat_a, stats_a)
    set_b = paper_sets(flat_b, stats_b)
    size_a, size_b = count(set_a), count(set_b)
    inter = count(set_a.logical_and_(set_b))  # sets are never empty: the union is positive
    iou = inter.to(torch.float64) / (size_a + size_b - inter).to(torch.float64)
    return iou.to(flat_a.dtype), size_a, size_b


def exact_iou(flat_a: Tensor, flat_b: Tensor, stats_a: TopStats, stats_b: TopStats) -> Tensor:
    """Σ min(m_a, m_b) / Σ max(m_a, m_b) of the tie-robust memberships, from pixel counts.

    With A the pixels above the k-th largest value (membership 1) and E those equal to it
    (membership s = (k − |A|) / |E|), Σ min = |A_a∩A_b| + s_b |A_a∩E_b| + s_a |E_a∩A_b| +
    min(s_a, s_b) |E_a∩E_b|, and Σ max = 2k − Σ min since each membership sums to k. The
    memberships themselves are never built.

    Args:
        flat_a, flat_b: (B, n) float maps. Not modified.
        stats_a, stats_b: their `top_stats`.

    Returns:
        (B,) in flat_a's dtype (computed in float64, rounded once).
    """
    dtype = torch.float64
    above_a, equal_a = flat_a > stats_a.kth[:, None], flat_a == stats_a.kth[:, None]
    above_b, equal_b = flat_b > stats_b.kth[:, None], flat_b == stats_b.kth[:, None]
    # each E holds at least its k-th largest pixel, so the divisions are safe
    share_a = (stats_a.k - count(above_a)).to(dtype) / count(equal_a).to(dtype)
    share_b = (stats_b.k - count(above_b)).to(dtype) / count(equal_b).to(dtype)

    def joint(x: Tensor, y: Tensor) -> Tensor:
        return count(x & y).to(dtype)

    overlap = (
        joint(above_a, above_b)
        + share_b * joint(above_a, equal_b)
        + share_a * joint(equal_a, above_b)
        + torch.minimum(share_a, share_b) * joint(equal_a, equal_b)
    )
    return (overlap / (2 * stats_a.k - overlap)).to(flat_a.dtype)


def _check_mode(mode: str) -> None:
    if mode not in IOU_MODES:
        raise ValueError(f"unknown IoU mode {mode!r}; valid: {list(IOU_MODES)}")
