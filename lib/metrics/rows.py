"""Row-wise statistics of (B, n) tensors that the metrics share: order statistics and counts.

Selecting two adjacent order statistics is the costly step of the top-set IoU. On CPU it uses
NumPy's in-place introselect, several times faster than `torch.topk` for ranks near n/10,
with a detour around the inputs that slow introselect down; on other devices `torch.topk`.
Both return exactly the values a full sort would give.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

TIE_SAMPLE_STRIDE = 64  # every 64th value is sampled to detect large tie blocks (speed only, never results)
TIE_BLOCK_SHARE = 0.25  # share of sampled values at the minimum or maximum that counts as a large tie block


def order_statistics(flat: Tensor, index: int, scratch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ascending order statistics `index` and `index + 1` (the last one if out of range) of each row.

    Args:
        flat: (B, n) float tensor, finite. Not modified.
        index: 0-based rank from the smallest, in [0, n).
        scratch: optional (B, n) tensor like `flat` to work in (CPU only; overwritten).

    Returns:
        Two (B,) tensors in flat's dtype and on its device.
    """
    if flat.device.type == "cpu":
        return partition_statistics(flat, index, scratch)
    return topk_statistics(flat, index)


def partition_statistics(flat: Tensor, index: int, scratch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`order_statistics` on CPU with NumPy's in-place introselect (several times faster than topk)."""
    upper = min(index + 1, flat.shape[1] - 1)
    work = torch.empty_like(flat) if scratch is None else scratch
    rows = work.copy_(flat.detach()).numpy()
    pairs = [_row_statistics(row, index, upper) for row in rows]
    return flat.new_tensor([p[0] for p in pairs]), flat.new_tensor([p[1] for p in pairs])


def _row_statistics(row: np.ndarray, index: int, upper: int) -> tuple[float, float]:
    """Ascending order statistics `index` and `upper` (index or index + 1) of a 1-D array it may reorder.

    NumPy's introselect slows down about tenfold when a large share of the values tie at the
    minimum or maximum (mostly-zero masks, saturated maps), so a cheap strided sample decides
    whether to order only the values strictly between the two ends. Both paths are exact.
    """
    sample = row[::TIE_SAMPLE_STRIDE]
    tied = np.count_nonzero(sample == sample.min()) + np.count_nonzero(sample == sample.max())
    if tied < TIE_BLOCK_SHARE * sample.size:
        row.partition(upper)
        return (row[:upper].max() if upper > index else row[upper]), row[upper]
    low, high = row.min(), row.max()
    at_low = np.count_nonzero(row == low)
    first_high = row.size - np.count_nonzero(row == high)  # ranks from here on hold `high`
    middle = row[(row > low) & (row < high)]  # ranks at_low .. first_high − 1, unordered
    inside = [rank - at_low for rank in (index, upper) if at_low <= rank < first_high]
    if inside:
        middle.partition(inside[-1])

    def value(rank: int) -> float:
        if rank < at_low:
            return low
        if rank >= first_high:
            return high
        position = rank - at_low
        return middle[position] if position == inside[-1] else middle[: inside[-1]].max()

    return value(index), value(upper)


def topk_statistics(flat: Tensor, index: int) -> tuple[Tensor, Tensor]:
    """`order_statistics` on any device with torch.topk of the n − index largest values."""
    n = flat.shape[1]
    largest = torch.topk(flat, n - index, dim=1, sorted=False).values
    smallest_two = torch.topk(largest, min(2, n - index), dim=1, largest=False, sorted=True).values
    return smallest_two[:, 0], smallest_two[:, -1]


def count(mask: Tensor) -> Tensor:
    """Number of true entries in each row of a (B, n) bool tensor, as (B,) int64."""
    # summing uint8 into int32 is several times faster on CPU than summing bools (int64)
    accumulator = torch.int32 if mask.shape[1] < 2**31 else torch.int64
    return mask.view(torch.uint8).sum(dim=1, dtype=accumulator).long()
