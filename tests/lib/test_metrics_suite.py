"""compare_maps: the compare stage's suite against the NumPy reference and the standalone metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import reference_metrics as ref
from saliencylab.metrics import (
    FLAG_KEYS,
    SUITE_KEYS,
    cc,
    compare_maps,
    iou_top,
    kldiv,
    mae,
    minmax_normalise,
    sim,
    top_set_is_degenerate,
)
from saliencylab.metrics.suite import compare_maps_torch

from tests.lib.test_metrics import P, Y, random_maps


def mixed_pairs(batch: int = 7, shape=(24, 20)) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs covering the special cases: distinct values, ties, collapse, constant, negative values."""
    pred, target = random_maps(batch, seed=1, shape=shape), random_maps(batch, seed=2, shape=shape)
    target[1] = torch.where(target[1] > 0.95, target[1], torch.zeros_like(target[1]))  # mostly zero: collapse
    pred[2] = 0.25  # constant
    target[3] = 0.0  # all zero
    pred[4] = pred[4] * 40 - 25  # any range
    return pred, target


def test_golden_values_on_hand_computed_maps():
    out = compare_maps(P, Y, fraction=0.5)
    expected = {"mae": 1 / 6, "iou_paper": 4 / 6, "iou_exact": 5 / 7, "cc": 3**0.5 / 2, "kldiv": np.log(1.5), "sim": 2 / 3}
    for key, value in expected.items():
        assert out[key].item() == pytest.approx(value, abs=1e-12), key
    assert not out["pred_degenerate"].item() and out["target_degenerate"].item()
    assert not out["pred_constant"].item() and not out["target_constant"].item()


def test_matches_numpy_reference_in_float64():
    pred, target = mixed_pairs()
    out = compare_maps(pred, target)
    assert set(out) == set(SUITE_KEYS) | set(FLAG_KEYS)
    for i in range(pred.shape[0]):
        expected = ref.compare_maps(pred[i].numpy(), target[i].numpy())
        for key in SUITE_KEYS:
            assert out[key][i].item() == pytest.approx(expected[key], abs=1e-12), (i, key)
        for key in FLAG_KEYS:
            assert out[key][i].item() == expected[key], (i, key)


def test_agrees_with_the_standalone_metrics_as_documented():
    pred, target = mixed_pairs()
    out = compare_maps(pred, target)
    p_unit, t_unit = minmax_normalise(pred), minmax_normalise(target)
    close = {"rtol": 0, "atol": 1e-12}
    torch.testing.assert_close(out["mae"], mae(p_unit, t_unit), **close)
    torch.testing.assert_close(out["kldiv"], kldiv(p_unit, t_unit), **close)
    torch.testing.assert_close(out["cc"], cc(pred, target), **close)
    torch.testing.assert_close(out["sim"], sim(pred, target), **close)
    torch.testing.assert_close(out["iou_paper"], iou_top(pred, target, mode="paper"), **close)
    torch.testing.assert_close(out["iou_exact"], iou_top(pred, target, mode="exact"), **close)
    assert torch.equal(out["pred_degenerate"], top_set_is_degenerate(pred))
    assert torch.equal(out["target_degenerate"], top_set_is_degenerate(target))
    assert out["pred_constant"].tolist() == [False, False, True, False, False, False, False]
    assert out["target_constant"].tolist() == [False, False, False, True, False, False, False]
    assert out["target_degenerate"][1] and out["target_degenerate"][3]


def test_cpu_kernel_and_torch_path_agree():
    # compare_maps on CPU runs the numba kernels; compare_maps_torch is what runs on CUDA
    pred, target = mixed_pairs(batch=7, shape=(96, 120))  # 11,520 pixels: the kernel samples for its brackets
    kernel, batched = compare_maps(pred, target), compare_maps_torch(pred, target)
    for key in SUITE_KEYS:
        torch.testing.assert_close(kernel[key], batched[key], rtol=0, atol=1e-13, msg=key)
    for key in FLAG_KEYS:
        assert torch.equal(kernel[key], batched[key]), key


def test_results_do_not_depend_on_the_thread_count():
    pred, target = mixed_pairs()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = compare_maps(pred, target)
    finally:
        torch.set_num_threads(threads)
    default = compare_maps(pred, target)
    for key in SUITE_KEYS + FLAG_KEYS:
        assert torch.equal(single[key], default[key]), key


def test_batch_equals_singles_and_inputs_are_not_modified():
    pred, target = mixed_pairs()
    copies = pred.clone(), target.clone()
    whole = compare_maps(pred, target)
    assert torch.equal(pred, copies[0]) and torch.equal(target, copies[1])
    for i in range(pred.shape[0]):
        single = compare_maps(pred[i : i + 1], target[i : i + 1])
        for key in SUITE_KEYS + FLAG_KEYS:
            assert torch.equal(single[key], whole[key][i : i + 1]), (i, key)


@pytest.mark.parametrize("implementation", [compare_maps, compare_maps_torch])
def test_float32_runs_in_float32(implementation):
    pred, target = mixed_pairs()
    out32 = implementation(pred.float(), target.float())
    out64 = compare_maps(pred, target)
    for key in SUITE_KEYS:
        assert out32[key].dtype == torch.float32
        torch.testing.assert_close(out32[key].double(), out64[key], rtol=1e-4, atol=2e-5, msg=key)


@pytest.mark.parametrize("implementation", [compare_maps, compare_maps_torch])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_with_all_batch_indices(implementation, bad):
    pred, target = mixed_pairs()
    pred[1, 0, 0] = bad
    pred[6, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"pred holds NaN or infinite values at batch indices \[1, 6\]"):
        implementation(pred, target)
    pred, target = mixed_pairs()
    target[4, -1, -1] = bad
    with pytest.raises(ValueError, match=r"target holds NaN or infinite values at batch indices \[4\]"):
        implementation(pred, target)
    with pytest.raises(ValueError, match="shape mismatch"):
        implementation(target, target[:, :-1])


@pytest.mark.parametrize("implementation", [compare_maps, compare_maps_torch])
def test_a_subnormal_spread_is_refused_not_returned_as_nan(implementation):
    pred, target = mixed_pairs()
    pred[3] = 0.0
    pred[3, 0, 0] = 1e-310  # max − min is subnormal: 1 / spread overflows
    with pytest.raises(ValueError, match=r"pred maps at batch indices \[3\] vary by less than the smallest normal"):
        implementation(pred, target)


@pytest.mark.parametrize("implementation", [compare_maps, compare_maps_torch])
def test_empty_batch_gives_empty_results_from_both_implementations(implementation):
    out = implementation(torch.empty(0, 4, 4, dtype=torch.float32), torch.empty(0, 4, 4, dtype=torch.float32))
    assert set(out) == set(SUITE_KEYS) | set(FLAG_KEYS)
    assert all(v.shape == (0,) for v in out.values())
    assert out["mae"].dtype == torch.float32 and out["target_degenerate"].dtype == torch.bool


def test_runs_on_cuda_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pred, target = mixed_pairs()
    on_gpu = compare_maps(pred.cuda(), target.cuda())
    on_cpu = compare_maps(pred, target)
    for key in SUITE_KEYS + FLAG_KEYS:
        assert on_gpu[key].device.type == "cuda"
        torch.testing.assert_close(on_gpu[key].cpu(), on_cpu[key], rtol=0, atol=1e-12, msg=key)
