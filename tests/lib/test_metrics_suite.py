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
from saliencylab.metrics import suite

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


@pytest.mark.parametrize("chunk_rows", [1, 3, 64])
def test_chunking_does_not_change_results(monkeypatch, chunk_rows):
    pred, target = mixed_pairs()
    whole = compare_maps(pred, target)
    monkeypatch.setattr(suite, "CPU_CHUNK_BYTES", chunk_rows * pred[0].numel() * 8)
    chunked = compare_maps(pred, target)
    for key in SUITE_KEYS + FLAG_KEYS:
        assert torch.equal(chunked[key], whole[key]), key


def test_batch_equals_singles_and_inputs_are_not_modified():
    pred, target = mixed_pairs()
    copies = pred.clone(), target.clone()
    whole = compare_maps(pred, target)
    assert torch.equal(pred, copies[0]) and torch.equal(target, copies[1])
    for i in range(pred.shape[0]):
        single = compare_maps(pred[i : i + 1], target[i : i + 1])
        for key in SUITE_KEYS + FLAG_KEYS:
            assert torch.equal(single[key], whole[key][i : i + 1]), (i, key)


def test_float32_runs_in_float32():
    pred, target = mixed_pairs()
    out32 = compare_maps(pred.float(), target.float())
    out64 = compare_maps(pred, target)
    for key in SUITE_KEYS:
        assert out32[key].dtype == torch.float32
        torch.testing.assert_close(out32[key].double(), out64[key], rtol=1e-4, atol=2e-5, msg=key)


def test_all_nan_batch_indices_are_listed_across_chunks(monkeypatch):
    pred, target = mixed_pairs()
    monkeypatch.setattr(suite, "CPU_CHUNK_BYTES", 2 * pred[0].numel() * 8)
    pred[1, 0, 0] = float("nan")
    pred[6, 3, 3] = float("-inf")
    with pytest.raises(ValueError, match=r"pred holds NaN or infinite values at batch indices \[1, 6\]"):
        compare_maps(pred, target)
    with pytest.raises(ValueError, match="shape mismatch"):
        compare_maps(target, target[:, :-1])


def test_empty_batch_gives_empty_results():
    out = compare_maps(torch.empty(0, 4, 4, dtype=torch.float64), torch.empty(0, 4, 4, dtype=torch.float64))
    assert all(v.shape == (0,) for v in out.values())
    assert out["pred_constant"].dtype == torch.bool and out["mae"].dtype == torch.float64


def test_runs_on_cuda_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pred, target = mixed_pairs()
    on_gpu = compare_maps(pred.cuda(), target.cuda())
    on_cpu = compare_maps(pred, target)
    for key in SUITE_KEYS + FLAG_KEYS:
        assert on_gpu[key].device.type == "cuda"
        torch.testing.assert_close(on_gpu[key].cpu(), on_cpu[key], rtol=0, atol=1e-12, msg=key)
