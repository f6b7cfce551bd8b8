"""Map-versus-map metrics: MAE, CC, KL divergence and SIM, batched over (B, H, W).

Conventions follow the MIT saliency benchmark (cvzoya/saliency `code_forMetrics`; Bylinskii et
al., "What do different evaluation metrics tell us about saliency models?", TPAMI 2019) except
where a map is constant or all zero, where the MIT code returns NaN: there we return a defined
value (documented per metric, mostly pysaliency's) and callers flag such maps with
`is_constant`. All functions take two maps of one shape, dtype and device, return a (B,)
tensor in that dtype on that device and never modify their inputs. Every sum is computed and
accumulated in float64 (`saliencylab.metrics.sums`), so a float32 result is the float64 result
on the same values, rounded once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saliencylab.metrics.inputs import check_maps, check_non_negative, value_range
from saliencylab.metrics.normalise import minmax_scaling, sum_scaling
from saliencylab.metrics.sums import accumulate

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
    flat_p, flat_y = p.flatten(1), y.flatten(1)
    total = accumulate(lambda a, b: (torch.sub(a, b).abs_(),), flat_p, flat_y)[0]
    return (total / flat_p.shape[1]).to(p.dtype)


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
    flat_p, flat_y = p.flatten(1), y.flatten(1)
    p_map, y_map = sum_scaling(flat_p), sum_scaling(flat_y)

    def moments(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return centred_moments(p_map.scaled(a), y_map.scaled(b), p_map.mean, y_map.mean)

    return correlation(*accumulate(moments, flat_p, flat_y), (p_hi == p_lo) | (y_hi == y_lo)).to(p.dtype)


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
    flat_p, flat_y = p.flatten(1), y.flatten(1)
    p_map, y_map = sum_scaling(flat_p), sum_scaling(flat_y)

    def divergence(a: Tensor, b: Tensor) -> tuple[Tensor]:
        return (kl_terms(p_map.to_density(a), y_map.to_density(b)),)

    return accumulate(divergence, flat_p, flat_y)[0].to(p.dtype)


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
    flat_p, flat_y = p.flatten(1), y.flatten(1)
    p_map = minmax_scaling(flat_p, *value_range(p, "p"))
    y_map = minmax_scaling(flat_y, *value_range(y, "y"))

    def overlap(a: Tensor, b: Tensor) -> tuple[Tensor]:
        return (torch.minimum(p_map.to_density(p_map.scaled(a)), y_map.to_density(y_map.scaled(b))),)

    return accumulate(overlap, flat_p, flat_y)[0].to(p.dtype)


def centred_moments(a: Tensor, b: Tensor, a_mean: Tensor, b_mean: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel terms da·db, da², db² of CC, da = a − a_mean, for float64 (B, w) blocks a, b and (B,) means.

    Centring with the float64 mean first, instead of expanding into raw moments, avoids the
    cancellation that ruins such sums. Overwrites a and b.
    """
    da = a.sub_(a_mean[:, None])
    db = b.sub_(b_mean[:, None])
    covariance = da * db
    return covariance, da.square_(), db.square_()


def correlation(covariance: Tensor, a_square: Tensor, b_square: Tensor, constant: Tensor) -> Tensor:
    """CC = Σ da·db / (‖da‖ ‖db‖) from the (B,) sums of `centred_moments`; 0 where `constant` (B,) is true."""
    scale = a_square.sqrt() * b_square.sqrt()
    # scale can underflow to 0 for a non-constant map with sub-ulp spread: treat it as constant
    undefined = constant | (scale == 0)
    return torch.where(undefined, 0.0, covariance / torch.where(undefined, 1.0, scale))


def kl_terms(prob: Tensor, dens: Tensor) -> Tensor:
    """g · log(eps + g / (p + eps)) per pixel of float64 (B, w) densities p (prediction) and g (target).

    Returns a new tensor; the inputs are not modified.
    """
    ratio = torch.add(prob, KL_EPS)
    return torch.div(dens, ratio, out=ratio).add_(KL_EPS).log_().mul_(dens)
