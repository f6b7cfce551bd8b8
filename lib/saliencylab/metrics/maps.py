"""Map-versus-map metrics: MAE, CC, KL divergence and SIM, batched over (B, H, W).

Conventions follow the MIT saliency benchmark (cvzoya/saliency `code_forMetrics`; Bylinskii et
al., "What do different evaluation metrics tell us about saliency models?", TPAMI 2019) except
where a map is constant or all zero, where the MIT code returns NaN: there we return a defined
value (documented per metric, mostly pysaliency's) and callers flag such maps with
`is_constant`. All functions take two maps of one shape, dtype and device, compute in that
dtype, return a (B,) tensor on that device and never modify their inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saliencylab.metrics.inputs import check_maps, check_non_negative, value_range
from saliencylab.metrics.normalise import density, minmax_from_range

KL_EPS = 2.2204e-16  # MIT KLdiv.m uses MATLAB eps; pysaliency MIT_KLDiv pins it as 2.2204e-16


def mae(p: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error Σ|P − Y| / (H·W) per map (paper A's MAE).

    No normalisation is applied here: the caller decides it (`compare_maps` uses min-max
    scaled maps, so MAE lies in [0, 1]).

    Args:
        p: (B, H, W) float32/float64 prediction.
        y: (B, H, W) target, same shape, dtype and device.

    Returns:
        (B,) in the input dtype on the input device.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf (batch indices listed).
    """
    check_maps(p=p, y=y)
    value_range(p, "p")
    value_range(y, "y")
    return torch.sub(p, y).abs_().mean(dim=(1, 2))


def cc(p: Tensor, y: Tensor) -> Tensor:
    """Pearson's linear correlation coefficient between two maps (MIT CC.m).

    CC = Σ (p − p̄)(y − ȳ) / sqrt(Σ (p − p̄)² · Σ (y − ȳ)²). The MIT code z-scores both maps
    first (std with ddof 1); the z-scoring cancels, so ddof has no effect. CC is symmetric and
    invariant to a positive affine rescaling of either map. If either map is constant the
    correlation is undefined: we return 0.0 (pysaliency returns 0.0 when the first map is
    constant, MIT returns NaN).

    Args:
        p: (B, H, W) float32/float64, any finite range.
        y: (B, H, W), same shape, dtype and device.

    Returns:
        (B,) in [−1, 1] (up to rounding), input dtype and device.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf (batch indices listed).
    """
    check_maps(p=p, y=y)
    p_lo, p_hi = value_range(p, "p")
    y_lo, y_hi = value_range(y, "y")
    return correlation(p.flatten(1), y.flatten(1), (p_hi == p_lo) | (y_hi == y_lo))


def kldiv(p: Tensor, y: Tensor) -> Tensor:
    """KL divergence KL(G‖P) = Σ G · log(eps + G / (P + eps)), natural log (MIT KLdiv.m).

    G is the target (empirical or human) map and P the prediction, each divided by its sum
    over H×W; eps = 2.2204e-16 in both places, as in the MIT code and pysaliency's
    `MIT_KLDiv`. Lower is better; identical maps give 0. The second argument is the target.
    An all-zero map is taken as the uniform density (pysaliency; MIT keeps it at zero, so an
    all-zero prediction scores about ln(1/eps) ≈ 36 nats and an all-zero target scores 0).
    With eps this small, KL is sensitive to whether a prediction is exactly 0 where the target
    is not: min-max scaling must map the minimum to exactly 0, as `minmax_normalise` does.

    Args:
        p: (B, H, W) float32/float64 prediction, non-negative (a density or a saliency map).
        y: (B, H, W) target, non-negative, same shape, dtype and device.

    Returns:
        (B,) ≥ 0 (up to eps), input dtype and device.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN, ±inf or negative
            values (batch indices listed).
    """
    check_maps(p=p, y=y)
    for x, name in ((p, "p"), (y, "y")):
        lo, _ = value_range(x, name)
        check_non_negative(lo, name)
    return kl_of_densities(density(p.flatten(1)), density(y.flatten(1)))


def sim(p: Tensor, y: Tensor) -> Tensor:
    """Similarity (histogram intersection) SIM = Σ min(P, G) (MIT similarity.m).

    Each map is min-max scaled to [0, 1] and then divided by its sum, as the MIT code does;
    pysaliency skips the min-max step (it only shifts negative maps), so its SIM is higher for
    maps with a positive floor. A constant map scales to zeros and then counts as uniform
    (MIT returns NaN): SIM(const, G) = Σ min(1/(H·W), G). SIM is symmetric, in [0, 1], and 1
    for identical maps.

    Args:
        p: (B, H, W) float32/float64, any finite range.
        y: (B, H, W), same shape, dtype and device.

    Returns:
        (B,) in [0, 1], input dtype and device.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf (batch indices listed).
    """
    check_maps(p=p, y=y)
    p_unit = minmax_from_range(p.flatten(1), *value_range(p, "p"))
    y_unit = minmax_from_range(y.flatten(1), *value_range(y, "y"))
    return intersection(density(p_unit, out=p_unit), density(y_unit, out=y_unit))


def correlation(p: Tensor, y: Tensor, constant: Tensor) -> Tensor:
    """CC of each pair of rows of two checked (B, n) tensors, 0 where `constant` (B,) is true."""
    p_centred = p - p.mean(dim=1, keepdim=True)
    y_centred = y - y.mean(dim=1, keepdim=True)
    return correlation_of_centred(p_centred, y_centred, constant, scratch=y_centred)


def correlation_of_centred(p: Tensor, y: Tensor, constant: Tensor, scratch: Tensor | None = None) -> Tensor:
    """Σ p·y / (‖p‖ ‖y‖) over each row of two mean-free (B, n) tensors, 0 where `constant`.

    Centring first (instead of expanding Σ (p − p̄)(y − ȳ) into raw moments) avoids the
    cancellation that ruins float32 results. `scratch`, like p, is overwritten when given;
    it may be y itself.
    """
    scale = torch.linalg.vector_norm(p, dim=1) * torch.linalg.vector_norm(y, dim=1)
    covariance = torch.mul(p, y, out=scratch).sum(dim=1)
    # scale can underflow to 0 for a non-constant map with sub-ulp spread: treat it as constant
    undefined = constant | (scale == 0)
    safe_scale = torch.where(undefined, torch.ones_like(scale), scale)
    return torch.where(undefined, torch.zeros_like(scale), covariance / safe_scale)


def kl_of_densities(p: Tensor, g: Tensor, scratch: Tensor | None = None) -> Tensor:
    """Σ g · log(eps + g / (p + eps)) over each row of (B, n) densities p (prediction) and g (target)."""
    ratio = torch.add(p, KL_EPS, out=scratch)
    eps = torch.full((1, 1), KL_EPS, dtype=p.dtype, device=p.device)
    ratio = torch.addcdiv(eps, g, ratio, out=ratio).log_()  # eps + g / (p + eps), in one pass
    return ratio.mul_(g).sum(dim=1)


def intersection(p: Tensor, g: Tensor, scratch: Tensor | None = None) -> Tensor:
    """Σ min(p, g) over each row of two (B, n) tensors."""
    return torch.minimum(p, g, out=scratch).sum(dim=1)
