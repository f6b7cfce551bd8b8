"""The numba CPU kernels: exact order statistics on any ties, the vectorised log, the fused suite."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import reference_metrics as ref
from saliencylab.metrics import KL_EPS, kernels
from saliencylab.metrics.iou import top_quantile

N = 60_000  # well above SAMPLE_SIZE, so rows are sampled with a stride > 1
RANKS = (0, 1, 2, N // 2, math.floor(0.9 * (N - 1)), N - 3, N - 2, N - 1)


def sorted_statistics(rows: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    ascending = np.sort(rows, axis=1)
    return ascending[:, rank], ascending[:, min(rank + 1, rows.shape[1] - 1)]


def hard_rows(n: int = N) -> np.ndarray:
    """Rows that defeat naive sampling or selection: tie blocks (contiguous and scattered),
    few distinct values, smooth and periodic fields, sorted and reversed orders."""
    rng = np.random.default_rng(3)
    rows = [rng.random(n) for _ in range(12)]
    rows[1][: int(0.95 * n)] = 0.0  # ties at the minimum hold the 90 % rank
    rows[2][rng.permutation(n)[: int(0.9 * n)]] = 0.0  # scattered tie block ending near the rank
    rows[3][-int(0.3 * n) :] = 1.0  # ties at the maximum
    rows[4] = np.round(rows[4] * 3) / 3  # four distinct values
    rows[5] = np.full(n, 0.25)  # constant
    grid = np.linspace(0, 1, n)
    rows[6] = np.sin(40 * np.pi * grid) ** 2  # smooth and periodic: a strided sample would be biased
    rows[7] = (np.arange(n) % 64 == 0).astype(float)  # period equal to a power-of-two stride
    rows[8] = np.sort(rows[8])
    rows[9] = np.sort(rows[9])[::-1].copy()
    rows[10] = np.where(rows[10] > 0.5, rows[10], -rows[10] * 1e-300)  # tiny and negative values
    rows[11] = (rows[11] > 0.9).astype(float)  # a binary mask
    return np.stack(rows)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_order_statistics_equal_a_full_sort(dtype):
    rows = hard_rows().astype(dtype)
    for rank in RANKS:
        lower, upper = kernels.order_statistics(rows, rank)
        expected = sorted_statistics(rows, rank)
        assert np.array_equal(lower, expected[0]) and np.array_equal(upper, expected[1]), rank


def test_order_statistics_of_small_rows_at_every_rank():
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 5, 8, 33):
        rows = rng.random((3, n))
        rows[1] = np.round(rows[1])
        for rank in range(n):
            lower, upper = kernels.order_statistics(rows, rank)
            expected = sorted_statistics(rows, rank)
            assert np.array_equal(lower, expected[0]) and np.array_equal(upper, expected[1]), (n, rank)


@pytest.mark.parametrize("row_index", [0, 1, 4, 11])
def test_a_misleading_bracket_falls_back_to_an_exact_partition(row_index):
    row = hard_rows()[row_index]
    rank = math.floor(0.9 * (N - 1))
    expected = sorted_statistics(row[None], rank)
    for cuts in (np.linspace(2.0, 3.0, kernels.CUTS + 1), np.linspace(-3.0, -2.0, kernels.CUTS + 1)):  # all above / below
        at_or_below = np.empty(kernels.CUTS + 1, dtype=np.int64)
        below = kernels._scan(row, cuts, at_or_below)[3]
        lower, upper = kernels._resolve(row, rank, rank + 1, cuts, below, at_or_below, np.empty(N))
        assert (lower, upper) == (expected[0][0], expected[1][0])


def test_vectorised_log_is_within_two_ulp():
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            np.exp(rng.uniform(-700, 700, 100_000)),
            rng.uniform(0.5, 2.0, 100_000),  # around 1, where cancellation would show
            [KL_EPS, 1.0, 2.0, math.sqrt(2.0), np.nextafter(math.sqrt(2.0), 2), 1 / KL_EPS],
            [np.finfo(np.float64).tiny, np.finfo(np.float64).max],
        ]
    )
    ours = kernels.log_array(values)
    exact = np.log(values)
    ulp = np.spacing(np.abs(exact))
    assert np.max(np.abs(ours - exact) / np.maximum(ulp, np.spacing(1.0) / 2)) <= 2.0
    assert ours[np.flatnonzero(values == 1.0)[0]] == 0.0


def test_fused_suite_matches_the_reference_on_sampled_sizes():
    rows = hard_rows(n=40_000)
    rng = np.random.default_rng(6)
    pred = rows[rng.permutation(len(rows))]
    rank, weight, k = top_quantile(rows.shape[1], 0.1)
    values, flags = kernels.compare_rows(pred, rows, rank, weight, k)
    for i in range(len(rows)):
        expected = ref.compare_maps(pred[i], rows[i])
        for c, key in enumerate(kernels.SUITE_KEYS):
            assert values[i, c] == pytest.approx(expected[key], abs=1e-12), (i, key)
        for c, key in enumerate(kernels.FLAG_KEYS):
            assert flags[i, c] == expected[key], (i, key)


def test_kernels_run_on_torchs_thread_count_and_leave_it_alone():
    # in a fresh process, where numba's first parallel launch would reset OpenMP's thread count
    script = (
        "import numba, torch\n"
        "from saliencylab.metrics import compare_maps\n"
        "torch.set_num_threads(1)\n"
        "maps = torch.rand(2, 16, 16, dtype=torch.float64)\n"
        "compare_maps(maps, maps.flip(1))\n"
        "print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


def test_exact_iou_when_a_tie_ends_at_an_integer_cut():
    # fraction 0.5 on 101 pixels: the cut is exactly rank 50 (weight 0), so a tie at ranks 47..50
    # enlarges the paper set although the two order statistics at the cut differ; the kernel then
    # counts the exact sets in a second pass
    assert top_quantile(101, 0.5)[1] == 0.0
    rng = np.random.default_rng(7)
    pred = rng.random((3, 101))
    pred[:, :47] = np.sort(pred[:, :47], axis=1) * 0.5
    pred[:, 47:51] = 0.6  # ranks 47..50 tie at the cut
    pred[:, 51:] = 0.7 + rng.random((3, 50)) * 0.3
    pred = np.stack([row[rng.permutation(101)] for row in pred])
    target = rng.random((3, 101))
    rank, weight, k = top_quantile(101, 0.5)
    values, _ = kernels.compare_rows(pred, target, rank, weight, k)
    for i in range(3):
        expected = ref.compare_maps(pred[i], target[i], fraction=0.5)
        assert expected["iou_exact"] != expected["iou_paper"]
        assert values[i, 1] == pytest.approx(expected["iou_paper"], abs=1e-14)
        assert values[i, 2] == pytest.approx(expected["iou_exact"], abs=1e-14)
