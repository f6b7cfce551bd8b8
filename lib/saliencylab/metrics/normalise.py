"""Per-map normalisations the metrics apply: min-max scaling and conversion to a density.

Both work map by map over a (B, H, W) batch (never across the batch), return a new tensor in
the input's dtype on its device, and never modify their input. Each has a defined value for
the maps that break the textbook formula, instead of a silent NaN. Sums are accumulated in
float64 (`saliencylab.metrics.sums`). `MapScaling` holds the same two normalisations as float64
constants, for metrics that apply them block by block inside a float64 sum.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from saliencylab.metrics.inputs import check_maps, check_non_negative, value_range
from saliencylab.metrics.sums import accumulate, row_sum


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
    total = row_sum(x.flatten(1))  # float64, rounded to x's dtype once for the division
    zero = total == 0
    shape = (-1,) + (1,) * (x.ndim - 1)
    out = torch.div(x, torch.where(zero, 1.0, total).to(x.dtype).view(shape), out=out)
    if bool(zero.any()):
        out[zero] = 1.0 / out[0].numel()
    return out


class MapScaling(NamedTuple):
    """Per-map float64 constants (each (B,)) taking a map x to u = (x − low) · scale and u to its density.

    With low = min and scale = 1 / (max − min) (0 for a constant map) u is the min-max scaled
    map; with low = 0 and scale = 1 the map itself. The density is u · inverse_sum + offset:
    u / Σu, or, for an all-zero u, the uniform 1 / n (inverse_sum = 0, offset = 1 / n).
    """

    low: Tensor
    scale: Tensor
    mean: Tensor  # mean of u over the n pixels
    inverse_sum: Tensor  # 1 / Σu, 0 for an all-zero u
    offset: Tensor

    def scaled(self, block: Tensor) -> Tensor:
        """u of a float64 (B, w) block of the map's columns, as a new float64 tensor."""
        return _scale(block, self.low, self.scale)

    def to_density(self, scaled: Tensor) -> Tensor:
        """The density of a (B, w) block of u, as a new float64 tensor."""
        return torch.addcmul(self.offset[:, None], scaled, self.inverse_sum[:, None])


def map_scaling(flat: Tensor, low: Tensor, scale: Tensor) -> MapScaling:
    """`MapScaling` of the checked (B, n) maps `flat` for a given low and scale (B,) (any float dtype).

    Σu is accumulated in float64 over (x − low) · scale directly, without cancellation.
    """
    low, scale = low.to(torch.float64), scale.to(torch.float64)
    n = flat.shape[1]
    total = accumulate(lambda block: (_scale(block, low, scale),), flat)[0]
    zero = total == 0
    inverse_sum = torch.where(zero, 0.0, 1.0 / torch.where(zero, 1.0, total))
    return MapScaling(low, scale, total / n, inverse_sum, zero.to(torch.float64) / n)


def sum_scaling(flat: Tensor) -> MapScaling:
    """`MapScaling` of checked (B, n) maps taken as they are (low 0, scale 1): their mean and density."""
    ones = torch.ones(flat.shape[0], dtype=torch.float64, device=flat.device)
    return map_scaling(flat, torch.zeros_like(ones), ones)


def minmax_scaling(flat: Tensor, lo: Tensor, hi: Tensor) -> MapScaling:
    """`MapScaling` of min-max scaling for checked (B, n) maps with per-map range lo, hi (B,)."""
    span = hi.to(torch.float64) - lo.to(torch.float64)
    return map_scaling(flat, lo, torch.where(span > 0, 1.0 / torch.where(span > 0, span, 1.0), 0.0))


def _scale(block: Tensor, low: Tensor, scale: Tensor) -> Tensor:
    """(block − low) · scale row by row, for a float64 (B, w) block and (B,) float64 constants."""
    return (block - low[:, None]) * scale[:, None]
