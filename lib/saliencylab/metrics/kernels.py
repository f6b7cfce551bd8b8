"""CPU kernels of the metric suite, compiled with numba: exact order statistics and the fused `compare` pass.

Both work on (B, n) C-contiguous float32/float64 NumPy arrays, one row (map) or row pair per
task, rows in parallel over numba's threads; everything is accumulated in float64.

Order statistics (the top-set thresholds) are exact, the same values a full sort gives, in
about three passes over a row whatever its ties:
1. a jittered sample of ~`SAMPLE_SIZE` values (one from each stretch of n / SAMPLE_SIZE
   values, at a hashed offset, so that smooth or periodic maps do not bias it) brackets the
   wanted ranks with `MARGIN_SIGMAS` binomial standard deviations either side; `CUTS` + 1
   sample values split the bracket;
2. one vectorised pass counts the values below the first cut and at or below every cut, which
   places each wanted rank in one sub-interval (or exactly on a cut, how tie blocks resolve);
3. one pass gathers the few values strictly inside that sub-interval, skipping blocks of
   `GATHER_BLOCK` values that hold none, and a partition of the gathered values finishes.
If the sample misled the bracket (a rank outside it), the row is partitioned whole instead:
slower, equally exact.

The fused pass of `compare_rows` computes every metric of `saliencylab.metrics.compare_maps`
in one more pass over both maps, with the logarithm of the KL divergence evaluated by `_log`,
a vectorisable log accurate to about 2 ulp (numba's `math.log` is a scalar libm call that
would cost more than the rest of the pass together).

Floating-point flags: sums may be reordered (`reassoc`) and multiply-adds fused, so results
differ from a sequential float64 sum by rounding only (~1e-16 relative on 512² maps). The min/
max scan also assumes finite values (`nnan`, `ninf`) so that it vectorises; callers check
finiteness from the fused pass's MAE, which any NaN or infinity turns into NaN (that pass keeps
IEEE NaN semantics).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
import torch
from numba import njit, prange

from saliencylab.metrics.maps import KL_EPS

FAST = {"reassoc", "nsz", "contract", "arcp"}  # reorder sums, fuse multiply-adds; NaN/inf semantics kept
FINITE = FAST | {"nnan", "ninf"}  # only where inputs are finite or the results are discarded
OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}  # no ZeroDivisionError branches

SAMPLE_SIZE = 4096  # values sampled per row to bracket the wanted ranks
MARGIN_SIGMAS = 4.0  # bracket half-width beyond the sampled ranks, in binomial standard deviations
CUTS = 4  # sub-intervals the bracket is split into by sample values
GATHER_BLOCK = 16  # values tested together before any is gathered
SCAN_BLOCK = 256  # values per block of the counting scan
LOG_BLOCK = 512  # values per block of the fused pass (the log runs block-wise)

SUITE_KEYS = ("mae", "iou_paper", "iou_exact", "cc", "kldiv", "sim")  # columns of compare_rows' values
FLAG_KEYS = ("pred_degenerate", "target_degenerate", "pred_constant", "target_constant")  # and of its flags

_HASH_MULTIPLIER = 2654435761  # ⌊2³² / golden ratio⌋: sample offsets without a period
_LN2 = math.log(2.0)
_MANTISSA = np.uint64((1 << 52) - 1)
_EXPONENT_ONE = np.uint64(1023 << 52)  # the exponent bits of 1.0
_SQRT2_MANTISSA = np.uint64(int(np.float64(math.sqrt(2.0)).view(np.uint64)) & ((1 << 52) - 1))
# 2·atanh(s) = 2s (1 + z/3 + z²/5 + …), z = s²; with |s| ≤ 0.1716 eleven terms reach 1e-17
_ATANH_TERMS = tuple(1.0 / (2 * i + 1) for i in range(11))


# ---------------------------------------------------------------------------------------------
# logarithm


@njit(fastmath=FAST, **OPTIONS)
def _log(values, mantissas, out):
    """out[j] = ln(values[j]) for positive, normal float64 values (1-D arrays of one length).

    values = 2^e · m with m in [√2/2, √2) (bit manipulation, vectorisable), then
    ln = e·ln 2 + 2 atanh((m − 1)/(m + 1)) by its series. `mantissas` is scratch.
    """
    bits = values.view(np.uint64)
    mantissa_bits = mantissas.view(np.uint64)
    for j in range(values.size):
        fraction = bits[j] & _MANTISSA
        upper_half = np.uint64(fraction > _SQRT2_MANTISSA)  # m ≥ √2: halve m, add 1 to e
        mantissa_bits[j] = fraction | (_EXPONENT_ONE - (upper_half << np.uint64(52)))
        out[j] = np.float64(np.int64(bits[j] >> np.uint64(52)) - 1023 + np.int64(upper_half))
    for j in range(values.size):
        m = mantissas[j]
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        series = _ATANH_TERMS[10]
        for term in range(9, 0, -1):
            series = _ATANH_TERMS[term] + z * series
        out[j] = out[j] * _LN2 + 2.0 * s + 2.0 * s * z * series


@njit(fastmath=FAST, **OPTIONS)
def log_array(values):
    """ln of a 1-D float64 array of positive normal values (`_log` for callers outside a kernel: the tests)."""
    out = np.empty_like(values)
    _log(values, np.empty_like(values), out)
    return out


# ---------------------------------------------------------------------------------------------
# order statistics


@njit(fastmath=FAST, **OPTIONS)
def _cuts(row, rank, upper, sample_buffer):
    """CUTS + 1 ascending sample values bracketing the ascending ranks `rank` ≤ `upper` of row."""
    n = row.size
    stride = max(1, n // SAMPLE_SIZE)
    m = n // stride
    sample = sample_buffer[:m]
    for j in range(m):  # one value from each stretch of `stride`, at a hashed offset (jittered sampling)
        hashed = (j * _HASH_MULTIPLIER) & 0xFFFFFFFF  # Knuth's multiplicative hash, 32 bits
        sample[j] = row[j * stride + ((hashed * stride) >> 32)]  # scaled into [0, stride)
    scale = (m - 1) / max(n - 1, 1)  # full-row rank → sample rank
    share = rank / max(n - 1, 1)
    margin = MARGIN_SIGMAS * math.sqrt(m * share * (1.0 - share)) + 2.0
    first = max(0, int(math.floor(rank * scale - margin)))
    last = min(m - 1, int(math.ceil(upper * scale + margin)))
    ordered = np.partition(sample, np.array([first, last]))
    inside = np.sort(ordered[first : last + 1])
    cuts = np.empty(CUTS + 1)
    for c in range(CUTS + 1):
        cuts[c] = inside[(c * (last - first)) // CUTS]
    return cuts


@njit(fastmath=FINITE, **OPTIONS)
def _scan(row, cuts, at_or_below):
    """Min, max and sum of a finite row; count below cuts[0] and, in at_or_below[c], at or below cuts[c].

    Block by block, so that every count is a vectorised loop over values already in L1 cache.
    """
    low = np.float64(row[0])
    high = low
    total = 0.0
    below = 0
    at_or_below[:] = 0
    for start in range(0, row.size, SCAN_BLOCK):
        block = row[start : start + SCAN_BLOCK]
        for j in range(block.size):
            x = np.float64(block[j])
            smaller = x < low  # the arithmetic select vectorises as min/max, a branch would not
            low = smaller * x + (1 - smaller) * low
            larger = x > high
            high = larger * x + (1 - larger) * high
            total += x
        count = 0
        for j in range(block.size):
            count += block[j] < cuts[0]
        below += count
        for c in range(CUTS + 1):
            count = 0
            for j in range(block.size):
                count += block[j] <= cuts[c]
            at_or_below[c] += count
    return low, high, total, below


@njit(fastmath=FAST, **OPTIONS)
def _gather(row, low, high, buffer):
    """Copy the values strictly between low and high into buffer; return how many."""
    count = 0
    for start in range(0, row.size, GATHER_BLOCK):
        block = row[start : start + GATHER_BLOCK]
        hits = 0
        for j in range(block.size):  # vectorised; most blocks hold no wanted value
            hits += (block[j] > low) & (block[j] < high)
        if hits:
            for j in range(block.size):
                if low < block[j] < high:
                    buffer[count] = block[j]
                    count += 1
    return count


@njit(**OPTIONS)
def _pick(values, rank, upper):
    """Ascending order statistics rank ≤ upper (adjacent or equal) of a 1-D array it may reorder."""
    ordered = np.partition(values, upper)
    top = ordered[upper]
    return (ordered[:upper].max() if upper > rank else top), top


@njit(**OPTIONS)
def _locate(rank, below, at_or_below):
    """Sub-interval of a rank: 0 for cuts[0] itself, c for (cuts[c−1], cuts[c]]; −1 outside the bracket."""
    if rank < below or rank >= at_or_below[CUTS]:
        return -1
    c = 0
    while at_or_below[c] <= rank:
        c += 1
    return c


@njit(**OPTIONS)
def _resolve(row, rank, upper, cuts, below, at_or_below, buffer):
    """Exact ascending order statistics rank and upper (= rank or rank + 1) of row from its scan."""
    first = _locate(rank, below, at_or_below)
    last = _locate(upper, below, at_or_below)
    if first < 0 or last < 0:  # the sample misled the bracket: partition the whole row
        buffer[: row.size] = row
        return _pick(buffer[: row.size], rank, upper)
    if last == 0:
        return cuts[0], cuts[0]
    # values in (cuts[start − 1], cuts[last]] hold both ranks (the lower one may be cuts[0])
    start = max(first, 1)
    offset = at_or_below[start - 1]
    count = _gather(row, cuts[start - 1], cuts[last], buffer)
    low_wanted, high_wanted = rank - offset, upper - offset  # ranks among the gathered values
    # the wanted ranks that fall among the gathered values (not on cuts[0] or the last cut)
    first_inside = low_wanted if low_wanted >= 0 else high_wanted
    last_inside = high_wanted if high_wanted < count else low_wanted
    picked_low = picked_high = cuts[0]
    if 0 <= first_inside <= last_inside < count:
        picked_low, picked_high = _pick(buffer[:count], first_inside, last_inside)
    results = np.empty(2)
    for i, wanted in enumerate((low_wanted, high_wanted)):
        if wanted < 0:
            results[i] = cuts[0]
        elif wanted >= count:
            results[i] = cuts[last]  # past the gathered values: the ties at the last cut
        else:
            results[i] = picked_low if wanted == first_inside else picked_high
    return results[0], results[1]


@njit(parallel=True, **OPTIONS)
def order_statistics(rows, rank):
    """Ascending order statistics `rank` and min(rank + 1, n − 1) of each row of a finite (B, n) array.

    Returns two (B,) float64 arrays holding exactly the row values a full sort puts there.
    """
    batch, n = rows.shape
    upper = min(rank + 1, n - 1)
    lower_values = np.empty(batch)
    upper_values = np.empty(batch)
    for i in prange(batch):
        buffer = np.empty(n)
        cuts = _cuts(rows[i], rank, upper, buffer)
        at_or_below = np.empty(CUTS + 1, dtype=np.int64)
        below = _scan(rows[i], cuts, at_or_below)[3]
        lower_values[i], upper_values[i] = _resolve(rows[i], rank, upper, cuts, below, at_or_below, buffer)
    return lower_values, upper_values


# ---------------------------------------------------------------------------------------------
# the fused compare pass


@njit(**OPTIONS)
def _summary(row, rank, upper, weight, buffer, at_or_below):
    """Per-map constants of the fused pass: (low, scale, mean, density scale, density offset,
    paper cut, k-th largest, tied). The cut and the k-th largest value are values of the row
    itself (the top sets are taken on the raw map, as `saliencylab.metrics.iou`); `tied` when the
    two order statistics around the cut are equal."""
    n = row.size
    cuts = _cuts(row, rank, upper, buffer)
    low, high, total, below = _scan(row, cuts, at_or_below)
    lower_value, upper_value = _resolve(row, rank, upper, cuts, below, at_or_below, buffer)
    span = high - low
    scale = 1.0 / span if span > 0 else 0.0  # a constant map scales to zeros
    difference = upper_value - lower_value
    # NumPy's linear quantile in float64, lerp from the nearer end (as saliencylab.metrics.iou.top_stats);
    # no value lies strictly between the order statistics, so x ≥ threshold is x ≥ cut
    if weight >= 0.5:
        threshold = upper_value - difference * (1.0 - weight)
    else:
        threshold = lower_value + difference * weight
    cut = upper_value if threshold > lower_value else lower_value
    kth = upper_value if weight > 0 else lower_value
    tied = lower_value == upper_value  # the cut likely splits a tie: the exact top set will differ
    scaled_sum = (total - n * low) * scale
    if span > 0:
        return low, scale, scaled_sum / n, 1.0 / scaled_sum, 0.0, cut, kth, tied
    return low, scale, 0.0, 0.0, 1.0 / n, cut, kth, tied  # zeros become the uniform density


@njit(fastmath=FAST, **OPTIONS)
def _count_exact(p, t, p_kth, t_kth, counts):
    """Add to counts (int64[8]) the pixels of one pair (or block) above / equal to each map's k-th
    largest value, alone and jointly: p above, p equal, t above, t equal, then the four joint counts."""
    p_above = p_equal = t_above = t_equal = 0
    above_above = above_equal = equal_above = equal_equal = 0
    for j in range(p.size):
        x = np.float64(p[j])
        y = np.float64(t[j])
        a_p = x > p_kth
        e_p = x == p_kth
        a_t = y > t_kth
        e_t = y == t_kth
        p_above += a_p
        p_equal += e_p
        t_above += a_t
        t_equal += e_t
        above_above += a_p & a_t
        above_equal += a_p & e_t
        equal_above += e_p & a_t
        equal_equal += e_p & e_t
    counts[0] += p_above
    counts[1] += p_equal
    counts[2] += t_above
    counts[3] += t_equal
    counts[4] += above_above
    counts[5] += above_equal
    counts[6] += equal_above
    counts[7] += equal_equal


@njit(**OPTIONS)
def _exact_iou(counts, k):
    """Σ min / Σ max of the tie-robust top-set memberships from `_count_exact`'s counts
    (saliencylab.metrics.iou.exact_iou): pixels above the k-th largest value weigh 1, those
    equal to it share the remaining k − |above| equally."""
    p_share = (k - counts[0]) / counts[1]  # each map holds its k-th largest value: never 0 / 0
    t_share = (k - counts[2]) / counts[3]
    shared = counts[4] + t_share * counts[5] + p_share * counts[6] + min(p_share, t_share) * counts[7]
    return shared / (2 * k - shared)


@njit(parallel=True, fastmath=FAST, **OPTIONS)
def compare_rows(pred, target, rank, weight, k):
    """The `compare_maps` suite of each row pair of two (B, n) arrays.

    Args:
        pred, target: (B, n) float32/float64 arrays, finite (checked by the caller afterwards,
            see the module docstring).
        rank, weight: ⌊v⌋ and v − ⌊v⌋ for the paper quantile's virtual index
            v = (1 − fraction)(n − 1) (`saliencylab.metrics.iou.top_quantile`).
        k: the top-set size n − ⌈(1 − fraction)(n − 1)⌉.

    Returns:
        values (B, 6) float64 in the order of SUITE_KEYS, flags (B, 4) bool in FLAG_KEYS.
    """
    batch, n = pred.shape
    upper = min(rank + 1, n - 1)
    values = np.empty((batch, len(SUITE_KEYS)))
    flags = np.empty((batch, len(FLAG_KEYS)), dtype=np.bool_)
    for i in prange(batch):
        p, t = pred[i], target[i]
        buffer = np.empty(n)
        at_or_below = np.empty(CUTS + 1, dtype=np.int64)
        p_low, p_scale, p_mean, p_density, p_offset, p_cut, p_kth, p_tied = _summary(
            p, rank, upper, weight, buffer, at_or_below
        )
        t_low, t_scale, t_mean, t_density, t_offset, t_cut, t_kth, t_tied = _summary(
            t, rank, upper, weight, buffer, at_or_below
        )
        # exact-IoU counts join the pass when a tie at a cut is likely, else a second pass runs if needed
        exact_in_pass = p_tied or t_tied
        exact_counts = np.zeros(8, dtype=np.int64)
        ratios = np.empty(LOG_BLOCK)
        densities = np.empty(LOG_BLOCK)
        logs = np.empty(LOG_BLOCK)
        scratch = np.empty(LOG_BLOCK)
        absolute = covariance = p_square = t_square = overlap = divergence = 0.0
        p_size = t_size = both = 0  # paper top sets
        # block by block, one short loop per group of sums: each vectorises, the block stays in L1
        for start in range(0, n, LOG_BLOCK):
            p_block = p[start : start + LOG_BLOCK]
            t_block = t[start : start + LOG_BLOCK]
            width = p_block.size
            for j in range(width):
                x = (np.float64(p_block[j]) - p_low) * p_scale
                y = (np.float64(t_block[j]) - t_low) * t_scale
                absolute += abs(x - y)
                dx = x - p_mean
                dy = y - t_mean
                covariance += dx * dy
                p_square += dx * dx
                t_square += dy * dy
                prob = x * p_density + p_offset
                dens = y * t_density + t_offset
                overlap += min(prob, dens)
                ratios[j] = KL_EPS + dens / (prob + KL_EPS)
                densities[j] = dens
            _log(ratios[:width], scratch[:width], logs[:width])
            for j in range(width):
                divergence += densities[j] * logs[j]
            for j in range(width):
                in_p = np.float64(p_block[j]) >= p_cut
                in_t = np.float64(t_block[j]) >= t_cut
                p_size += in_p
                t_size += in_t
                both += in_p & in_t
            if exact_in_pass:
                _count_exact(p_block, t_block, p_kth, t_kth, exact_counts)
        p_constant = p_scale == 0.0
        t_constant = t_scale == 0.0
        values[i, 0] = absolute / n
        values[i, 1] = both / (p_size + t_size - both)  # paper sets are never empty
        values[i, 2] = values[i, 1]  # paper sets of exactly k pixels are the top k: both IoUs agree
        if p_size != k or t_size != k:
            if not exact_in_pass:
                _count_exact(p, t, p_kth, t_kth, exact_counts)
            values[i, 2] = _exact_iou(exact_counts, k)
        norms = math.sqrt(p_square) * math.sqrt(t_square)  # 0 only for a constant map
        values[i, 3] = 0.0 if (p_constant or t_constant or norms == 0.0) else covariance / norms
        values[i, 4] = divergence
        values[i, 5] = overlap
        flags[i, 0] = p_size == n
        flags[i, 1] = t_size == n
        flags[i, 2] = p_constant
        flags[i, 3] = t_constant
    return values, flags


@contextmanager
def torch_thread_count() -> Iterator[None]:
    """Run the kernels inside on torch's intra-op thread count, and leave torch's count as it was.

    numba's first parallel launch sets OpenMP's thread count to numba's own (NUMBA_NUM_THREADS,
    by default every core); with the OpenMP threading layer numba and torch share one libgomp,
    so that would silently undo a `torch.set_num_threads` made before.
    """
    count = torch.get_num_threads()
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
