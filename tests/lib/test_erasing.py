"""Selective erasing science: the erase mask, its mapping to native size, the fill, and the selection rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliencylab.erasing import apply_erase, criterion_scores, erase_mask, is_selected, resize_mask
from saliencylab.metrics import iou_top, mae, minmax_normalise


def test_erase_mask_is_strictly_above_the_linear_percentile():
    cam = np.arange(400, dtype=np.float64).reshape(20, 20) / 399  # distinct values
    mask = erase_mask(cam.astype(np.float16))
    assert mask.sum() == 10  # 400 − ⌈0.975·399⌉ = 10 values lie above the interpolated 97.5th percentile
    assert mask.ravel()[-10:].all() and not mask.ravel()[:-10].any()
    tied = np.zeros((10, 10))
    tied[0, :3] = 1.0  # 97 % tie at the minimum: the percentile is 0 and the 3 ones are strictly above
    assert erase_mask(tied).sum() == 3
    assert not erase_mask(np.full((8, 8), 0.5)).any()  # a constant map erases nothing
    with pytest.raises(ValueError, match="percentile"):
        erase_mask(cam, 100)


def test_resize_mask_is_nearest_with_centres_aligned():
    mask = np.array([[True, False], [False, True]])
    assert resize_mask(mask, (4, 4)).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    assert resize_mask(mask, (3, 2)).tolist() == [[1, 0], [0, 1], [0, 1]]  # row centres 0.5, 1.5, 2.5 of 3 -> 0, 1, 1
    big = np.random.default_rng(0).random((64, 64)) > 0.5
    assert np.array_equal(resize_mask(big, (64, 64)), big)


def test_apply_erase_changes_only_the_masked_pixels():
    image = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    out = apply_erase(image, mask, (124, 116, 104))
    assert (out[mask] == (124, 116, 104)).all() and np.array_equal(out[~mask], image[~mask])
    assert not np.shares_memory(out, image)
    with pytest.raises(ValueError, match="differ in size"):
        apply_erase(image, mask[:4], (0, 0, 0))


def test_selection_comparisons():
    assert is_selected(0.05, 0.1, "<") and not is_selected(0.1, 0.1, "<")
    assert is_selected(0.1, 0.1, "<=")  # the original code's rule admits the threshold itself
    assert is_selected(0.2, 0.1, ">")
    with pytest.raises(ValueError, match="comparison"):
        is_selected(0.1, 0.1, "==")


def test_scores_are_the_metric_suites():
    rng = np.random.default_rng(2)
    cams, refs = torch.from_numpy(rng.random((3, 16, 16))), torch.from_numpy(rng.random((3, 16, 16)))
    refs[2] = 1.0  # a constant reference is flagged
    iou = criterion_scores(cams, refs, "iou")
    assert torch.allclose(iou["score"][:2], iou_top(cams[:2], refs[:2], mode="paper"))
    assert iou["reference_constant"].tolist() == [False, False, True] and not iou["cam_constant"].any()
    exact = criterion_scores(cams, refs, "human-iou", iou_mode="exact")
    assert torch.allclose(exact["score"][:2], iou_top(cams[:2], refs[:2], mode="exact"))
    err = criterion_scores(cams, refs, "mae")
    assert torch.allclose(err["score"][:2], mae(minmax_normalise(cams[:2]), minmax_normalise(refs[:2])))
    with pytest.raises(ValueError, match="criterion"):
        criterion_scores(cams, refs, "cc")
