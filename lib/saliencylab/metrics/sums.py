"""Row sums of (B, n) tensors accumulated in float64, the precision rule of every metric's sums.

A float32 reduction can lose far more than float32's 6e-8: `torch.linalg.vector_norm` was off
by up to 2.9e-4 relative on 512² mask-like maps (issue #15), and CUDA accumulates float32 sums
in float32. The metrics therefore compute every sum, mean and norm in float64 whatever the input
dtype, and round the result to the input dtype only at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# values per tensor upcast to float64 at a time: bounds the temporaries, and on CPU keeps them in cache
CPU_BLOCK_ELEMENTS = 2**18  # 2 MiB of float64: a block's chain of temporaries stays in cache
DEVICE_BLOCK_ELEMENTS = 2**22  # 32 MiB on CUDA and other devices: few kernel launches


def accumulate(terms: Callable[..., tuple[Tensor, ...]], *rows: Tensor) -> tuple[Tensor, ...]:
    """Row sums of element-wise terms of (B, n) tensors, computed and accumulated in float64.

    The rows are upcast to float64 one block of columns at a time (about CPU_BLOCK_ELEMENTS or
    DEVICE_BLOCK_ELEMENTS values per tensor), so a float32 batch is never copied to float64
    whole: torch's `sum(dtype=torch.float64)` makes that full copy first. Adds no host
    synchronisation.

    Args:
        terms: maps float64 (B, w) column blocks of `rows` (one per tensor, same columns) to a
            tuple of (B, w) float64 tensors. It must not modify its arguments: for float64 rows
            they are views of the input.
        *rows: (B, n) float32/float64 tensors of one shape and device, n ≥ 1. Not modified.

    Returns:
        One (B,) float64 tensor per term, on the rows' device.
    """
    batch, n = rows[0].shape
    elements = CPU_BLOCK_ELEMENTS if rows[0].device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    width = max(1, elements // max(batch, 1))
    totals: list[Tensor] = []
    for start in range(0, n, width):
        blocks = [row[:, start : start + width].to(torch.float64) for row in rows]
        sums = [term.sum(dim=1) for term in terms(*blocks)]
        totals = sums if not totals else [total.add_(part) for total, part in zip(totals, sums, strict=True)]
    return tuple(totals)


def row_sum(flat: Tensor) -> Tensor:
    """Sum of each row of a (B, n) float32/float64 tensor, accumulated in float64, as (B,) float64."""
    return accumulate(lambda block: (block,), flat)[0]
