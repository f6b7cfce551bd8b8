"""Fixation-based metrics that average over fixated pixels: NSS and information gain.

Fixations come as a (B, H, W) fixation map, not as coordinates: a pixel (row y, column x) is
fixated when its value is positive (bool, 0/1 or counts) and counts once however many
fixations land on it, as in the MIT benchmark's binary maps (pysaliency averages over
fixations instead, so duplicates weigh more there). Every function returns a (B,) tensor in
the saliency map's dtype on its device and never modifies its inputs.

Two implementations of each, equal to rounding and tested against each other: on CPU the
numba kernels of `saliencylab.metrics.fixation_kernels` (one fused pass per map, float64
accumulation, rows in parallel); on other devices (CUDA) `nss_torch` and
`information_gain_torch`, batched tensor operations with every sum accumulated in float64
(`saliencylab.metrics.sums`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from saliencylab.metrics import fixation_kernels
from saliencylab.metrics.inputs import check_finite_range, check_fixations, check_maps, fixation_mask, row_range, value_range
from saliencylab.metrics.maps import KL_EPS
from saliencylab.metrics.normalise import density, minmax_from_range
from saliencylab.metrics.sums import accumulate, row_sum


def nss(saliency: Tensor, fixations: Tensor) -> Tensor:
    """Normalized scanpath saliency: the mean z-scored saliency at fixated pixels (MIT NSS.m).

    NSS = mean over fixated pixels of (S − mean(S)) / std(S), with std over H×W using ddof 1
    as MATLAB's `std` does (pysaliency uses ddof 0: its values are ours times
    sqrt(H·W / (H·W − 1)), a relative 2e-6 at 512²). A constant map scores 0.0, as in
    pysaliency, which then only subtracts the mean (MIT divides by 0).

    Args:
        saliency: (B, H, W) float32/float64, any finite range. Not modified.
        fixations: (B, H, W) fixation map, bool or non-negative numbers, at least one fixated
            pixel per map.

    Returns:
        (B,) in saliency's dtype and device; 0 is chance, higher is better.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf; a map without
            fixations (batch indices listed).
    """
    check_maps(saliency=saliency)
    if saliency.device.type != "cpu":
        return nss_torch(saliency, fixations)
    fixated = fixation_mask(fixations, saliency, "fixations")
    refusals = (fixation_kernels.non_finite_refusal(saliency, "saliency"), fixation_kernels.unfixated_refusal("fixations"))
    return fixation_kernels.run_rows(fixation_kernels.nss_rows, saliency, fixated, refusals=refusals)


def nss_torch(saliency: Tensor, fixations: Tensor) -> Tensor:
    """`nss` with batched torch operations, sums in float64, on any device.

    `nss` uses it off the CPU; on CPU it is the second implementation that the tests compare the
    kernels with. Arguments, results and errors as `nss`.
    """
    check_maps(saliency=saliency)
    lo, hi = value_range(saliency, "saliency")
    fixated = check_fixations(fixations, saliency, "fixations")
    flat = saliency.flatten(1)
    n = flat.shape[1]
    if n == 1:
        return torch.zeros_like(flat[:, 0])  # one pixel: constant, and ddof 1 has no std
    mean = row_sum(flat) / n  # float64, then a two-pass variance: no cancellation
    (squares,) = accumulate(lambda block: (block.sub(mean[:, None]).square_(),), flat)
    std = squares.div_(n - 1).sqrt_()
    constant = (hi == lo) | (std == 0)
    safe_std = torch.where(constant, torch.ones_like(std), std)
    score = torch.where(constant, torch.zeros_like(mean), (_mean_at(saliency, fixated) - mean) / safe_std)
    return score.to(saliency.dtype)


def information_gain(saliency: Tensor, fixations: Tensor, baseline: Tensor) -> Tensor:
    """Information gain of a saliency map over a baseline map at fixated pixels, in bits (MIT InfoGain.m).

    IG = mean over fixated pixels of log2(eps + S) − log2(eps + Bl), where S and Bl are the
    saliency and baseline maps, each min-max scaled to [0, 1] and then divided by its sum
    (MIT), and eps = 2.2204e-16. Always name the baseline when reporting IG: the MIT benchmark
    uses a centre-bias map; pysaliency defaults to the uniform density (pass
    `torch.ones(H, W)`: a constant map counts as uniform here). The min-max step makes the
    pixels at a map's minimum score log2(eps) ≈ −52; a probabilistic model's density should
    therefore be compared with pysaliency's log-likelihood IG instead, which skips it.

    Args:
        saliency: (B, H, W) float32/float64, any finite range. Not modified.
        fixations: (B, H, W) fixation map, bool or non-negative numbers, at least one fixated
            pixel per map.
        baseline: the baseline map, (B, H, W) or one (H, W) map shared by the batch, same dtype
            and device as saliency.

    Returns:
        (B,) bits per fixated pixel in saliency's dtype and device; > 0 means better than the
        baseline.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf; a map without
            fixations (batch indices listed).
    """
    own, expanded = _checked_baseline(saliency, baseline)
    if saliency.device.type != "cpu":
        return information_gain_torch(saliency, fixations, baseline)
    fixated = fixation_mask(fixations, saliency, "fixations")
    refusals = (
        fixation_kernels.non_finite_refusal(saliency, "saliency"),
        fixation_kernels.non_finite_refusal(expanded, "baseline"),
        fixation_kernels.unfixated_refusal("fixations"),
    )
    return fixation_kernels.run_rows(fixation_kernels.information_gain_rows, saliency, fixated, own, refusals=refusals)


def information_gain_torch(saliency: Tensor, fixations: Tensor, baseline: Tensor) -> Tensor:
    """`information_gain` with batched torch operations, sums in float64, on any device.

    A shared (H, W) baseline is normalised once and broadcast over the batch, never copied per
    map. `information_gain` uses this off the CPU; on CPU it is the second implementation that
    the tests compare the kernels with. Arguments, results and errors as `information_gain`.
    """
    own, expanded = _checked_baseline(saliency, baseline)
    s_unit = minmax_from_range(saliency, *value_range(saliency, "saliency"))
    b_lo, b_hi = row_range(own.flatten(1))
    check_finite_range(b_lo.expand(expanded.shape[0]), b_hi.expand(expanded.shape[0]), "baseline")
    b_unit = minmax_from_range(own, b_lo, b_hi)  # (1, H, W) when shared
    fixated = check_fixations(fixations, saliency, "fixations")
    gain = torch.log2(density(s_unit, out=s_unit).add_(KL_EPS)).sub_(torch.log2(density(b_unit, out=b_unit).add_(KL_EPS)))
    return _mean_at(gain, fixated).to(saliency.dtype)


def _checked_baseline(saliency: Tensor, baseline: Tensor) -> tuple[Tensor, Tensor]:
    """Check saliency and baseline; return the baseline as (B | 1, H, W) and as a (B, H, W) view.

    A shared (H, W) baseline is checked as its expanded view (a view: nothing is copied), so
    errors read as for a per-map baseline.
    """
    own = baseline
    if isinstance(baseline, Tensor) and baseline.ndim == 2 and isinstance(saliency, Tensor) and saliency.ndim == 3:
        own = baseline[None]
        baseline = baseline.expand(saliency.shape[0], -1, -1)
    check_maps(saliency=saliency, baseline=baseline)
    return own, baseline


def _mean_at(values: Tensor, fixated: Tensor) -> Tensor:
    """Mean of (B, H, W) `values` over the pixels where the bool map `fixated` is true, as (B,) float64."""
    picked = torch.where(fixated, values, torch.zeros_like(values))
    return row_sum(picked.flatten(1)) / fixated.flatten(1).sum(dim=1).to(torch.float64)
