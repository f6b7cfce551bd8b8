"""The map-versus-map metric suite of the `compare` stage, computed in one batched pass.

`compare_maps` min-max scales each map once and runs every metric on the scaled maps:

| key | normalisation inside `compare_maps` |
|---|---|
| `mae` | min-max to [0, 1]; mean absolute difference over H×W |
| `iou_paper`, `iou_exact` | min-max (order-preserving, so it only matters through rounding); top `fraction` |
| `cc` | min-max (CC is affine invariant: equal to CC of the raw maps) |
| `kldiv` | min-max, then each map divided by its sum; KL(target ‖ pred) |
| `sim` | min-max, then divided by the sum (the MIT SIM convention) |

So `cc` and `sim` equal the standalone metrics on the raw maps (up to rounding), both IoUs
equal `iou_top` on the raw maps exactly (the top sets are taken on the raw values: min-max
scaling keeps their order, but its rounding can merge neighbours into a tie), and `mae` and `kldiv` equal `mae` / `kldiv` of
`minmax_normalise` of each map; that KL differs from MIT's raw-map KL only when a map's minimum
is not 0. Constant maps get defined values (CC 0; MAE, IoU, KL and SIM computed with the map
scaled to zeros, i.e. uniform as a density) and are flagged so callers can exclude them.

Two implementations, equal to rounding (~1e-15 in float64; the IoUs exactly) and tested against
each other and against the NumPy reference (bench/reference_metrics.py). Both scale, sum and
accumulate in float64 whatever the input dtype and round each result to the input dtype once:
- on CPU, `saliencylab.metrics.kernels.compare_rows`: numba kernels, one map pair per thread,
  exact order statistics from a sample-bracketed selection and every other metric in one fused
  pass;
- on other devices (CUDA), `compare_maps_torch`: batched tensor operations on float64 blocks of
  columns (`saliencylab.metrics.sums.accumulate`), order statistics from `torch.topk`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from saliencylab.metrics import kernels
from saliencylab.metrics.inputs import batch_indices, check_fraction, check_maps, row_range
from saliencylab.metrics.iou import TopStats, exact_iou, paper_iou, top_quantile, top_stats
from saliencylab.metrics.maps import centred_moments, correlation, kl_terms
from saliencylab.metrics.normalise import MapScaling, minmax_scaling
from saliencylab.metrics.sums import accumulate

SUITE_KEYS, FLAG_KEYS = kernels.SUITE_KEYS, kernels.FLAG_KEYS


def compare_maps(pred: Tensor, target: Tensor, fraction: float = 0.1) -> dict[str, Tensor]:
    """All map-versus-map metrics of a batch of (prediction, target) pairs.

    Args:
        pred: (B, H, W) float32/float64 predicted saliency maps, any finite range. Not modified.
        target: (B, H, W) target maps (human masks, DeepGaze densities), same shape, dtype and
            device (resize the prediction with `resize_to` first).
        fraction: share of pixels in the IoU top sets, in (0, 1]; 0.1 is paper A's "top 90 %".

    Returns:
        Dict of (B,) tensors on the input device. Metrics in the input dtype: `mae` (lower is
        better), `iou_paper`, `iou_exact`, `cc`, `kldiv` (lower is better), `sim`. Bool flags:
        `pred_degenerate` / `target_degenerate` (paper-mode top set collapsed to the whole
        image, as `top_set_is_degenerate`) and `pred_constant` / `target_constant`.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf (all offending
            batch indices listed); fraction outside (0, 1].
    """
    check_maps(pred=pred, target=target)
    fraction = check_fraction(fraction)
    if pred.device.type != "cpu":
        return compare_maps_torch(pred, target, fraction)
    flat_p = pred.detach().flatten(1).contiguous().numpy()
    flat_t = target.detach().flatten(1).contiguous().numpy()
    rank, weight, k = top_quantile(flat_p.shape[1], fraction)
    with kernels.torch_thread_count():
        values, flags = kernels.compare_rows(flat_p, flat_t, rank, weight, k)
    if not np.isfinite(values[:, 0]).all():  # NaN, ±inf or a subnormal spread make a pair's MAE NaN
        _refuse_unscalable(pred.flatten(1), target.flatten(1))
    results = {key: torch.from_numpy(values[:, i].copy()).to(pred.dtype) for i, key in enumerate(SUITE_KEYS)}
    return results | {key: torch.from_numpy(flags[:, i].copy()) for i, key in enumerate(FLAG_KEYS)}


def compare_maps_torch(pred: Tensor, target: Tensor, fraction: float = 0.1) -> dict[str, Tensor]:
    """`compare_maps` with batched torch operations, on any device.

    `compare_maps` uses it off the CPU; on CPU it serves as the second implementation that the
    tests compare the numba kernels with. Top sets come from the raw maps (`top_stats`); every
    other metric is one float64 sum over blocks of columns of the min-max scaled maps, as in the
    kernel's fused pass. Arguments, results and errors as `compare_maps`.
    """
    check_maps(pred=pred, target=target)
    fraction = check_fraction(fraction)
    flat_p, flat_t = pred.flatten(1), target.flatten(1)
    p_range, t_range = row_range(flat_p), row_range(flat_t)
    if bool(_unscalable(*p_range).any() or _unscalable(*t_range).any()):
        _refuse_unscalable(flat_p, flat_t)
    if flat_p.shape[0] == 0:
        empty = flat_p.new_empty(0)
        return {key: empty.clone() for key in SUITE_KEYS} | {key: empty.bool() for key in FLAG_KEYS}
    p_constant, t_constant = p_range[1] == p_range[0], t_range[1] == t_range[0]
    p_stats, t_stats = top_stats(flat_p, fraction), top_stats(flat_t, fraction)
    iou_paper, iou_exact, p_full, t_full = _ious(flat_p, flat_t, p_stats, t_stats)
    p_map, t_map = minmax_scaling(flat_p, *p_range), minmax_scaling(flat_t, *t_range)
    sums = accumulate(lambda a, b: _suite_terms(a, b, p_map, t_map), flat_p, flat_t)
    absolute, covariance, p_square, t_square, overlap, divergence = sums
    dtype = pred.dtype
    return {
        "mae": (absolute / flat_p.shape[1]).to(dtype),
        "iou_paper": iou_paper,
        "iou_exact": iou_exact,
        "cc": correlation(covariance, p_square, t_square, p_constant | t_constant).to(dtype),
        "kldiv": divergence.to(dtype),
        "sim": overlap.to(dtype),
        "pred_degenerate": p_full,
        "target_degenerate": t_full,
        "pred_constant": p_constant,
        "target_constant": t_constant,
    }


def _suite_terms(a: Tensor, b: Tensor, p_map: MapScaling, t_map: MapScaling) -> tuple[Tensor, ...]:
    """Per-pixel terms of MAE, CC (three), SIM and KL for float64 (B, w) blocks of the raw maps."""
    x, y = p_map.scaled(a), t_map.scaled(b)
    prob, dens = p_map.to_density(x), t_map.to_density(y)
    absolute = torch.sub(x, y).abs_()
    moments = centred_moments(x, y, p_map.mean, t_map.mean)  # overwrites x and y
    return absolute, *moments, torch.minimum(prob, dens), kl_terms(prob, dens)


def _unscalable(lo: Tensor, hi: Tensor) -> Tensor:
    """Which maps cannot be min-max scaled: NaN or ±inf, or a spread so small (subnormal) that 1 / spread overflows.

    The spread is taken in float64, where the scaling is computed: float32 maps always scale.
    """
    span = hi.to(torch.float64) - lo.to(torch.float64)
    return ~(torch.isfinite(lo) & torch.isfinite(hi)) | ((span > 0) & (span < torch.finfo(torch.float64).tiny))


def _refuse_unscalable(flat_p: Tensor, flat_t: Tensor) -> None:
    """Raise ValueError listing the batch indices of the maps that `_unscalable` finds."""
    for name, flat in (("pred", flat_p), ("target", flat_t)):
        bad = ~torch.isfinite(flat).all(dim=1)
        if bool(bad.any()):
            raise ValueError(f"{name} holds NaN or infinite values at batch indices {batch_indices(bad)}")
    for name, flat in (("pred", flat_p), ("target", flat_t)):
        bad = _unscalable(*row_range(flat))
        if bool(bad.any()):
            raise ValueError(
                f"{name} maps at batch indices {batch_indices(bad)} vary by less than the smallest normal "
                "float64 number, too little to scale to [0, 1]; multiply them by a large constant first"
            )
    raise AssertionError("a compare_maps result is not finite although every map can be scaled")


def _ious(p: Tensor, t: Tensor, p_stats: TopStats, t_stats: TopStats) -> tuple[Tensor, ...]:
    """Paper and exact IoU, and which paper sets hold every pixel (the tie collapse)."""
    iou_paper, p_size, t_size = paper_iou(p, t, p_stats, t_stats)
    # a paper set of exactly k pixels is the top k, and then the soft set is its indicator
    tied = (p_size != p_stats.k) | (t_size != t_stats.k)
    iou_exact = iou_paper
    if bool(tied.any()):
        iou_exact = torch.where(tied, exact_iou(p, t, p_stats, t_stats), iou_paper)
    n = p.shape[1]
    return iou_paper, iou_exact, p_size == n, t_size == n
