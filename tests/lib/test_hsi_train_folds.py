"""HSI training pieces without a model: fold assignment, the HSB manifest, fixation resizing, the lr schedule."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from saliencylab.datasets.hsb import parse_hsb_manifest
from saliencylab.hsi.folds import assign_folds, fold_split
from saliencylab.hsi.training import learning_rate, resize_fixations

HSB_LIKE = {f"{label}_{i}": label for label in [f"class{c:02d}" for c in range(20)] for i in range(8)}  # 20 classes x 8


def test_five_folds_of_hsb_hold_every_class_and_are_equal_in_size():
    folds = assign_folds(HSB_LIKE, 5, seed=0)
    assert set(folds) == set(HSB_LIKE) and Counter(folds.values()) == {k: 32 for k in range(5)}
    for k in range(5):
        train, held_out = fold_split(folds, k)
        assert {HSB_LIKE[key] for key in held_out} == set(HSB_LIKE.values())
        assert {HSB_LIKE[key] for key in train} == set(HSB_LIKE.values())
        assert not set(train) & set(held_out) and len(train) + len(held_out) == 160


def test_the_assignment_is_seeded_and_independent_of_the_input_order():
    shuffled = dict(reversed(list(HSB_LIKE.items())))
    assert assign_folds(shuffled, 5, seed=3) == assign_folds(HSB_LIKE, 5, seed=3)
    assert assign_folds(HSB_LIKE, 5, seed=3) != assign_folds(HSB_LIKE, 5, seed=4)


def test_a_class_too_small_for_the_folds_is_named():
    labels = dict(HSB_LIKE) | {"lonely_0": "zebra", "lonely_1": "zebra"}
    with pytest.raises(ValueError, match=r"'zebra' has 2") as info:
        assign_folds(labels, 5, seed=0)
    assert "class00" not in str(info.value)
    with pytest.raises(ValueError, match="at least 2 folds"):
        assign_folds(HSB_LIKE, 1, seed=0)


def test_resized_fixations_keep_every_fixation_at_the_scaled_position():
    fixations = np.zeros((48, 64), dtype=np.uint16)
    fixations[0, 0], fixations[47, 63], fixations[10, 20], fixations[11, 21] = 1, 2, 1, 1
    small = resize_fixations(fixations, (24, 32))
    assert small.dtype == np.float32 and small.sum() == fixations.sum()
    assert small[0, 0] == 1 and small[23, 31] == 2 and small[5, 10] == 2  # (10, 20) and (11, 21) share a pixel
    large = resize_fixations(fixations, (96, 128))
    assert large[1, 1] == 1 and large[95, 127] == 2 and large.sum() == 5
    assert fixations.sum() == 5  # not modified


def test_the_learning_rate_is_divided_by_ten_after_ten_epochs():
    assert [learning_rate(1e-4, e) for e in (0, 9)] == [1e-4, 1e-4]
    assert learning_rate(1e-4, 10) == pytest.approx(1e-5) and learning_rate(1e-4, 19) == pytest.approx(1e-5)
    assert learning_rate(1e-4, 15, decay_epoch=0) == 1e-4


def test_an_hsb_csv_manifest_gives_sorted_entries_and_flags_bad_rows():
    csv_text = (
        "image,label,map,fixations,notes\n"
        "imgs/b dog.jpg,dog,maps/b.png,fix/b.png,x\n"
        "imgs/a.jpg,cat,maps/a.png,,\n"
        "imgs/c.jpg,,maps/c.png,,\n"
        "../outside.jpg,cat,maps/d.png,,\n"
        "imgs/a.png,cat,maps/a2.png,,\n"
    )
    entries = {e.row: e for e in parse_hsb_manifest(csv_text.encode(), "hsb.csv")}
    assert entries[1].key == "imgs_b_dog" and entries[1].fixations == "fix/b.png" and entries[1].problem is None
    assert entries[2].fixations is None
    assert "empty label" in entries[3].problem and "row 3 of hsb.csv" in entries[3].problem
    assert "without '..'" in entries[4].problem
    assert "imgs/a.jpg" in entries[2].problem and "imgs/a.png" in entries[5].problem  # both map to imgs_a
    assert [e.key for e in parse_hsb_manifest(csv_text.encode(), "hsb.csv")][:2] == ["___outside", "imgs_a"]


def test_an_hsb_json_manifest_and_unusable_manifests():
    rows = [{"image": "x.png", "label": "traffic light", "map": "x_map.png"}]
    (entry,) = parse_hsb_manifest(json.dumps({"items": rows}).encode(), "hsb.json")
    assert (entry.key, entry.label, entry.fixations) == ("x", "traffic light", None)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['map'\]"):
        parse_hsb_manifest(b"image,label\nx.png,dog\n", "hsb.csv")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_hsb_manifest(b"{", "hsb.json")
    with pytest.raises(ValueError, match="lists no images"):
        parse_hsb_manifest(b"image,label,map\n", "hsb.csv")
