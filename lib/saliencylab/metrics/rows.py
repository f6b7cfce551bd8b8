"""Row-wise statistics of (B, n) tensors that the metrics share: order statistics and counts.

Selecting two adjacent order statistics is the costly step of the top-set IoU. On CPU the
numba kernel `saliencylab.metrics.kernels.order_statistics` selects them (linear time whatever
the ties); on other devices `torch.topk`. Both return exactly the values a full sort would give.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saliencylab.metrics import kernels


def order_statistics(flat: Tensor, index: int) -> tuple[Tensor, Tensor]:
    """The ascending order statistics `index` and `index + 1` (the last one if out of range) of each row.

    Args:
        flat: (B, n) float32/float64 tensor, finite. Not modified.
        index: 0-based rank from the smallest, in [0, n).

    Returns:
        Two (B,) tensors in flat's dtype and on its device.
    """
    if flat.device.type != "cpu":
        return topk_statistics(flat, index)
    with kernels.torch_thread_count():
        lower, upper = kernels.order_statistics(flat.detach().contiguous().numpy(), index)
    return torch.from_numpy(lower).to(flat.dtype), torch.from_numpy(upper).to(flat.dtype)


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
