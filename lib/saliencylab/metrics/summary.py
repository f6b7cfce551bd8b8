"""Summary of per-image metric values: mean, spread and a percentile-bootstrap confidence interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RESAMPLE_CHUNK = 2_000_000  # resampled values drawn at once, to bound memory for long inputs


@dataclass(frozen=True)
class Summary:
    """Mean of per-image values with a bootstrap interval; plain floats, ready for JSON."""

    mean: float  # arithmetic mean of the values
    std: float  # sample standard deviation of the values (ddof 1; 0.0 for a single value)
    ci_low: float  # lower end of the percentile-bootstrap interval of the mean
    ci_high: float  # upper end of that interval
    n: int  # number of values


def bootstrap_ci(values, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Summary:
    """Mean, std and percentile-bootstrap confidence interval of the mean of per-image values.

    Draws `n_resamples` resamples of the n values with replacement from NumPy's PCG64 seeded
    with `seed`, takes each resample's mean, and returns the (1 − confidence)/2 and
    (1 + confidence)/2 quantiles of those means (linear interpolation, NumPy's default).
    The result depends only on the values, `n_resamples`, `confidence` and `seed`.

    Args:
        values: 1-D tensor or array-like of per-image values (any real dtype, any device),
            finite, at least one. Not modified.
        n_resamples: number of bootstrap resamples, ≥ 1.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the resampling generator.

    Returns:
        Summary with Python floats; for a single value std is 0.0 and the interval is that value.

    Raises:
        ValueError: values are not 1-D, empty or non-finite (indices listed), or n_resamples or
            confidence is out of range.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {data.shape}")
    bad = np.flatnonzero(~np.isfinite(data))
    if bad.size:
        raise ValueError(f"values must be finite; NaN or inf at indices {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    n = data.size
    rng = np.random.Generator(np.random.PCG64(seed))
    means = np.empty(n_resamples)
    rows = max(1, RESAMPLE_CHUNK // n)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        means[start:stop] = data[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    std = float(data.std(ddof=1)) if n > 1 else 0.0
    return Summary(mean=float(data.mean()), std=std, ci_low=float(low), ci_high=float(high), n=int(n))
