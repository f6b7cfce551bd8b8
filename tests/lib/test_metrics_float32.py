"""float32 accuracy of the map metrics: sums accumulated in float64, top sets independent of the dtype.

Every map here is float32; "the float64 result" is the same metric on the same values stored as
float64. The metrics compute all sums in float64 and round once, so a float32 result lies within
one float32 rounding (6e-8 relative) of the float64 one; the tests allow 1e-6 (issue #15). The
top-set cases are regression tests for issue #15: a large tie block at the 90th percentile,
where a threshold interpolated or compared in float32 (or on rounded, min-max scaled values)
let one pixel more into a paper top set.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import reference_metrics as ref
from saliencylab.metrics import SUITE_KEYS, compare_maps, iou_top, sum_normalise, top_set, top_set_is_degenerate
from saliencylab.metrics.fixations import information_gain, information_gain_torch, nss, nss_torch
from saliencylab.metrics.maps import cc, kldiv, mae, sim
from saliencylab.metrics.suite import compare_maps_torch
from saliencylab.metrics.sums import accumulate, row_sum

RTOL = 1e-6  # float32 result against the float64 result on the same values (issue #15)
SIZE = 512

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def mask_like_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three float32 (prediction, target) pairs at 512², (3, 512, 512) each.

    Targets are quantised masks (k / 255), 90 % zero. Predictions: a smooth field in [0, 1], a
    CAM-like map that is zero outside its blobs, and a smooth field on a large offset (1000 +
    0.01 · field, about 160 distinct float32 values), where float32 centring cancels.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(6, 1, 8, 8, generator=generator)
    smooth = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    pred, field = smooth[:3].clone(), smooth[3:]
    cut = field.flatten(1).quantile(0.9, dim=1)[:, None, None]
    target = torch.where(field > cut, torch.round(field * 255) / 255, 0.0)
    pred[1] = torch.where(pred[1] > 0.6, pred[1], 0.0)
    pred[2] = pred[2] * 0.01 + 1000
    return pred, target


def assert_float32_close(metric, *maps: torch.Tensor) -> None:
    """metric on the float32 maps equals metric on them as float64 within RTOL, in float32."""
    out32 = metric(*maps)
    out64 = metric(*(m.double() for m in maps))
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=RTOL, atol=0.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "metric",
    [mae, cc, kldiv, sim, lambda a, b: iou_top(a, b, mode="exact"), lambda a, b: iou_top(a, b, mode="paper")],
    ids=["mae", "cc", "kldiv", "sim", "iou_exact", "iou_paper"],
)
def test_float32_metrics_match_float64_on_mask_like_maps(metric, device):
    pred, target = (x.to(device) for x in mask_like_pairs())
    assert_float32_close(metric, pred, target)
    assert_float32_close(metric, target, pred)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", [nss, nss_torch, information_gain, information_gain_torch])
def test_float32_fixation_metrics_match_float64(metric, device):
    """Kernels (CPU) and the torch path (the CUDA path) alike: the offset map's std and every mean
    over 512² pixels would lose far more than RTOL if summed in float32."""
    pred, target = (x.to(device) for x in mask_like_pairs())
    fixated = target > 0.5
    if metric in (nss, nss_torch):
        assert_float32_close(lambda s: metric(s, fixated), pred)
    else:  # against a shared and a per-map baseline
        assert_float32_close(lambda s, b: metric(s, fixated, b), pred, torch.ones(SIZE, SIZE, device=device))
        assert_float32_close(lambda s, b: metric(s, fixated, b), pred, target)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_sum_normalise_matches_float64(device):
    _, target = mask_like_pairs()
    target = target.to(device)
    torch.testing.assert_close(sum_normalise(target).double(), sum_normalise(target.double()), rtol=RTOL, atol=0.0)


@pytest.mark.parametrize("implementation", [compare_maps, compare_maps_torch])
def test_float32_suite_matches_float64(implementation):
    pred, target = mask_like_pairs()
    out32 = implementation(pred, target)
    out64 = implementation(pred.double(), target.double())
    for key in SUITE_KEYS:
        assert out32[key].dtype == torch.float32, key
        torch.testing.assert_close(out32[key].double(), out64[key], rtol=RTOL, atol=0.0, msg=key)


def test_cc_with_a_large_offset_matches_the_reference():
    # float32 centring of 1000 + 0.01 · field cancels most digits; the float64 sums keep them
    pred, target = mask_like_pairs()
    expected = ref.cc(pred[2].double().numpy(), target[2].double().numpy())
    assert cc(pred[2:], target[2:]).item() == pytest.approx(expected, rel=RTOL)


def tie_block_target(side: int, rows: slice, value: float, top: float | None) -> torch.Tensor:
    """(1, side, side) float32 mask-like map: zeros, whole rows tied at `value`, one pixel at the
    next float32 below `value` and, if given, one pixel at `top` (the maximum)."""
    value32 = np.float32(value)
    x = np.zeros((side, side), dtype=np.float32)
    x[rows] = value32
    x[rows.start - 1, 7] = np.nextafter(value32, np.float32(-1))
    if top is not None:
        x[side - 1, side - 1] = np.float32(top)
    return torch.from_numpy(x)[None]


def distinct_prediction(side: int) -> torch.Tensor:
    """(1, side, side) float32 map of distinct values i / side² in a seeded random order."""
    n = side * side
    order = np.random.default_rng(1).permutation(n)
    return torch.from_numpy((np.arange(n, dtype=np.float32)[order] / np.float32(n)).reshape(1, side, side))


# 512²: the paper threshold is the tied value (lerp weight 0.7), and the top set is the 30,720
# tied pixels plus the maximum; scaling the map in float32 merged the pixel just below the block
# into it (30,722). 100²: the order statistics around the cut are that pixel and the block
# (weight 0.1); a float32 lerp rounds onto the lower one, admitting it (1,001 instead of 1,000),
# as NumPy does on a float32 array.
TIE_CASES = {
    "512-scaling": (512, slice(100, 160), 0.8107588, 1.1756556, 30_721),
    "100-lerp": (100, slice(90, 100), 0.6805375, None, 1_000),
}


@pytest.mark.parametrize("case", TIE_CASES.values(), ids=TIE_CASES.keys())
def test_tie_block_at_the_cut_gives_one_paper_set_on_every_path(case):
    side, rows, value, top, size = case
    target = tie_block_target(side, rows, value, top)
    pred = distinct_prediction(side)
    # the documented rule: float64 quantile of the values upcast to float64, compared as float64
    target64 = target[0].double().numpy()
    assert ref.paper_top_set(target64, 0.1).sum() == size
    assert int(top_set(target, mode="paper").sum()) == size
    assert int(top_set(target.double(), mode="paper").sum()) == size
    expected = ref.iou_paper(pred[0].double().numpy(), target64)
    for dtype in (torch.float32, torch.float64):
        p, t = pred.to(dtype), target.to(dtype)
        paths = {
            "compare_maps": compare_maps(p, t)["iou_paper"],
            "compare_maps_torch": compare_maps_torch(p, t)["iou_paper"],
            "iou_top": iou_top(p, t, mode="paper"),
            "iou_top swapped": iou_top(t, p, mode="paper"),
        }
        for name, value_ in paths.items():
            assert value_.item() == torch.tensor(expected, dtype=dtype).item(), (dtype, name)


@pytest.mark.parametrize("case", TIE_CASES.values(), ids=TIE_CASES.keys())
def test_tie_block_at_the_cut_gives_one_exact_iou_on_every_path(case):
    side, rows, value, top, _ = case
    target = tie_block_target(side, rows, value, top)
    pred = distinct_prediction(side)
    expected = ref.iou_exact(pred[0].double().numpy(), target[0].double().numpy())
    for dtype in (torch.float32, torch.float64):
        p, t = pred.to(dtype), target.to(dtype)
        values = [compare_maps(p, t)["iou_exact"], compare_maps_torch(p, t)["iou_exact"], iou_top(p, t, mode="exact")]
        assert values[0].item() == values[1].item() == values[2].item(), dtype
        assert values[0].item() == pytest.approx(expected, rel=1e-6 if dtype == torch.float32 else 1e-13)
        flags = compare_maps(p, t)["target_degenerate"], compare_maps_torch(p, t)["target_degenerate"]
        assert flags[0].item() == flags[1].item() == top_set_is_degenerate(t).item() == ref.collapses(t[0].numpy())


def test_accumulate_sums_in_float64_block_by_block(monkeypatch):
    # 1 + 2⁻²⁴ · 2¹⁸ in float32 pieces: every partial float32 sum above 1 drops the small terms
    row = torch.full((1, 2**18 + 1), 2.0**-24, dtype=torch.float32)
    row[0, 0] = 1.0
    expected = math.fsum(row[0].double().tolist())
    assert row_sum(row).dtype == torch.float64
    assert row_sum(row).item() == expected == 1.015625
    widths = []

    def terms(block: torch.Tensor) -> tuple[torch.Tensor]:
        widths.append(block.shape[1])
        assert block.dtype == torch.float64
        return (block,)

    monkeypatch.setattr("saliencylab.metrics.sums.CPU_BLOCK_ELEMENTS", 2**16)
    batch = torch.cat([row, row.flip(1)])
    assert accumulate(terms, batch)[0].tolist() == [expected, expected]
    assert max(widths) == 2**15 and sum(widths) == row.shape[1]  # blocks of ≤ 2¹⁶ values per tensor
