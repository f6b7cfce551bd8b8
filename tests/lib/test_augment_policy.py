"""Policy v3: the table as cited, seeded application, records, box bookkeeping, and no colour inversion."""

from __future__ import annotations

import numpy as np
import pytest

from saliencylab.augment import POLICY_V3, Op, augment_once
from saliencylab.augment.policy import Augmented, apply_op
from saliencylab.seeding import numpy_generator


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    base = np.linspace(20, 230, h * w).reshape(h, w)
    return np.clip(base[..., None] + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def test_policy_v3_table_matches_research_notes():
    assert len(POLICY_V3) == 15 and all(len(sub) == 2 for sub in POLICY_V3)
    # spot checks against research notes §1.6 (upstream Jasonlee1995/AutoAugment_Detection policy_v3)
    assert POLICY_V3[0] == (Op("Posterize", 0.8, 2), Op("TranslateX_BBox", 1.0, 8))
    assert POLICY_V3[2] == (Op("Rotate_BBox", 0.6, 8), Op("Rotate_BBox", 0.8, 10))
    assert POLICY_V3[11] == (Op("Contrast", 0.0, 2), Op("ShearY_BBox", 0.8, 0))
    assert POLICY_V3[14] == (Op("SolarizeAdd", 0.8, 6), Op("Equalize", 0.8))
    names = {op.name for sub in POLICY_V3 for op in sub}
    assert "Solarize" not in names and "Invert" not in names


def test_same_generator_same_result_and_records_name_what_ran():
    image, boxes = _photo(), np.array([[10.0, 8.0, 40.0, 30.0], [0.0, 0.0, 5.0, 5.0]])
    runs = [augment_once(image, boxes, numpy_generator(7, "augment", "k1")) for _ in range(2)]
    assert np.array_equal(runs[0].image, runs[1].image) and runs[0].ops == runs[1].ops
    seen = set()
    for i in range(60):
        result = augment_once(image, boxes, numpy_generator(0, "augment", f"k{i}"))
        row = POLICY_V3[result.sub_policy - 1]
        assert [r["op"] for r in result.ops] == [op.name for op in row]
        assert [r["probability"] for r in result.ops] == [op.probability for op in row]
        assert len(result.boxes) == len(result.kept) and result.image.shape == image.shape
        seen.add(result.sub_policy)
    assert len(seen) >= 12  # the draw covers the table
    assert image.sum() == _photo().sum()  # input not modified


def test_probability_zero_never_runs_and_one_always_does():
    state = Augmented(_photo(), np.zeros((0, 4)), np.arange(0))
    never = apply_op(state, Op("Equalize", 0.0), np.random.default_rng(0))
    assert never.ops[-1]["applied"] is False and np.array_equal(never.image, state.image)
    always = apply_op(state, Op("Equalize", 1.0), np.random.default_rng(0))
    assert always.ops[-1]["applied"] is True and not np.array_equal(always.image, state.image)


def test_dropped_boxes_keep_labels_aligned():
    image = _photo(40, 40)
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 38.0, 38.0], [30.0, 0.0, 39.0, 9.0]])
    state = Augmented(image, boxes, np.arange(3), {"mask.png": np.full((40, 40), 200, np.uint8)})
    signs = {}
    for seed in range(8):  # 25 px either way; find both signs among a few seeds
        moved = apply_op(state, Op("TranslateX_BBox", 1.0, 1), np.random.default_rng(seed))
        signs[moved.ops[-1]["pixels"]] = moved
    assert sorted(signs) == [-25.0, 25.0]
    assert signs[25.0].kept.tolist() == [0]  # to the right, boxes 1 and 2 leave the image
    assert signs[-25.0].kept.tolist() == [1, 2]  # to the left, box 0 leaves and box 1 is clipped at x = 0
    assert signs[-25.0].boxes.tolist() == [[0.0, 20.0, 13.0, 38.0], [5.0, 0.0, 14.0, 9.0]]
    moved = signs[25.0]
    assert (moved.extras["mask.png"] == 0).sum() == 25 * 40  # the mask moved with the pixels, fill 0


def test_bbox_cutout_stays_near_a_box_and_skips_without_boxes():
    image = _photo(60, 60)
    state = Augmented(image, np.array([[20.0, 20.0, 40.0, 40.0]]), np.arange(1))
    out = apply_op(state, Op("BBox_Cutout", 1.0, 10), np.random.default_rng(2))
    changed = np.nonzero((out.image != image).any(axis=2))
    assert 20 <= out.ops[-1]["centre"][0] < 40 and out.ops[-1]["half"] == [7, 7]
    assert changed[0].min() >= 20 - 7 and changed[0].max() < 40 + 7
    empty = apply_op(Augmented(image, np.zeros((0, 4)), np.arange(0)), Op("BBox_Cutout", 1.0, 10), np.random.default_rng(2))
    assert empty.ops[-1]["skipped"] == "no box left" and np.array_equal(empty.image, image)


@pytest.mark.parametrize("name", ["Brightness", "Color", "Contrast", "Sharpness"])
def test_enhance_ops_use_a_factor_of_one_plus_or_minus_0_09_m(name):
    state = Augmented(_photo(), np.zeros((0, 4)), np.arange(0))
    out = apply_op(state, Op(name, 1.0, 10), np.random.default_rng(5))
    assert out.ops[-1]["factor"] in (pytest.approx(0.1), pytest.approx(1.9))
    unit = apply_op(state, Op(name, 1.0, 0), np.random.default_rng(5))
    assert np.array_equal(unit.image, state.image)  # factor 1 leaves the image as it is

