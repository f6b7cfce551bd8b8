"""Straightforward per-image NumPy implementations of the metrics, the oracle for tests and benchmark.

Written for clarity, one (H, W) image at a time in float64, directly from the definitions in
docs/metrics.md (MIT benchmark conventions, with our defined values for constant maps), and
independent of `saliencylab.metrics`: it shares no code with it, so agreement is evidence.
Fixation maps are (H, W) arrays whose positive entries mark fixated pixels.
"""

from __future__ import annotations

import math

import numpy as np

EPS = 2.2204e-16  # MIT KLdiv.m / InfoGain.m eps, as pinned by pysaliency's MIT_KLDiv


def minmax(x: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min); a constant map becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def to_density(x: np.ndarray) -> np.ndarray:
    """x / sum(x) for a non-negative map; an all-zero map becomes uniform."""
    x = np.asarray(x, dtype=np.float64)
    total = x.sum()
    if total == 0:
        return np.full_like(x, 1.0 / x.size)
    return x / total


def mae(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(p - y)))


def cc(p: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the z-scored maps (ddof 1, as MATLAB); 0.0 if either is constant."""
    if p.min() == p.max() or y.min() == y.max():
        return 0.0
    zp = (p - p.mean()) / p.std(ddof=1)
    zy = (y - y.mean()) / y.std(ddof=1)
    return float(np.corrcoef(zp.ravel(), zy.ravel())[0, 1])


def kldiv(p: np.ndarray, y: np.ndarray) -> float:
    """Σ G log(eps + G / (P + eps)) with P, G the sum-normalised prediction and target."""
    prob = to_density(p)
    target = to_density(y)
    return float(np.sum(target * np.log(EPS + target / (prob + EPS))))


def sim(p: np.ndarray, y: np.ndarray) -> float:
    """Σ min(P, G) after min-max scaling and sum-normalising both maps."""
    return float(np.sum(np.minimum(to_density(minmax(p)), to_density(minmax(y)))))


def top_count(n_pixels: int, fraction: float) -> int:
    """k = N − ⌈(1 − fraction)(N − 1)⌉, the size of the paper top set without ties."""
    return n_pixels - math.ceil((1.0 - fraction) * (n_pixels - 1))


def paper_top_set(x: np.ndarray, fraction: float) -> np.ndarray:
    """Paper A: keep pixels at or above the map's own linear (1 − fraction) quantile.

    In float64 whatever x's dtype (NumPy would interpolate a float32 map's quantile in float32).
    """
    x = np.asarray(x, dtype=np.float64)
    return x >= np.quantile(x, 1.0 - fraction)


def exact_top_set(x: np.ndarray, fraction: float) -> np.ndarray:
    """Tie-robust soft top set: 1 above the k-th largest value, ties share the remaining mass."""
    x = np.asarray(x, dtype=np.float64)
    k = top_count(x.size, fraction)
    kth = np.partition(x.ravel(), x.size - k)[x.size - k]  # the k-th largest value
    above = x > kth
    equal = x == kth
    membership = above.astype(np.float64)
    membership[equal] = (k - above.sum()) / equal.sum()
    return membership


def iou_paper(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    set_a, set_b = paper_top_set(a, fraction), paper_top_set(b, fraction)
    return float(np.logical_and(set_a, set_b).sum() / np.logical_or(set_a, set_b).sum())


def iou_exact(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    m_a, m_b = exact_top_set(a, fraction), exact_top_set(b, fraction)
    return float(np.minimum(m_a, m_b).sum() / np.maximum(m_a, m_b).sum())


def collapses(x: np.ndarray, fraction: float = 0.1) -> bool:
    """True when the paper top set is the whole image."""
    return bool(paper_top_set(x, fraction).all())


def compare_maps(pred: np.ndarray, target: np.ndarray, fraction: float = 0.1) -> dict[str, float | bool]:
    """The `compare` suite for one pair: every metric on min-max scaled maps, plus the flags.

    The top sets (IoUs, collapse flags) are taken on the raw maps: min-max scaling keeps the
    order of the values but its rounding can merge neighbours into a tie.
    """
    p, t = minmax(pred), minmax(target)
    return {
        "mae": mae(p, t),
        "iou_paper": iou_paper(pred, target, fraction),
        "iou_exact": iou_exact(pred, target, fraction),
        "cc": cc(p, t),
        "kldiv": kldiv(p, t),
        "sim": sim(p, t),
        "pred_degenerate": collapses(pred, fraction),
        "target_degenerate": collapses(target, fraction),
        "pred_constant": bool(pred.min() == pred.max()),
        "target_constant": bool(target.min() == target.max()),
    }


def nss(s: np.ndarray, fixations: np.ndarray) -> float:
    """Mean of the z-scored map (ddof 1) at fixated pixels; 0.0 for a constant map."""
    if s.min() == s.max():
        return 0.0
    z = (s - s.mean()) / s.std(ddof=1)
    return float(z[fixations > 0].mean())


def information_gain(s: np.ndarray, fixations: np.ndarray, baseline: np.ndarray) -> float:
    """Mean of log2(eps + S) − log2(eps + B) at fixated pixels, S and B min-maxed and sum-normalised."""
    prob = to_density(minmax(s))
    base = to_density(minmax(baseline))
    at = fixations > 0
    return float(np.mean(np.log2(EPS + prob[at]) - np.log2(EPS + base[at])))


def _roc_area(points: list[tuple[float, float]]) -> float:
    """Trapezoid area under (false-positive rate, hit rate) points listed in sweep order."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        area += (x1 - x0) * (y0 + y1) / 2.0
    return area


def auc_judd(s: np.ndarray, fixations: np.ndarray) -> float:
    """ROC through one point per distinct fixated value (descending), counting S ≥ t exactly.

    The counts come from sorting: #values ≥ t = size − (index of the first value ≥ t).
    """
    positive = np.sort(s[fixations > 0].astype(np.float64))
    negative = np.sort(s[fixations <= 0].astype(np.float64))
    thresholds = np.unique(positive)[::-1]
    false_alarms = (negative.size - np.searchsorted(negative, thresholds, side="left")) / negative.size
    hits = (positive.size - np.searchsorted(positive, thresholds, side="left")) / positive.size
    return _roc_area([(0.0, 0.0), *zip(false_alarms, hits), (1.0, 1.0)])


def auc_shuffled(s: np.ndarray, fixations: np.ndarray, other_fixations: np.ndarray) -> float:
    """P(S_pos > S_neg) + ½ P(S_pos = S_neg), negatives at the other images' fixated pixels."""
    positive = s[fixations > 0]
    negative = s[other_fixations > 0]
    greater = (positive[:, None] > negative[None, :]).mean()
    equal = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * equal)
