"""Algorithm 1 on constructed cases: coordinates, fixation maps, thresholds at and around their values, blur."""

from __future__ import annotations

import numpy as np
import pytest

from saliencylab.hsi.labels import (
    LabelParams,
    blur_sigma,
    conditional_label,
    fixation_map,
    fixation_points,
    passive_maps,
    saliency_from_fixations,
    union_masks,
)


def test_fixation_points_are_one_based_xy_and_drop_off_image_samples():
    xy = np.array([[1, 1], [3, 2], [0, 5], [5, 1], [4, 2], [2, 3]])  # [x, y], 1-based; image 2 rows x 4 columns
    points = fixation_points(xy, (2, 4))
    np.testing.assert_array_equal(points, [[0, 0], [1, 2], [1, 3]])
    assert points.dtype == np.int64
    assert fixation_points(np.zeros((0, 2)), (2, 4)).shape == (0, 2)


def test_fixation_map_binary_or_count():
    points = np.array([[0, 1], [0, 1], [2, 0]])
    np.testing.assert_array_equal(fixation_map(points, (3, 2)), [[0, 1], [0, 0], [1, 0]])
    np.testing.assert_array_equal(fixation_map(points, (3, 2), "count"), [[0, 2], [0, 0], [1, 0]])


def _grid_fixations(n: int, size: int = 10) -> np.ndarray:
    """n distinct fixated pixels of a size x size image, row-major."""
    fix = np.zeros((size, size), dtype=np.float32)
    fix.flat[:n] = 1
    return fix


@pytest.mark.parametrize(
    ("mask_pixels", "comparison", "kept"),
    [
        (10, ">=", True),  # area exactly Tₐ = 0.1, share exactly T_r = 0.05 (1 of 20 fixations)
        (10, ">", False),  # the strict reading drops the same mask
        (9, ">=", False),  # area just below Tₐ
    ],
)
def test_thresholds_exactly_at_their_values(mask_pixels, comparison, kept):
    fix = _grid_fixations(20)  # rows 0 and 1 fixated
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[9, :] = 1  # bottom row: no fixation
    mask[1, 9] = 1  # one fixated pixel
    mask.flat[90 : 90 + (11 - mask_pixels)] = 0  # keep mask_pixels - 1 unfixated pixels
    label = conditional_label(fix, mask, LabelParams(comparison=comparison))
    assert label.area_ratio == mask_pixels / 100 and label.fixation_share == 0.05
    assert label.kept is kept


def test_share_just_below_threshold_is_dropped():
    fix = _grid_fixations(21)  # 1 of 21 fixations < 0.05
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[9, :] = 1
    mask[0, 0] = 1
    label = conditional_label(fix, mask, LabelParams())
    assert label.fixation_share == pytest.approx(1 / 21) and not label.kept


def test_mask_holding_all_fixations_and_mask_holding_none():
    fix = _grid_fixations(20)
    everything = np.zeros((10, 10), dtype=np.uint8)
    everything[:3] = 1
    nothing = 1 - everything
    params = LabelParams(sigma=1.0, sigma_reference_width=0)
    full, empty = conditional_label(fix, everything, params), conditional_label(fix, nothing, params)
    assert full.kept and full.fixation_share == 1.0 and full.area_ratio == pytest.approx(0.3)
    np.testing.assert_array_equal(full.fixations, fix)
    np.testing.assert_allclose(full.saliency, passive_maps(np.argwhere(fix > 0), (10, 10), params)[1], rtol=1e-6)
    assert not empty.kept and empty.fixation_share == 0.0 and empty.area_ratio == pytest.approx(0.7)
    assert not empty.fixations.any() and not empty.saliency.any()


def test_blur_is_a_sampled_gaussian_scaled_by_the_chosen_rule():
    fix = np.zeros((41, 41), dtype=np.float32)
    fix[20, 20] = 1
    sigma = 3.0
    peak = saliency_from_fixations(fix, sigma, "max")
    assert peak[20, 20] == pytest.approx(1.0)
    for k in (1, 2, 5):  # separable sampled Gaussian: the profile ratio is exp(-k²/2σ²)
        assert peak[20, 20 + k] == pytest.approx(np.exp(-(k**2) / (2 * sigma**2)), rel=1e-5)
    assert saliency_from_fixations(fix, sigma, "sum").sum() == pytest.approx(1.0)
    minmax = saliency_from_fixations(fix + 1, sigma, "minmax")
    assert minmax.min() == 0.0 and minmax.max() == pytest.approx(1.0)
    assert not saliency_from_fixations(np.zeros((4, 4)), sigma).any()


def test_sigma_scales_with_image_width():
    assert blur_sigma(LabelParams(), 640) == 19.0
    assert blur_sigma(LabelParams(), 128) == pytest.approx(3.8)
    assert blur_sigma(LabelParams(sigma_reference_width=0), 128) == 19.0


def test_blur_then_mask_is_zero_outside_the_mask_mask_then_blur_is_not():
    fix = np.zeros((20, 20), dtype=np.float32)
    fix[5, 5] = fix[15, 15] = 1
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[:10, :10] = 1
    params = dict(sigma=2.0, sigma_reference_width=0)
    before = conditional_label(fix, mask, LabelParams(order="mask-then-blur", **params))
    after = conditional_label(fix, mask, LabelParams(order="blur-then-mask", **params))
    assert before.saliency[10, 5] > 0 and not after.saliency[mask == 0].any()
    assert before.saliency[15, 15] == 0  # the other fixation is outside the mask


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="no fixation"):
        passive_maps(np.zeros((0, 2), dtype=np.int64), (4, 4), LabelParams())
    with pytest.raises(ValueError, match="differ in size"):
        conditional_label(np.ones((4, 4), np.float32), np.ones((4, 5)), LabelParams())
    with pytest.raises(ValueError, match="comparison must be one of"):
        LabelParams(comparison="=>")


def test_union_masks_merges_instances_of_one_name():
    a, b = np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)
    a[0, 0], b[1, 1] = 1, 7
    union = union_masks([("dog", a), ("cat", a), ("dog", b)])
    assert list(union) == ["dog", "cat"]
    np.testing.assert_array_equal(union["dog"], [[1, 0], [0, 1]])
    assert b[1, 1] == 7  # inputs not mutated
