"""bootstrap_ci: deterministic percentile bootstrap of the mean, and its refusals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from saliencylab.metrics import Summary, bootstrap_ci


def test_golden_summary_of_a_small_sample():
    # mean (1 + 2 + 3 + 4) / 4 = 2.5; sample std (ddof 1) = √(5/3)
    summary = bootstrap_ci([1.0, 2.0, 3.0, 4.0], n_resamples=2000, seed=0)
    assert summary.mean == 2.5 and summary.n == 4
    assert summary.std == pytest.approx((5 / 3) ** 0.5, abs=1e-15)
    assert 1.0 <= summary.ci_low < 2.5 < summary.ci_high <= 4.0


def test_same_seed_same_interval_and_the_seed_matters():
    values = np.random.default_rng(1).normal(0.3, 0.1, size=200)
    first, again = bootstrap_ci(values, seed=7), bootstrap_ci(values, seed=7)
    assert first == again
    assert bootstrap_ci(values, seed=8) != first


def test_interval_matches_a_direct_bootstrap_and_covers_the_mean():
    values = np.random.default_rng(2).exponential(1.0, size=150)
    summary = bootstrap_ci(values, n_resamples=500, confidence=0.9, seed=3)
    rng = np.random.Generator(np.random.PCG64(3))
    means = values[rng.integers(0, 150, size=(500, 150))].mean(axis=1)
    assert (summary.ci_low, summary.ci_high) == tuple(np.quantile(means, [0.05, 0.95]))
    assert summary.ci_low < summary.mean < summary.ci_high
    # half-width near the normal approximation 1.645 · s / √n
    assert (summary.ci_high - summary.ci_low) / 2 == pytest.approx(1.645 * values.std(ddof=1) / 150**0.5, rel=0.25)


def test_tensors_and_single_values_are_accepted_and_results_serialise():
    summary = bootstrap_ci(torch.tensor([0.25], dtype=torch.float32))
    assert summary == Summary(mean=0.25, std=0.0, ci_low=0.25, ci_high=0.25, n=1)
    json.dumps(dataclasses.asdict(bootstrap_ci(torch.arange(5.0))))
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.mean = 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"finite; NaN or inf at indices \[1, 3\]"):
        bootstrap_ci([0.1, float("nan"), 0.2, float("inf")])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        bootstrap_ci(np.ones((2, 2)))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
