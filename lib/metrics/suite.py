"""The map-versus-map metric suite of the `compare` stage, computed in one batched pass.

`compare_maps` min-max scales each map once and runs every metric on the scaled maps:

| key | normalisation inside `compare_maps` |
|---|---|
| `mae` | min-max to [0, 1]; mean absolute difference over H×W |
| `iou_paper`, `iou_exact` | min-max (order-preserving, so it only matters through rounding); top `fraction` |
| `cc` | min-max (CC is affine invariant: equal to CC of the raw maps) |
| `kldiv` | min-max, then each map divided by its sum; KL(target ‖ pred) |
| `sim` | min-max, then divided by the sum (the MIT SIM convention) |

So `cc`, `sim` and both IoUs equal the standalone metrics on the raw maps (up to rounding),
and `mae` and `kldiv` equal `mae` / `kldiv` of `minmax_normalise` of each map; that KL differs
from MIT's raw-map KL only when a map's minimum is not 0. Constant maps get defined values
(CC 0; MAE, IoU, KL and SIM computed with the map scaled to zeros, i.e. uniform as a density)
and are flagged so callers can exclude them.

Speed: on CPU the pairs are processed in chunks of a few maps so that each chunk stays in
cache from validation to the last metric, in preallocated working memory with in-place
operations; each map is scaled once into a mean-free working copy (which CC needs and from
which the scaled map is one addition away) and selected once for both IoU modes and the flags.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from saliencylab.metrics.inputs import batch_indices, check_fraction, check_maps, row_range
from saliencylab.metrics.iou import TopStats, exact_iou, paper_iou, top_stats
from saliencylab.metrics.maps import correlation_of_centred, intersection, kl_of_densities
from saliencylab.metrics.normalise import density

SUITE_KEYS = ("mae", "iou_paper", "iou_exact", "cc", "kldiv", "sim")
FLAG_KEYS = ("pred_degenerate", "target_degenerate", "pred_constant", "target_constant")
CPU_CHUNK_BYTES = 4 * 2**20  # of each input per chunk on CPU: 2–4 MB ran fastest on the 2-core dev machine


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
    flat_p, flat_t = pred.flatten(1), target.flatten(1)
    batch, n = flat_p.shape
    rows = batch if pred.device.type != "cpu" else max(1, CPU_CHUNK_BYTES // (n * pred.element_size()))
    work = _Workspace.like(flat_p[: min(rows, batch)])
    parts, bad_p, bad_t = [], [], []
    for start in range(0, batch, rows):
        p_chunk, t_chunk = flat_p[start : start + rows], flat_t[start : start + rows]
        p_range, t_range = row_range(p_chunk), row_range(t_chunk)
        bad_p.append(_non_finite(*p_range))
        bad_t.append(_non_finite(*t_range))
        if not (bad_p[-1].any() or bad_t[-1].any()):
            parts.append(_compare_chunk(_Map(p_chunk, *p_range), _Map(t_chunk, *t_range), fraction, work))
    for name, bad in (("pred", bad_p), ("target", bad_t)):
        if bad and bool(torch.cat(bad).any()):
            raise ValueError(f"{name} holds NaN or infinite values at batch indices {batch_indices(torch.cat(bad))}")
    if not parts:  # an empty batch
        empty = flat_p.new_empty(0)
        return {key: empty.clone() for key in SUITE_KEYS} | {key: empty.bool() for key in FLAG_KEYS}
    return {key: torch.cat([part[key] for part in parts]) for key in SUITE_KEYS + FLAG_KEYS}


class _Map(NamedTuple):
    flat: Tensor  # (b, H·W) raw maps of one chunk
    lo: Tensor  # (b,) per-map minimum
    hi: Tensor  # (b,) per-map maximum


class _Workspace(NamedTuple):
    """Working memory for one chunk, reused across chunks: three (b, H·W) maps and five masks."""

    pred: Tensor
    target: Tensor
    scratch: Tensor
    masks: tuple[Tensor, ...]

    @classmethod
    def like(cls, flat: Tensor) -> _Workspace:
        maps = [torch.empty_like(flat) for _ in range(3)]
        return cls(*maps, tuple(torch.empty_like(flat, dtype=torch.bool) for _ in range(5)))

    def rows(self, b: int) -> _Workspace:
        return _Workspace(self.pred[:b], self.target[:b], self.scratch[:b], tuple(m[:b] for m in self.masks))


def _non_finite(lo: Tensor, hi: Tensor) -> Tensor:
    return ~(torch.isfinite(lo) & torch.isfinite(hi))


def _compare_chunk(pred: _Map, target: _Map, fraction: float, work: _Workspace) -> dict[str, Tensor]:
    """The suite for one chunk of b pairs; see `compare_maps`."""
    work = work.rows(pred.flat.shape[0])
    p, t, scratch = work.pred, work.target, work.scratch
    p_constant, t_constant = pred.hi == pred.lo, target.hi == target.lo
    p_mean = _scaled_centred_into(pred, p)
    t_mean = _scaled_centred_into(target, t)
    # ranks, and so the top sets, are the same for the mean-free maps as for the scaled ones
    p_stats, t_stats = top_stats(p, fraction, scratch), top_stats(t, fraction, scratch)
    iou_paper, iou_exact, p_full, t_full = _ious(p, t, p_stats, t_stats, work)
    cc = correlation_of_centred(p, t, p_constant | t_constant, scratch)
    p.add_(p_mean[:, None])  # back to the min-max scaled maps
    t.add_(t_mean[:, None])
    mae = torch.sub(p, t, out=scratch).abs_().mean(dim=1)
    density(p, out=p)  # a constant map is all zero by now and becomes uniform
    density(t, out=t)
    return {
        "mae": mae,
        "iou_paper": iou_paper,
        "iou_exact": iou_exact,
        "cc": cc,
        "kldiv": kl_of_densities(p, t, scratch),
        "sim": intersection(p, t, scratch),
        "pred_degenerate": p_full,
        "target_degenerate": t_full,
        "pred_constant": p_constant,
        "target_constant": t_constant,
    }


def _scaled_centred_into(raw: _Map, out: Tensor) -> Tensor:
    """Write the min-max scaled map minus its mean into `out`; return that mean (b,).

    (x − lo) / span − mean((x − lo) / span) = (x − mean(x)) / span; constant maps give zeros.
    The order of the values is kept (subtracting a constant and scaling are monotone in
    floating point), so ranks and tie groups are those of the input.
    """
    span = raw.hi - raw.lo
    inverse = torch.where(span > 0, 1.0 / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(span))
    mean = raw.flat.mean(dim=1)
    # subtract, then scale: the minimum maps back to exactly 0 when the mean is added again
    torch.sub(raw.flat, mean[:, None], out=out).mul_(inverse[:, None])
    return (mean - raw.lo) * inverse


def _ious(p: Tensor, t: Tensor, p_stats: TopStats, t_stats: TopStats, work: _Workspace) -> tuple[Tensor, ...]:
    """Paper and exact IoU, and which paper sets hold every pixel (the tie collapse)."""
    iou_paper, p_size, t_size = paper_iou(p, t, p_stats, t_stats, work.masks)
    # a paper set of exactly k pixels is the top k, and then the soft set is its indicator
    tied = (p_size != p_stats.k) | (t_size != t_stats.k)
    iou_exact = iou_paper
    if bool(tied.any()):
        iou_exact = torch.where(tied, exact_iou(p, t, p_stats, t_stats, work.masks), iou_paper)
    n = p.shape[1]
    return iou_paper, iou_exact, p_size == n, t_size == n
