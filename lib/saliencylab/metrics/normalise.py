"""Per-map normalisations the metrics apply: min-max scaling and conversion to a density.

Both work map by map over a (B, H, W) batch (never across the batch), return a new tensor in
the input's dtype on its device, and never modify their input. Each has a defined value for
the maps that break the textbook formula, instead of a silent NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saliencylab.metrics.inputs import check_maps, check_non_negative, value_range


def is_constant(x: Tensor) -> Tensor:
    """Which maps are constant (maximum equal to minimum), the case most metrics cannot score.

    Args:
        x: (B, H, W) float32 or float64, finite.

    Returns:
        (B,) bool on x's device.

    Raises:
        TypeError, ValueError: as `check_maps`; ValueError also for NaN or ±inf (batch indices listed).
    """
    check_maps(x=x)
    lo, hi = value_range(x, "x")
    return hi == lo


def minmax_normalise(x: Tensor) -> Tensor:
    """Scale each map to [0, 1]: (x − min) / (max − min), as the MIT benchmark does before SIM.

    A constant map (max == min) becomes all zeros; the MIT code would divide 0 by 0.

    Args:
        x: (B, H, W) float32 or float64, any finite range.

    Returns:
        (B, H, W) in x's dtype and on x's device; each non-constant map has minimum 0 and maximum 1.

    Raises:
        TypeError, ValueError: as `check_maps`; ValueError also for NaN or ±inf (batch indices listed).
    """
    check_maps(x=x)
    lo, hi = value_range(x, "x")
    return minmax_from_range(x, lo, hi)


def sum_normalise(x: Tensor) -> Tensor:
    """Divide each map by its sum so that it sums to 1 over H×W (a density over pixels).

    An all-zero map becomes the uniform density 1 / (H·W), as in pysaliency's
    `convert_saliency_map_to_density`; the MIT code leaves it at zero. Negative values are
    refused rather than shifted: min-max normalise first if the map is not a density.

    Args:
        x: (B, H, W) float32 or float64, finite, non-negative.

    Returns:
        (B, H, W) in x's dtype and on x's device; each map sums to 1 (up to rounding).

    Raises:
        TypeError, ValueError: as `check_maps`; ValueError for NaN, ±inf or negative values,
            naming the batch indices.
    """
    check_maps(x=x)
    lo, _ = value_range(x, "x")
    check_non_negative(lo, "x")
    return density(x)


def minmax_from_range(x: Tensor, lo: Tensor, hi: Tensor, out: Tensor | None = None) -> Tensor:
    """Min-max scaling of a checked (B, ...) map batch given its per-map range (B,); constant -> zeros.

    Writes into `out` (same shape as x) when given; x itself is never modified.
    """
    span = hi - lo
    span = torch.where(span > 0, span, torch.ones_like(span))  # constant maps: x − lo is already 0
    shape = (-1,) + (1,) * (x.ndim - 1)
    return torch.sub(x, lo.view(shape), out=out).div_(span.view(shape))


def density(x: Tensor, out: Tensor | None = None) -> Tensor:
    """Sum-normalisation of a checked non-negative (B, ...) batch; all-zero maps become uniform.

    Writes into `out` when given (`out` may be x itself, for working copies).
    """
    dims = tuple(range(1, x.ndim))
    total = x.sum(dim=dims, keepdim=True)
    zero = total == 0
    out = torch.div(x, torch.where(zero, torch.ones_like(total), total), out=out)
    if bool(zero.any()):
        out[zero.flatten()] = 1.0 / out[0].numel()
    return out
