"""CPU kernels of the fixation metrics, compiled with numba: AUC-Judd, shuffled AUC, NSS and information gain.

Each kernel takes (B, n) C-contiguous float32/float64 saliency rows (n = H·W pixels, row-major)
and (B, n) uint8 fixation rows (1 where a pixel is fixated, 0 elsewhere; the bool map's bytes),
scores one map per task with rows in parallel over numba's threads, accumulates in float64
whatever the input dtype, and returns (values (B,) float64, finite (B,) bool, then (B,) int64
counts of fixated pixels): `finite` is false where some saliency value of the row is NaN or
±inf, and that row's value is then meaningless, as is the value of a row whose count makes
the metric undefined; the callers refuse both, naming the batch indices (`run_rows`), so the
validation costs no extra pass over the maps. Rows are read, never written.

- AUC-Judd (`judd_rows`): the thresholds are the k distinct saliency values at fixated pixels
  (few, k ≤ the fixation count). They are sorted once; one pass over the n pixels then files
  each pixel under the number of thresholds at or below it, through a table of `cells_for(k)`
  equal-width cells spanning the thresholds: a pixel's cell is one subtraction, multiplication
  and truncation away, and only pixels whose cell holds a threshold compare against it. The
  cell index is a monotone function of the value computed identically for thresholds and
  pixels, so the filing is exact. Suffix sums of how many pixels were filed under each number
  give, for each threshold, the pixels at or above it: O(n + k log k) per map, ties exact, no sort of the n pixels.
- Shuffled AUC (`shuffled_rows`): positives and negatives (other images' fixated pixels) are
  both few; they are gathered, sorted and merged (Mann–Whitney with ties counting ½), with the
  count kept in integers until one final division. The pass over the map checks finiteness.
  `shuffled_points` does the same at listed points in one pass per map (reading no map
  whole), `shuffled_segments` from values already gathered (`auc.auc_shuffled_at`).
- NSS (`nss_rows`): one pass in blocks of `BLOCK` values that stay in L1 cache, on the values
  minus the map's first value (a common offset cancels exactly): each block's sum, its
  two-pass sum of squared deviations and the sum at fixated pixels, merged across blocks with
  Chan et al.'s pairwise update, so the variance has two-pass accuracy (none of the
  cancellation of a one-pass Σx² − (Σx)²/n) at the cost of one read.
- Information gain (`information_gain_rows`): one pass per map for its minimum, maximum and
  the sum of (value − minimum) (per block, merged so that every added term is non-negative:
  no cancellation), then log2 only at the fixated pixels. A baseline shared by the batch is
  one (1, n) row summarised once, never copied per map.

Flags as in `saliencylab.metrics.kernels` (`FAST`: sums may be reordered, changing results by
rounding only; `FINITE` only in the block min/max, whose results are discarded for rows that
fail the finiteness check, which keeps IEEE semantics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from saliencylab.metrics.inputs import refuse_unfixated, value_range
from saliencylab.metrics.kernels import FAST, FINITE, OPTIONS, torch_thread_count
from saliencylab.metrics.maps import KL_EPS

BLOCK = 256  # values per block of the NSS / information-gain pass (two loops over it in L1)
MASK_BLOCK = 64  # fixation bytes tested together before any fixated pixel is visited
CELLS_PER_THRESHOLD = 32  # AUC-Judd table cells per threshold: ~1/32 of pixels compare at all
MIN_CELLS, MAX_CELLS = 1024, 2**16  # table bounds (int64 entries: 8 KB to 512 KB)
_LARGEST = float(np.finfo(np.float64).max)

Refusal = Callable[[np.ndarray], None]  # raises ValueError for the rows a (B,) kernel output marks as unscorable


# ---------------------------------------------------------------------------------------------
# shared row helpers


@njit(fastmath=FAST, **OPTIONS)
def _count_marked(marked):
    """Number of marked pixels of a 0/1 uint8 row."""
    total = 0
    for j in range(marked.size):
        total += marked[j]
    return total


@njit(fastmath=FAST, **OPTIONS)
def _gather_marked(row, marked, out):
    """out[:count] = row's values (as float64) at the marked positions, in pixel order; returns count."""
    count = 0
    for start in range(0, marked.size, MASK_BLOCK):
        block = marked[start : start + MASK_BLOCK]
        hits = 0
        for j in range(block.size):  # vectorised; most blocks of a fixation map are empty
            hits += block[j]
        if hits:
            for j in range(block.size):
                if block[j]:
                    out[count] = row[start + j]
                    count += 1
    return count


@njit(fastmath=FAST, **OPTIONS)
def _marked_values(row, marked):
    """The float64 values of row at the marked positions, in pixel order."""
    values = np.empty(_count_marked(marked))
    _gather_marked(row, marked, values)
    return values


@njit(fastmath=FAST, **OPTIONS)
def _not_finite(x):
    """1 for NaN or ±inf, else 0; a comparison, which keeps its IEEE meaning under FAST (x − x does not)."""
    return np.int64(not abs(x) <= _LARGEST)


@njit(fastmath=FAST, **OPTIONS)
def _is_finite(row):
    """Whether every value of the row is finite."""
    bad = 0
    for j in range(row.size):
        bad += _not_finite(np.float64(row[j]))
    return bad == 0


@njit(fastmath=FINITE, **OPTIONS)
def _block_range(block, low, high):
    """(min, max) of finite values in block and the running (low, high); vectorised selects."""
    for j in range(block.size):
        x = np.float64(block[j])
        smaller = x < low
        low = smaller * x + (1 - smaller) * low
        larger = x > high
        high = larger * x + (1 - larger) * high
    return low, high


@njit(**OPTIONS)
def _outputs(batch):
    """Per-row outputs of a kernel, to be filled: values (float64), finite flags, fixated-pixel counts."""
    return np.empty(batch), np.empty(batch, dtype=np.bool_), np.empty(batch, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# AUC-Judd


@njit(**OPTIONS)
def cells_for(k):
    """Cells of the AUC-Judd filing table for k distinct thresholds: a power of two in [MIN_CELLS, MAX_CELLS]."""
    cells = MIN_CELLS
    while cells < CELLS_PER_THRESHOLD * k and cells < MAX_CELLS:
        cells *= 2
    return cells


@njit(**OPTIONS)
def _cell(value, low, scale, cells):
    """Table cell in [0, cells] of a value in the threshold span. No fastmath: thresholds and
    pixels get bit-identical arithmetic, so the cell is a monotone function of the value. The
    final clamp only matters for NaN, which would otherwise index outside the table."""
    return min(max(np.int64((value - low) * scale), 0), cells)


@njit(**OPTIONS)
def _distinct(ascending):
    """Distinct values of an ascending array and, for each, how many entries are at or above it."""
    thresholds = np.empty(ascending.size)
    at_or_above = np.empty(ascending.size, dtype=np.int64)
    k = 0
    for j in range(ascending.size):
        if j == 0 or ascending[j] != ascending[j - 1]:
            thresholds[k] = ascending[j]
            at_or_above[k] = ascending.size - j
            k += 1
    return thresholds[:k], at_or_above[:k]


@njit(fastmath=FAST, **OPTIONS)
def _pixels_at_or_above(row, thresholds, cells):
    """For each ascending threshold t_j, how many values of row are ≥ t_j, (k,) int64.

    Each value is filed under b = #{j: t_j ≤ x} in 0..k: its cell (clamped to the thresholds'
    span) gives the thresholds certainly below it, and it compares only with those in its own
    cell. Four interleaved histograms keep runs of equal b from queuing on one counter.
    """
    k = thresholds.size
    low, high = thresholds[0], thresholds[k - 1]
    scale = cells / (high - low) if high > low else 0.0
    if not scale < math.inf:  # a subnormal span: one cell for all, every pixel compares (exact, slow)
        scale = 0.0
    first = np.zeros(cells + 2, dtype=np.int64)  # first[c]: thresholds in cells below c
    for j in range(k):
        first[_cell(thresholds[j], low, scale, cells) + 1] += 1
    for c in range(cells + 1):
        first[c + 1] += first[c]
    filed = np.zeros((4, k + 1), dtype=np.int64)
    for j in range(row.size):
        x = np.float64(row[j])
        c = _cell(min(max(x, low), high), low, scale, cells)
        b = first[c]
        end = first[c + 1]
        while b < end and thresholds[b] <= x:
            b += 1
        filed[j & 3, b] += 1
    above = np.empty(k, dtype=np.int64)
    running = 0
    for j in range(k - 1, -1, -1):
        running += filed[0, j + 1] + filed[1, j + 1] + filed[2, j + 1] + filed[3, j + 1]
        above[j] = running
    return above


@njit(fastmath=FAST, **OPTIONS)
def _judd_row(row, marked):
    """AUC-Judd of one row and its count of fixated pixels; NaN without a fixated or a free pixel."""
    positives = _marked_values(row, marked)
    positives.sort()
    if positives.size == 0 or positives.size == row.size:
        return np.nan, positives.size
    thresholds, hits = _distinct(positives)
    k = thresholds.size
    pixels = _pixels_at_or_above(row, thresholds, cells_for(k))
    n_pos = positives.size
    n_neg = row.size - n_pos
    # trapezoids from (0, 0) through the thresholds from high to low to (1, 1), doubled
    area = 0.0
    x0 = y0 = 0.0
    for j in range(k - 1, -1, -1):
        x1 = (pixels[j] - hits[j]) / n_neg
        y1 = hits[j] / n_pos
        area += (x1 - x0) * (y0 + y1)
        x0, y0 = x1, y1
    area += (1.0 - x0) * (y0 + 1.0)
    return 0.5 * area, n_pos


@njit(parallel=True, **OPTIONS)
def judd_rows(saliency, fixated):
    """AUC-Judd of each row, finiteness, fixated pixels (the value is NaN for a count of 0 or n)."""
    batch = saliency.shape[0]
    values, finite, counts = _outputs(batch)
    for i in prange(batch):
        finite[i] = _is_finite(saliency[i])
        values[i], counts[i] = _judd_row(saliency[i], fixated[i])
    return values, finite, counts


# ---------------------------------------------------------------------------------------------
# shuffled AUC


@njit(**OPTIONS)
def _twice_wins(positives, negative):
    """2·#(positives > negative) + #(positives = negative) for k ≥ 1 ascending float64 positives.

    Two branch-free binary searches in one loop (a select, not a jump, per step, so no branch
    mispredictions): `below` ends as #(positives < negative), `at_or_below` as #(≤ negative).
    """
    below = at_or_below = 0
    span = positives.size
    while span > 1:
        half = span // 2
        below += half * (positives[below + half - 1] < negative)
        at_or_below += half * (positives[at_or_below + half - 1] <= negative)
        span -= half
    below += positives[below] < negative
    at_or_below += positives[at_or_below] <= negative
    return 2 * positives.size - below - at_or_below


@njit(**OPTIONS)
def _mann_whitney(positives, negatives):
    """P(pos > neg) + ½ P(pos = neg) of float64 positives (sorted here, in place) and negatives in any order.

    Each negative is placed among the positives by `_twice_wins`, so only the positives (the
    fewer, usually) are sorted: O((k + m) log k). Counted in integers until one division.
    """
    positives.sort()
    twice_wins = 0
    for negative in negatives:
        twice_wins += _twice_wins(positives, negative)
    return twice_wins / (2.0 * positives.size * negatives.size)


@njit(parallel=True, **OPTIONS)
def shuffled_rows(saliency, fixated, others):
    """Shuffled AUC of each row (positives at `fixated`, negatives at `others`), finiteness, and
    the counts of both (the value is NaN when either is 0)."""
    batch = saliency.shape[0]
    values, finite, counts = _outputs(batch)
    other_counts = np.empty(batch, dtype=np.int64)
    for i in prange(batch):
        finite[i] = _is_finite(saliency[i])
        positives = _marked_values(saliency[i], fixated[i])
        negatives = _marked_values(saliency[i], others[i])
        counts[i], other_counts[i] = positives.size, negatives.size
        values[i] = _mann_whitney(positives, negatives) if positives.size and negatives.size else np.nan
    return values, finite, counts, other_counts


@njit(**OPTIONS)
def _ordered_offsets(points, batch, n, width):
    """(offsets (B + 1,) int64, usable) of (N, 3) int64 (batch index, y, x) points listed in batch
    order; usable is false for points out of order or outside the maps, or a map without any."""
    offsets = np.zeros(batch + 1, dtype=np.int64)
    for j in range(points.shape[0]):
        b, y, x = points[j, 0], points[j, 1], points[j, 2]
        if b < 0 or b >= batch or (j and points[j - 1, 0] > b) or y < 0 or x < 0 or x >= width or y * width + x >= n:
            return offsets, False
        offsets[b + 1] += 1
    for i in range(batch):
        if offsets[i + 1] == 0:
            return offsets, False
        offsets[i + 1] += offsets[i]
    return offsets, True


@njit(parallel=True, **OPTIONS)
def shuffled_points(rows, points, others, width):
    """Shuffled AUC of each of the (B, n) rows at (N, 3) and (M, 3) int64 (batch index, y, x)
    points in batch order (as `torch.nonzero` lists them), in one pass per map.

    Each map's positives are gathered and sorted, then every negative is read and placed among
    them at once (`_twice_wins`), so the negatives are never stored. Returns ((B,) float64,
    usable): usable is false for points out of order or outside the maps, a map without
    points in either list, or NaN/±inf at a point; the caller then takes the general path,
    which names the problem (`shuffled_segments` after `inputs.point_segments`).
    """
    batch, n = rows.shape
    values = np.full(batch, np.nan)
    positive_offsets, positives_usable = _ordered_offsets(points, batch, n, width)
    negative_offsets, negatives_usable = _ordered_offsets(others, batch, n, width)
    if not (positives_usable and negatives_usable):
        return values, False
    if batch == 0:
        return values, True
    bad = np.zeros(batch, dtype=np.int64)
    scratch = np.empty((batch, np.max(np.diff(positive_offsets))))  # one buffer row per map: no allocation in the loop
    for i in prange(batch):
        start, stop = positive_offsets[i], positive_offsets[i + 1]
        positives = scratch[i, : stop - start]
        for j in range(start, stop):
            positives[j - start] = rows[i, points[j, 1] * width + points[j, 2]]
            bad[i] += _not_finite(positives[j - start])
        positives.sort()
        twice_wins = 0
        for j in range(negative_offsets[i], negative_offsets[i + 1]):
            negative = np.float64(rows[i, others[j, 1] * width + others[j, 2]])
            bad[i] += _not_finite(negative)
            twice_wins += _twice_wins(positives, negative)
        values[i] = twice_wins / (2.0 * positives.size * (negative_offsets[i + 1] - negative_offsets[i]))
    return values, bad.sum() == 0


@njit(parallel=True, **OPTIONS)
def shuffled_segments(positives, positive_offsets, negatives, negative_offsets):
    """Shuffled AUC of each row from the values at its listed points (`auc_shuffled_at`).

    Row i's positives are positives[positive_offsets[i] : positive_offsets[i + 1]] (float64, any
    order, duplicates kept), its negatives likewise; offsets are (B + 1,) int64. Returns (B,)
    float64, NaN for a row without positives or negatives (the caller refuses those first).
    """
    batch = positive_offsets.size - 1
    values = np.empty(batch)
    for i in prange(batch):
        mine = positives[positive_offsets[i] : positive_offsets[i + 1]].copy()  # _mann_whitney sorts it
        others = negatives[negative_offsets[i] : negative_offsets[i + 1]]
        values[i] = _mann_whitney(mine, others) if mine.size and others.size else np.nan
    return values


# ---------------------------------------------------------------------------------------------
# NSS


@njit(fastmath=FAST, **OPTIONS)
def _nss_row(row, marked):
    """NSS of one row (ddof 1; 0 for a constant row or a single pixel) and whether it is finite.

    Works on y = x − row[0], so that a large common offset cancels exactly before any sum.
    """
    n = row.size
    first = np.float64(row[0])
    count = 0
    mean = deviations = 0.0  # running mean of y and sum of squared deviations (Chan et al.)
    picked = 0.0  # Σ y at fixated pixels
    fixations = differing = bad = 0
    for start in range(0, n, BLOCK):
        block = row[start : start + BLOCK]
        marks = marked[start : start + BLOCK]
        width = block.size
        total = 0.0
        for j in range(width):
            x = np.float64(block[j])
            y = x - first
            total += y
            bad += _not_finite(x)
            differing += y != 0.0
        hits = _count_marked(marks)
        if hits:  # most blocks of a fixation map are empty
            fixations += hits
            for j in range(width):
                if marks[j]:
                    picked += np.float64(block[j]) - first
        block_mean = total / width
        block_deviations = 0.0
        for j in range(width):  # the block is in L1: a second loop costs no memory traffic
            d = (np.float64(block[j]) - first) - block_mean
            block_deviations += d * d
        merged = count + width
        delta = block_mean - mean
        mean += delta * (width / merged)
        deviations += block_deviations + delta * delta * (count * width / merged)
        count = merged
    if fixations == 0:
        return np.nan, bad == 0, 0
    if differing == 0 or n == 1 or deviations == 0.0:
        return 0.0, bad == 0, fixations
    return (picked / fixations - mean) / math.sqrt(deviations / (n - 1)), bad == 0, fixations


@njit(parallel=True, **OPTIONS)
def nss_rows(saliency, fixated):
    """NSS of each row, finiteness and fixated pixels (the value is NaN for a count of 0)."""
    batch = saliency.shape[0]
    values, finite, counts = _outputs(batch)
    for i in prange(batch):
        values[i], finite[i], counts[i] = _nss_row(saliency[i], fixated[i])
    return values, finite, counts


# ---------------------------------------------------------------------------------------------
# information gain


@njit(fastmath=FAST, **OPTIONS)
def _density_summary(row):
    """(low, span, unit sum, finite) of a row: the min-max scaled map is (x − low) / span and
    sums to `unit sum` (span 0 for a constant row)."""
    low = high = np.float64(row[0])
    above_low = 0.0  # Σ (x − low) over the values seen, every added term ≥ 0
    bad = 0
    count = 0
    for start in range(0, row.size, BLOCK):
        block = row[start : start + BLOCK]
        block_low, block_high = _block_range(block, np.float64(block[0]), np.float64(block[0]))
        block_sum = 0.0
        for j in range(block.size):
            x = np.float64(block[j])
            block_sum += x - block_low
            bad += _not_finite(x)
        merged_low = min(low, block_low)
        above_low += count * (low - merged_low) + block_sum + block.size * (block_low - merged_low)
        low = merged_low
        high = max(high, block_high)
        count += block.size
    span = high - low
    return low, span, (above_low / span if span > 0 else 0.0), bad == 0


@njit(**OPTIONS)
def _log_density(value, low, span, unit_sum, n):
    """log2(eps + density) of one pixel: min-max scaled, then divided by the map's sum; uniform if constant."""
    density = ((value - low) / span) / unit_sum if span > 0 else 1.0 / n
    return math.log2(KL_EPS + density)


@njit(**OPTIONS)
def _gain_row(row, marked, baseline, b_low, b_span, b_sum):
    """Mean of log2(eps + S) − log2(eps + Bl) over the fixated pixels of one row (NaN if none),
    the row's finiteness and its count of fixated pixels."""
    low, span, unit_sum, finite = _density_summary(row)
    n = row.size
    gain = 0.0
    fixations = 0
    for start in range(0, n, MASK_BLOCK):
        block = marked[start : start + MASK_BLOCK]
        if _count_marked(block):
            for j in range(block.size):
                if block[j]:
                    pixel = start + j
                    gain += _log_density(np.float64(row[pixel]), low, span, unit_sum, n)
                    gain -= _log_density(np.float64(baseline[pixel]), b_low, b_span, b_sum, n)
                    fixations += 1
    return (gain / fixations if fixations else np.nan), finite, fixations


@njit(parallel=True, **OPTIONS)
def information_gain_rows(saliency, fixated, baseline):
    """Information gain (bits) of each row over `baseline`: (B, n) per map or (1, n) shared.

    Returns (values, saliency finite, baseline finite, fixated pixels), each (B,); the value
    is NaN for a row without fixated pixel.
    """
    batch = saliency.shape[0]
    values, finite, counts = _outputs(batch)
    baseline_finite = np.empty(batch, dtype=np.bool_)
    shared = baseline.shape[0] != batch
    if shared:  # summarised once here, read at the fixated pixels of every row
        shared_summary = _density_summary(baseline[0])
    else:
        shared_summary = (0.0, 0.0, 0.0, True)
    for i in prange(batch):
        own = baseline[0] if shared else baseline[i]
        b_low, b_span, b_sum, b_finite = shared_summary if shared else _density_summary(own)
        values[i], finite[i], counts[i] = _gain_row(saliency[i], fixated[i], own, b_low, b_span, b_sum)
        baseline_finite[i] = b_finite
    return values, finite, baseline_finite, counts


# ---------------------------------------------------------------------------------------------
# the torch side


def rows(x: Tensor) -> np.ndarray:
    """A checked (B, H, W) CPU tensor as a C-contiguous (B, H·W) NumPy array (bool as uint8), a view when possible."""
    flat = x.detach().flatten(1).contiguous()
    return flat.view(torch.uint8).numpy() if flat.dtype == torch.bool else flat.numpy()


def run_rows(kernel: Callable[..., tuple[np.ndarray, ...]], *maps: Tensor, refusals: Sequence[Refusal]) -> Tensor:
    """A row kernel's values for checked (B, H, W) CPU maps, as a (B,) tensor in the first map's dtype.

    The kernel runs on the maps' `rows` on torch's thread count (`kernels.torch_thread_count`)
    and returns (values, per-row arrays ...); each per-row array goes, in order, to its
    refusal, which raises if the array shows a row the metric cannot score.

    Raises:
        ValueError: from a refusal (non-finite values, maps without fixations, ...), naming
            the batch indices.
    """
    with torch_thread_count():
        values, *per_row = kernel(*(rows(x) for x in maps))
    for array, refuse in zip(per_row, refusals, strict=True):
        refuse(array)
    return torch.from_numpy(values).to(maps[0].dtype)


def non_finite_refusal(x: Tensor, name: str) -> Refusal:
    """The refusal of a kernel's finite flags for map x: `value_range` names the batch indices."""

    def refuse(finite: np.ndarray) -> None:
        if not finite.all():
            value_range(x, name)  # raises
            raise AssertionError(f"a fixation kernel flags {name} values that value_range finds finite")

    return refuse


def unfixated_refusal(name: str) -> Refusal:
    """The refusal of a kernel's fixated-pixel counts for the fixation map `name`: none may be 0."""
    return lambda counts: refuse_unfixated(torch.from_numpy(counts == 0), name)
