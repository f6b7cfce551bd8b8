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
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from saliencylab.metrics.inputs import check_fraction, check_maps, value_range

IOU_MODES = ("exact", "paper")


class TopStats(NamedTuple):
    """Order statistics of a batch of maps that both IoU modes need, from one `topk` per map."""

    k: int  # pixels in the top set when values are distinct (the same for every map)
    threshold: Tensor  # (B,) paper A's threshold: the linear (1 − fraction) quantile
    kth: Tensor  # (B,) the k-th largest value


def top_stats(flat: Tensor, fraction: float, scratch: Tensor | None = None) -> TopStats:
    """Paper threshold and k-th largest value of each row of a (B, H·W) tensor.

    The quantile follows NumPy's default (`method="linear"`) bit for bit: virtual index
    v = (1 − fraction)(n − 1), lower index ⌊v⌋, weight g = v − ⌊v⌋, and NumPy's two-sided
    lerp (from the upper value when g ≥ 0.5). `scratch`, a tensor like `flat`, is optional
    working memory (its contents are overwritten).
    """
    n = flat.shape[1]
    position = (1.0 - fraction) * (n - 1)
    lower = math.floor(position)
    weight = position - lower
    k = n - math.ceil(position)
    below, above = order_statistics(flat, lower, scratch)
    diff = above - below
    threshold = above - diff * (1.0 - weight) if weight >= 0.5 else below + diff * weight
    kth = above if weight > 0 else below
    return TopStats(k, threshold, kth)


def order_statistics(flat: Tensor, index: int, scratch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ascending order statistics `index` and `index + 1` (the last one if out of range) of each row.

    Args:
        flat: (B, n) float tensor, finite. Not modified.
        index: 0-based rank from the smallest, in [0, n).
        scratch: optional (B, n) tensor like `flat` to work in (CPU only; overwritten).

    Returns:
        Two (B,) tensors in flat's dtype and on its device.
    """
    n = flat.shape[1]
    upper = min(index + 1, n - 1)
    if flat.device.type == "cpu":
        # NumPy's in-place introselect is several times faster than torch.topk for k ~ n/10 on CPU
        work = torch.empty_like(flat) if scratch is None else scratch
        array = work.copy_(flat.detach()).numpy()
        array.partition(upper, axis=1)
        above = torch.from_numpy(array[:, upper].copy())
        below = torch.from_numpy(array[:, :upper].max(axis=1)) if upper > index else above
        return below, above
    largest = torch.topk(flat, n - index, dim=1, sorted=False).values
    smallest_two = torch.topk(largest, min(2, n - index), dim=1, largest=False, sorted=True).values
    return smallest_two[:, 0], smallest_two[:, -1]


def count(mask: Tensor) -> Tensor:
    """Number of true entries in each row of a (B, n) bool tensor, as (B,) int64."""
    # summing uint8 into int32 is several times faster on CPU than summing bools (int64)
    accumulator = torch.int32 if mask.shape[1] < 2**31 else torch.int64
    return mask.view(torch.uint8).sum(dim=1, dtype=accumulator).long()


def paper_sets(flat: Tensor, stats: TopStats) -> Tensor:
    """Paper A's top sets: bool (B, H·W), true where x ≥ its map's threshold."""
    return flat >= stats.threshold[:, None]


def soft_sets(flat: Tensor, stats: TopStats) -> Tensor:
    """Tie-robust memberships (B, H·W) in flat's dtype: 1 above the k-th largest value, the
    remaining mass shared equally by the pixels equal to it, 0 below; each row sums to k."""
    kth = stats.kth[:, None]
    above = flat > kth
    equal = flat == kth
    # equal holds at least the k-th largest pixel, so the division is safe
    share = (stats.k - count(above)).to(flat.dtype) / count(equal).to(flat.dtype)
    return torch.where(above, 1.0, torch.where(equal, share[:, None], 0.0))


def top_set(x: Tensor, fraction: float = 0.1, mode: str = "exact") -> Tensor:
    """Membership of each pixel in its map's top-`fraction` set.

    Args:
        x: (B, H, W) float32/float64 maps, finite. Not modified.
        fraction: share of pixels in the top set, in (0, 1]; 0.1 is paper A's "top 90 %".
        mode: "paper" — 1.0 where x ≥ the map's linear (1 − fraction) quantile (np.percentile),
            else 0.0; "exact" — the tie-robust soft membership (module docstring), summing to
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
        return paper_iou(paper_sets(flat_a, stats_a), paper_sets(flat_b, stats_b), a.dtype)
    return soft_iou(soft_sets(flat_a, stats_a), soft_sets(flat_b, stats_b))


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
    return top_stats(flat, check_fraction(fraction)).threshold <= lo


def paper_iou(set_a: Tensor, set_b: Tensor, dtype: torch.dtype) -> Tensor:
    """|A ∩ B| / |A ∪ B| of two bool (B, H·W) sets, as a (B,) tensor of `dtype`; sets are non-empty."""
    inter = count(set_a & set_b)
    union = count(set_a) + count(set_b) - inter
    return inter.to(dtype) / union.to(dtype)


def soft_iou(m_a: Tensor, m_b: Tensor) -> Tensor:
    """Σ min / Σ max of two (B, H·W) membership tensors; Σ max = Σ a + Σ b − Σ min > 0."""
    overlap = torch.minimum(m_a, m_b).sum(dim=1)
    return overlap / (m_a.sum(dim=1) + m_b.sum(dim=1) - overlap)


def _check_mode(mode: str) -> None:
    if mode not in IOU_MODES:
        raise ValueError(f"unknown IoU mode {mode!r}; valid: {list(IOU_MODES)}")
