"""Area under the ROC curve of saliency at fixated pixels: AUC-Judd and shuffled AUC, ties exact.

Both sweep a threshold t down the saliency values and trace (false-positive rate, hit rate) =
(share of negatives with S ≥ t, share of positives with S ≥ t), integrated with the
trapezoid rule. Positives are the fixated pixels of the fixation map (each pixel once, as in
the MIT benchmark's binary maps). Ties are handled exactly and deterministically: every
threshold counts all pixels tied at it, so there is no random jitter (the MIT code adds
rand/1e7 to break ties, which makes its scores vary from run to run). Inputs are not modified;
outputs are (B,) tensors in the saliency map's dtype on its device.

Two implementations, equal to rounding (~1e-16 in float64) and tested against each other:
- on CPU, the numba kernels of `saliencylab.metrics.fixation_kernels`: thresholds only at the
  few fixated values, one filing pass over the pixels (AUC-Judd) or a merge of the few
  positives and negatives (shuffled AUC), rows in parallel, float64 accumulation;
- on other devices (CUDA), `auc_judd_torch` / `auc_shuffled_torch`: a full sort of every map
  in the input dtype, in chunks of rows holding at most `CHUNK_PIXELS` pixels, which bounds
  the working memory (about a dozen (rows, H·W) tensors, ~400 MB) whatever the batch size;
  results do not depend on the chunking.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from saliencylab.metrics import fixation_kernels
from saliencylab.metrics.inputs import batch_indices, check_fixations, check_maps, fixation_mask, point_segments, value_range

CHUNK_PIXELS = 2**22  # pixels per chunk of rows (16 maps of 512²)


def auc_judd(saliency: Tensor, fixations: Tensor) -> Tensor:
    """AUC-Judd (MIT AUC_Judd.m): thresholds at the saliency values of fixated pixels.

    Negatives are all non-fixated pixels. The curve runs from (0, 0) through one point per
    distinct saliency value at a fixated pixel to (1, 1); at each threshold both rates count
    every pixel with S ≥ t. With distinct values this equals the MIT code without jitter. The
    MIT code's `tp = i / Nfixations` assumes distinct values, so with ties it gives a
    different (order-dependent) curve, and its jitter makes it random; here tied pixels enter
    together, so a constant map scores exactly 0.5 (MIT: NaN after min-max). Min-max scaling,
    which the MIT code applies first, does not change the ranking and is skipped.

    Args:
        saliency: (B, H, W) float32/float64, any finite range. Not modified.
        fixations: (B, H, W) fixation map, bool or non-negative numbers, with at least one
            fixated and one non-fixated pixel per map.

    Returns:
        (B,) in [0, 1], saliency's dtype and device; 0.5 is chance.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf; a map with no
            fixated or no non-fixated pixel (batch indices listed).
    """
    check_maps(saliency=saliency)
    if saliency.device.type != "cpu":
        return auc_judd_torch(saliency, fixations)
    fixated = fixation_mask(fixations, saliency, "fixations")
    n = fixated.shape[1] * fixated.shape[2]

    def refuse_unscorable(counts: np.ndarray) -> None:
        fixation_kernels.unfixated_refusal("fixations")(counts)
        _refuse_full(torch.from_numpy(counts == n))

    refusals = (fixation_kernels.non_finite_refusal(saliency, "saliency"), refuse_unscorable)
    return fixation_kernels.run_rows(fixation_kernels.judd_rows, saliency, fixated, refusals=refusals)


def auc_judd_torch(saliency: Tensor, fixations: Tensor) -> Tensor:
    """`auc_judd` with batched torch operations (a full sort per map) in the input dtype, on any device.

    `auc_judd` uses it off the CPU; on CPU it is the second implementation that the tests compare
    the kernels with. Arguments, results and errors as `auc_judd`.
    """
    check_maps(saliency=saliency)
    value_range(saliency, "saliency")
    fixated = check_fixations(fixations, saliency, "fixations")
    _refuse_full(fixated.flatten(1).all(dim=1))
    return _by_chunks(_judd_rows, saliency.flatten(1), fixated.flatten(1))


def _refuse_full(full: Tensor) -> None:
    """Raise ValueError naming the batch indices where the (B,) bool `full` marks a map with every pixel fixated."""
    if bool(full.any()):
        raise ValueError(f"fixations leave no non-fixated pixel (negative) at batch indices {batch_indices(full)}")


def _judd_rows(scores: Tensor, fixated: Tensor) -> Tensor:
    """`auc_judd` of checked (b, P) rows."""
    hits, false_alarms, positive = _rates_at_ties(scores, fixated, ~fixated)
    # hold the point of the latest fixated threshold between fixated pixels (zero-area steps)
    steps = torch.arange(positive.shape[1], device=positive.device).expand_as(positive)
    latest = torch.where(positive, steps, -1).cummax(dim=1).values
    seen = latest >= 0
    latest = latest.clamp(min=0)
    zero = torch.zeros_like(hits)
    hit_curve = torch.where(seen, hits.gather(1, latest), zero)
    alarm_curve = torch.where(seen, false_alarms.gather(1, latest), zero)
    return _trapezoid(hit_curve, alarm_curve, close=True)


def auc_shuffled(saliency: Tensor, fixations: Tensor, other_fixations: Tensor) -> Tensor:
    """Shuffled AUC: negatives are the pixels fixated on other images, to discount centre bias.

    Every distinct saliency value is a threshold, so the score equals the Mann–Whitney
    probability P(S_pos > S_neg) + ½ P(S_pos = S_neg), as pysaliency computes it. The MIT code
    (AUC_shuffled.m, after Borji) instead draws as many negatives as fixations from the other
    map 100 times at random and sweeps thresholds in steps of 0.1; using all negatives and all
    thresholds gives the deterministic limit of that procedure without the threshold grid.
    A pixel fixated in both maps is a positive and a negative; a constant map scores 0.5.

    Args:
        saliency: (B, H, W) float32/float64, any finite range. Not modified.
        fixations: (B, H, W) fixation map of each image, bool or non-negative numbers.
        other_fixations: (B, H, W) fixation map pooled from other images (e.g. the union of
            fixations of 10 random other images, as in Borji's protocol), same conventions.

    Returns:
        (B,) in [0, 1], saliency's dtype and device; 0.5 is chance.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; NaN or ±inf; a map with no
            fixated pixel in either fixation map (batch indices listed).
    """
    check_maps(saliency=saliency)
    if saliency.device.type != "cpu":
        return auc_shuffled_torch(saliency, fixations, other_fixations)
    fixated = fixation_mask(fixations, saliency, "fixations")
    others = fixation_mask(other_fixations, saliency, "other_fixations")
    refusals = (
        fixation_kernels.non_finite_refusal(saliency, "saliency"),
        fixation_kernels.unfixated_refusal("fixations"),
        fixation_kernels.unfixated_refusal("other_fixations"),
    )
    return fixation_kernels.run_rows(fixation_kernels.shuffled_rows, saliency, fixated, others, refusals=refusals)


def auc_shuffled_at(saliency: Tensor, fixations: Tensor, other_fixations: Tensor) -> Tensor:
    """Shuffled AUC from fixation coordinates instead of fixation maps, pysaliency's native input.

    The same Mann–Whitney score as `auc_shuffled`, but every listed point counts, so a pixel
    fixated twice weighs twice (as in pysaliency); `auc_shuffled_at(s, f.nonzero(), o.nonzero())`
    equals `auc_shuffled(s, f, o)` for fixation maps f, o. Only the saliency values at the
    listed points are read (a protocol pooling thousands of other images' fixations never
    builds a map of them), so only those values are checked for NaN and ±inf. The few values
    are scored on the CPU whatever the device of the maps.

    Args:
        saliency: (B, H, W) float32/float64. Not modified.
        fixations: (N, 3) integer tensor of (batch index, row y, column x), the fixations on
            each image, any order.
        other_fixations: (M, 3), same layout: for map i, the fixations taken from other images
            (e.g. 10 random other images, Borji's protocol) moved to batch index i.

    Returns:
        (B,) in [0, 1], saliency's dtype and device; 0.5 is chance.

    Raises:
        TypeError, ValueError: wrong type, dtype, shape or device; points outside the maps; a map
            without points in either list, or NaN/±inf at a point (batch indices listed).
    """
    check_maps(saliency=saliency)
    with fixation_kernels.torch_thread_count():
        if saliency.device.type == "cpu" and all(_int64_triples(p, saliency) for p in (fixations, other_fixations)):
            points = (fixations.numpy(), other_fixations.numpy())  # views, strided as torch.nonzero made them: no copy
            values, usable = fixation_kernels.shuffled_points(fixation_kernels.rows(saliency), *points, saliency.shape[2])
            if usable:
                return torch.from_numpy(values).to(saliency.dtype)
        # any device, any order; names whatever problem made the CPU path unusable
        positives, positive_offsets = point_segments(fixations, saliency, "fixations")
        negatives, negative_offsets = point_segments(other_fixations, saliency, "other_fixations")
        positives, negatives = (v.to("cpu", torch.float64).numpy() for v in (positives, negatives))
        values = fixation_kernels.shuffled_segments(positives, positive_offsets.numpy(), negatives, negative_offsets.numpy())
    return torch.from_numpy(values).to(device=saliency.device, dtype=saliency.dtype)


def _int64_triples(points: object, saliency: Tensor) -> bool:
    """Whether points is an (N, 3) int64 tensor on saliency's device (the CPU kernel's input)."""
    if not isinstance(points, Tensor) or points.dtype != torch.int64 or points.device != saliency.device:
        return False
    return points.ndim == 2 and points.shape[1] == 3


def auc_shuffled_torch(saliency: Tensor, fixations: Tensor, other_fixations: Tensor) -> Tensor:
    """`auc_shuffled` with batched torch operations (a full sort per map) in the input dtype, on any device.

    `auc_shuffled` uses it off the CPU; on CPU it is the second implementation that the tests
    compare the kernels with. Arguments, results and errors as `auc_shuffled`.
    """
    check_maps(saliency=saliency)
    value_range(saliency, "saliency")
    fixated = check_fixations(fixations, saliency, "fixations")
    others = check_fixations(other_fixations, saliency, "other_fixations")
    return _by_chunks(_shuffled_rows, saliency.flatten(1), fixated.flatten(1), others.flatten(1))


def _shuffled_rows(scores: Tensor, fixated: Tensor, others: Tensor) -> Tensor:
    """`auc_shuffled` of checked (b, P) rows."""
    hits, false_alarms, _ = _rates_at_ties(scores, fixated, others)
    return _trapezoid(hits, false_alarms, close=False)


def _by_chunks(score_rows: Callable[..., Tensor], *rows: Tensor) -> Tensor:
    """score_rows(*rows) computed on chunks of at most CHUNK_PIXELS pixels and concatenated."""
    step = max(1, CHUNK_PIXELS // rows[0].shape[1])
    parts = [score_rows(*(r[start : start + step] for r in rows)) for start in range(0, rows[0].shape[0], step)]
    return torch.cat(parts) if parts else rows[0].new_empty(0)


def _rates_at_ties(scores: Tensor, positive: Tensor, negative: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hit and false-alarm rates at each pixel's threshold, scores in descending order.

    Args:
        scores: (B, P) float with P = H·W pixels per map.
        positive, negative: (B, P) bool, each row with at least one true.

    Returns:
        (hits, false_alarms, positive_sorted): hits and false_alarms are (B, P) in scores' dtype,
        the rates with S ≥ the score at that sorted position (ties counted in full);
        positive_sorted is the positive mask in the same order.
    """
    order = torch.argsort(scores, dim=1, descending=True)
    ordered = scores.gather(1, order)
    positive_sorted = positive.gather(1, order)
    hit_counts = positive_sorted.cumsum(dim=1)
    alarm_counts = negative.gather(1, order).cumsum(dim=1)
    # a position's threshold admits its whole tie group: read the counts at the group's end
    group_end = torch.ones_like(positive_sorted)
    group_end[:, :-1] = ordered[:, 1:] != ordered[:, :-1]
    steps = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    end_index = torch.where(group_end, steps, scores.shape[1]).flip(1).cummin(dim=1).values.flip(1)
    hits = hit_counts.gather(1, end_index).to(scores.dtype) / hit_counts[:, -1:].to(scores.dtype)
    false_alarms = alarm_counts.gather(1, end_index).to(scores.dtype) / alarm_counts[:, -1:].to(scores.dtype)
    return hits, false_alarms, positive_sorted


def _trapezoid(hits: Tensor, false_alarms: Tensor, close: bool) -> Tensor:
    """Area under the curve through (0, 0), the (B, P) points, and (1, 1) when `close`."""
    pad = [torch.zeros_like(hits[:, :1])]
    tail = [torch.ones_like(hits[:, :1])] if close else []
    y = torch.cat(pad + [hits] + tail, dim=1)
    x = torch.cat(pad + [false_alarms] + tail, dim=1)
    return torch.trapezoid(y, x, dim=1)
