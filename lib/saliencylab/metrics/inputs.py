"""Input checks shared by every metric: map tensors, fixation maps and the top fraction.

Each check raises `TypeError` (wrong kind of object or dtype) or `ValueError` (wrong shape,
device or values) naming the argument, what it received and what it expected. Values are
never changed: the checks only read their inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float64)
MAX_LISTED = 10  # batch indices spelled out in an error message before "... and n more"


def batch_indices(bad: Tensor) -> str:
    """The indices where the (B,) bool tensor `bad` is true, as a short readable list."""
    indices = torch.nonzero(bad).flatten().tolist()
    shown = ", ".join(str(i) for i in indices[:MAX_LISTED])
    more = f" and {len(indices) - MAX_LISTED} more" if len(indices) > MAX_LISTED else ""
    return f"[{shown}{more}]"


def check_maps(**maps: Tensor) -> None:
    """Check that the named maps are (B, H, W) float32/float64 tensors of one shape, dtype and device.

    Shapes must match exactly: metrics never resize (use `resize_to` first). Finiteness is
    checked separately by `value_range`, which the metrics need anyway.

    Raises:
        TypeError: an argument is not a tensor, or not float32/float64, or the dtypes differ.
        ValueError: an argument is not 3-D, has no pixels, or shapes or devices differ.
    """
    first_name, first = next(iter(maps.items()))
    for name, x in maps.items():
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, W), got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
        if x.ndim != 3:
            raise ValueError(f"{name} must have shape (B, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 0 or x.shape[2] == 0:
            raise ValueError(f"{name} has no pixels: shape {tuple(x.shape)}")
        if x.shape != first.shape:
            raise ValueError(
                f"shape mismatch: {first_name} {tuple(first.shape)} vs {name} {tuple(x.shape)}; "
                "metrics need equal shapes (resize with resize_to first)"
            )
        if x.dtype != first.dtype:
            raise TypeError(f"dtype mismatch: {first_name} {first.dtype} vs {name} {x.dtype}")
        if x.device != first.device:
            raise ValueError(f"device mismatch: {first_name} on {first.device} vs {name} on {x.device}")


def value_range(x: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Per-map minimum and maximum of a checked (B, H, W) map, refusing NaN and infinity.

    Returns:
        (lo, hi): two (B,) tensors in x's dtype, on x's device.

    Raises:
        ValueError: some map holds NaN or ±inf; the message lists the batch indices.
    """
    lo, hi = row_range(x.flatten(1))
    check_finite_range(lo, hi, name)
    return lo, hi


def row_range(flat: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum and maximum of each row of a (B, n) tensor; NaN propagates into both."""
    return flat.amin(dim=1), flat.amax(dim=1)  # two reductions run faster than aminmax on CPU


def check_finite_range(lo: Tensor, hi: Tensor, name: str) -> None:
    """Raise ValueError naming the batch indices whose range (lo, hi) shows NaN or ±inf."""
    bad = ~(torch.isfinite(lo) & torch.isfinite(hi))
    if bool(bad.any()):
        raise ValueError(f"{name} holds NaN or infinite values at batch indices {batch_indices(bad)}")


def check_non_negative(lo: Tensor, name: str) -> None:
    """Raise ValueError naming the batch indices whose per-map minimum `lo` (B,) is negative."""
    bad = lo < 0
    if bool(bad.any()):
        raise ValueError(
            f"{name} must be non-negative (a density or saliency map); negative values at batch indices {batch_indices(bad)}"
        )


def check_fixations(fixations: Tensor, like: Tensor, name: str) -> Tensor:
    """Check a fixation map against the saliency map `like` and return it as a (B, H, W) bool tensor.

    A fixation map marks fixated pixels with a positive value (bool, 0/1, or fixation counts); a
    pixel counts once however many fixations land on it, as in the MIT benchmark's binary maps.

    Raises:
        TypeError: `fixations` is not a tensor.
        ValueError: its shape or device differs from `like`, it holds negative or non-finite
            values, or some map has no fixated pixel (batch indices listed).
    """
    fixated = fixation_mask(fixations, like, name)
    refuse_unfixated(~fixated.flatten(1).any(dim=1), name)
    return fixated


def refuse_unfixated(empty: Tensor, name: str) -> None:
    """Raise ValueError naming the batch indices where the (B,) bool `empty` marks a map without fixated pixel."""
    if bool(empty.any()):
        raise ValueError(f"{name} has no fixated pixel at batch indices {batch_indices(empty)}")


def fixation_mask(fixations: Tensor, like: Tensor, name: str) -> Tensor:
    """`check_fixations` without the check that every map has a fixated pixel, for callers that
    count the fixated pixels anyway (the CPU kernels) and then call `refuse_unfixated`."""
    if not isinstance(fixations, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, W), got {type(fixations).__name__}")
    if fixations.shape != like.shape:
        raise ValueError(f"shape mismatch: saliency {tuple(like.shape)} vs {name} {tuple(fixations.shape)}")
    if fixations.device != like.device:
        raise ValueError(f"device mismatch: saliency on {like.device} vs {name} on {fixations.device}")
    if fixations.dtype == torch.bool:
        fixated = fixations
    else:
        if fixations.is_floating_point() and not bool(torch.isfinite(fixations).all()):
            raise ValueError(f"{name} holds NaN or infinite values")
        if bool((fixations < 0).any()):
            raise ValueError(f"{name} must be non-negative (a binary map or fixation counts)")
        fixated = fixations > 0
    return fixated


def check_fraction(fraction: float) -> float:
    """Return `fraction` as a float if it lies in (0, 1], else raise ValueError."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    return float(fraction)


def point_segments(points: Tensor, saliency: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Saliency values at listed points, grouped by map: (values (N,) in batch order, offsets (B + 1,) int64).

    Args:
        points: (N, 3) integer tensor of (batch index, row y, column x), one row per fixation,
            in any order (`torch.nonzero` of a (B, H, W) fixation map gives this layout).
        saliency: a checked (B, H, W) map batch; the points must lie inside it.
        name: the argument's name for error messages.

    Returns:
        values: the saliency values at the points, map 0's first, on saliency's device and dtype;
        offsets: map i's values are values[offsets[i] : offsets[i + 1]] (on the CPU).

    Raises:
        TypeError, ValueError: not an integer (N, 3) tensor, on another device, points outside
            the (B, H, W) grid (the first offending rows listed), a map without any point (batch
            indices listed), or NaN/±inf at a point (batch indices listed).
    """
    if not isinstance(points, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, 3), got {type(points).__name__}")
    if points.dtype.is_floating_point or points.dtype.is_complex or points.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer (batch index, row, column) triples, got dtype {points.dtype}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3): (batch index, row y, column x) per fixation, got {tuple(points.shape)}")
    if points.device != saliency.device:
        raise ValueError(f"device mismatch: saliency on {saliency.device} vs {name} on {points.device}")
    limits = torch.tensor(saliency.shape, device=points.device)
    outside = ((points < 0) | (points >= limits)).any(dim=1)
    if bool(outside.any()):
        rows = torch.nonzero(outside).flatten()[:MAX_LISTED].tolist()
        raise ValueError(f"{name} rows {rows} lie outside the (B, H, W) = {tuple(saliency.shape)} maps")
    batch = points[:, 0]
    order = torch.argsort(batch, stable=True)
    b, y, x = points[order].unbind(dim=1)
    counts = torch.bincount(batch, minlength=saliency.shape[0]).cpu()
    if bool((counts == 0).any()):
        raise ValueError(f"{name} has no point at batch indices {batch_indices(counts == 0)}")
    values = saliency[b, y, x]
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = torch.zeros(saliency.shape[0], dtype=torch.bool, device=values.device)
        bad[b[~finite]] = True
        raise ValueError(f"saliency has NaN or ±inf values at {name} at batch indices {batch_indices(bad.cpu())}")
    return values, torch.cat([counts.new_zeros(1), counts.cumsum(dim=0)])
