"""AP protocols: COCO AP50 equals pycocotools' COCOeval, VOC AP matches hand-computed golden values."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO  # the reference: a test dependency (pycocotools 2.0.11)
from pycocotools.cocoeval import COCOeval

from saliencylab.detection.ap import Detections, GroundTruth, average_precision, class_indices, coco_ap50, voc_ap


def pycocotools_ap50(truths, detections, num_classes, difficult):
    """Per-class AP (NaN where pycocotools gives -1) and mean AP at IoU 0.5, area all, maxDets 100.

    Difficult objects become crowd annotations with difficult="ignore", as our protocol defines.
    """
    annotations = []
    for image, truth in enumerate(truths, start=1):
        for box, label, hard in zip(truth.boxes, truth.labels, truth.difficult):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image, "category_id": int(label), "bbox": [box[0], box[1], w, h],
                 "area": w * h, "iscrowd": int(bool(hard) and difficult == "ignore")}
            )  # fmt: skip
    results = [
        {"image_id": image, "category_id": int(label), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(score)}
        for image, dets in enumerate(detections, start=1)
        for b, score, label in zip(dets.boxes, dets.scores, dets.labels)
    ]
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i} for i in range(1, len(truths) + 1)],
        "annotations": annotations,
        "categories": [{"id": c} for c in range(1, num_classes + 1)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][0, :, :, 0, 2]  # IoU .5, all recall points, classes, area all, maxDets 100
    per_class = [float(precision[:, k].mean()) if (precision[:, k] > -1).all() else math.nan for k in range(num_classes)]
    mean = float(evaluator.stats[1])
    return per_class, math.nan if mean == -1 else mean  # -1: no class has a positive


def random_case(rng, num_classes, images, crowded=False):
    """Objects of random sizes; detections near them (jittered, some wrong class) and some anywhere."""
    truths, detections = [], []
    for _ in range(images):
        k = int(rng.integers(0, 6))
        corner = rng.uniform(0, 100, (k, 2))
        boxes = np.c_[corner, corner + rng.uniform(4, 50, (k, 2))]
        truths.append(GroundTruth(boxes, rng.integers(1, num_classes + 1, k), rng.random(k) < 0.3))
        d = 130 if crowded else int(rng.integers(0, 15))  # > 100: the per-image cap matters
        near = boxes[rng.integers(0, k, d)] if k else rng.uniform(0, 100, (d, 4))
        jittered = near + rng.normal(0, 5, (d, 4))
        jittered[:, 2:] = np.maximum(jittered[:, 2:], jittered[:, :2] + 1)
        labels = np.where(rng.random(d) < 0.8, truths[-1].labels[rng.integers(0, k, d)] if k else 1, rng.integers(1, num_classes + 1, d))
        detections.append(Detections(jittered, rng.random(d), labels))
    return truths, detections


def assert_same(ours, reference):
    per_class, mean = reference
    np.testing.assert_allclose(ours.per_class, per_class, atol=1e-4, equal_nan=True)
    assert ours.mean == pytest.approx(mean, abs=1e-4, nan_ok=True)


@pytest.mark.parametrize("difficult", ["gt", "ignore"])
@pytest.mark.parametrize("case", range(12))
def test_coco_ap50_equals_pycocotools_on_random_cases(case, difficult):
    rng = np.random.default_rng(case)
    num_classes = int(rng.integers(1, 5))
    truths, detections = random_case(rng, num_classes, images=int(rng.integers(1, 7)), crowded=case % 4 == 3)
    if not any(len(d.scores) for d in detections):
        detections[0] = Detections([[0, 0, 5, 5]], [0.5], [1])  # pycocotools cannot load an empty result list
    ours = coco_ap50(truths, detections, num_classes, difficult=difficult)
    assert_same(ours, pycocotools_ap50(truths, detections, num_classes, difficult))


def hand_made_case():
    """Class 1 (person): image A has g1 and a difficult g2, image B has g3, image C has g4 and no detection.

    Detections, by score: d1 hits g1 (0.9), d2 duplicates g1 (0.8), d3 hits difficult g2 (0.7),
    d4 hits nothing (0.6), d5 hits g3 with IoU 100/105 (0.5). Class 2 (bicycle) has two detections
    and no object: its AP is undefined and it must not enter the mean. Class 3 has one object, no detection.
    """
    truths = [
        GroundTruth([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [False, True]),
        GroundTruth([[0, 0, 10, 10]], [1], [False]),
        GroundTruth([[40, 40, 60, 60], [0, 0, 50, 50]], [1, 3], [False, False]),
    ]
    detections = [
        Detections([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 9, 9]], [0.9, 0.8, 0.7, 0.05], [1, 1, 1, 2]),
        Detections([[50, 50, 60, 60], [0, 0, 10, 10.5], [0, 0, 10, 10]], [0.6, 0.5, 0.3], [1, 1, 2]),
        Detections(np.zeros((0, 4)), [], []),
    ]
    return truths, detections


@pytest.mark.parametrize("difficult", ["gt", "ignore"])
def test_coco_ap50_equals_pycocotools_on_hand_made_cases(difficult):
    truths, detections = hand_made_case()
    ours = coco_ap50(truths, detections, 3, difficult=difficult)
    assert_same(ours, pycocotools_ap50(truths, detections, 3, difficult))
    assert math.isnan(ours.per_class[1]) and ours.per_class[2] == 0.0
    assert ours.positives == ((4 if difficult == "gt" else 3), 0, 1) and ours.detections == (5, 2, 0)


def test_coco_ap50_golden_value():
    # Class 1 with difficult objects counted (4 positives): d1 TP, d2 FP (g1 taken), d3 TP, d4 FP, d5 TP.
    # recall 1/4, 1/4, 2/4, 2/4, 3/4; precision 1, 1/2, 2/3, 1/2, 3/5; envelope 1, 2/3, 2/3, 3/5, 3/5.
    # 101 recall points r = i/100: r <= .25 (26 points) -> 1; .25 < r <= .5 (25) -> 2/3; .5 < r <= .75 (25) -> 3/5;
    # r > .75 (25) -> 0. AP = (26 + 25 * 2/3 + 25 * 3/5) / 101 = 57.6667 / 101.
    truths, detections = hand_made_case()
    ours = coco_ap50(truths, detections, 3, difficult="gt")
    assert ours.per_class[0] == pytest.approx((26 + 25 * 2 / 3 + 25 * 3 / 5) / 101, abs=1e-12)
    assert ours.mean == pytest.approx((ours.per_class[0] + 0.0) / 2, abs=1e-12)  # class 2 left out, class 3 is 0


def test_no_detections_at_all_is_zero_ap():
    # pycocotools refuses an empty result list (loadRes indexes anns[0]); every class with objects has AP 0.
    truths, _ = hand_made_case()
    empty = [Detections(np.zeros((0, 4)), [], [])] * 3
    ours = coco_ap50(truths, empty, 3)
    assert ours.per_class[0] == 0.0 and math.isnan(ours.per_class[1]) and ours.mean == 0.0
    assert voc_ap(truths, empty, 3, protocol="voc07").mean == 0.0


@pytest.mark.parametrize(
    "protocol, difficult, expected",
    [
        # ignore: 3 positives (g1, g3, g4); d1 TP, d2 FP (duplicate), d3 neither (difficult), d4 FP, d5 TP.
        # recall 1/3, 1/3, 1/3, 1/3, 2/3; precision 1, 1/2, 1/2, 1/3, 1/2.
        # voc2010: envelope steps 0 -> 1/3 at 1, 1/3 -> 2/3 at 1/2: 1/3 + 1/6 = 1/2.
        ("voc2010", "ignore", 1 / 2),
        # voc07: r = 0, .1, .2, .3 -> 1; r = .4, .5, .6 -> 1/2; r = .7 .. 1 -> 0: (4 + 1.5) / 11.
        ("voc07", "ignore", 5.5 / 11),
        # gt: 4 positives; d3 TP. recall 1/4, 1/4, 2/4, 2/4, 3/4; precision 1, 1/2, 2/3, 1/2, 3/5.
        # voc2010: 1/4 * 1 + 1/4 * 2/3 + 1/4 * 3/5 = (15 + 10 + 9) / 60.
        ("voc2010", "gt", 34 / 60),
        # voc07: r = 0, .1, .2 -> 1; r = .3, .4, .5 -> 2/3; r = .6, .7 -> 3/5; r = .8, .9, 1 -> 0: (3 + 2 + 1.2) / 11.
        ("voc07", "gt", 6.2 / 11),
    ],
)
def test_voc_golden_values(protocol, difficult, expected):
    truths, detections = hand_made_case()
    result = voc_ap(truths, detections, 3, protocol=protocol, difficult=difficult)
    assert result.per_class[0] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(result.per_class[1]) and result.per_class[2] == 0.0
    assert result.mean == pytest.approx(expected / 2, abs=1e-12)


def test_voc_match_goes_to_the_best_overlap_even_if_taken():
    # The devkit compares each detection with its best-overlapping object only: d2 overlaps g1 best
    # (IoU 0.9) and g1 is taken, so d2 is a false positive although it overlaps g2 by IoU 0.6 > 0.5.
    # COCO instead matches d2 to the free g2. voc2010: recall 1/2, 1/2; precision 1, 1/2 -> AP 1/2.
    truths = [GroundTruth([[0, 0, 10, 10], [1, 0, 11, 10]], [1, 1], [False, False])]
    detections = [Detections([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [1, 1])]
    assert voc_ap(truths, detections, 1, protocol="voc2010").mean == pytest.approx(0.5)
    assert coco_ap50(truths, detections, 1).mean == pytest.approx(1.0)


def test_voc07_reads_exact_tenths():
    # 10 objects, 3 hit first: recall reaches exactly 3/10. VOC07 points r = 0, .1, .2, .3 have precision 1,
    # the rest 0: 4/11 (a point computed as 3 * 0.1 = 0.30000000000000004 would lose r = .3: 3/11).
    boxes = [[10 * i, 0, 10 * i + 8, 8] for i in range(10)]
    truths = [GroundTruth(boxes, [1] * 10, [False] * 10)]
    detections = [Detections(boxes[:3], [0.9, 0.8, 0.7], [1, 1, 1])]
    assert voc_ap(truths, detections, 1, protocol="voc07").mean == pytest.approx(4 / 11, abs=1e-12)


def test_thresholds_are_inclusive_for_coco_exclusive_for_voc():
    # IoU exactly 1/2: detection [0, 0, 10, 10] against object [0, 0, 10, 20] (100 / 200).
    truths = [GroundTruth([[0, 0, 10, 20]], [1], [False])]
    detections = [Detections([[0, 0, 10, 10]], [0.9], [1])]
    assert coco_ap50(truths, detections, 1).mean == 1.0
    assert voc_ap(truths, detections, 1, protocol="voc2010").mean == 0.0


def test_dispatch_and_bad_input_is_named():
    truths, detections = hand_made_case()
    by_name = average_precision(truths, detections, 3, "voc07", difficult="gt")
    np.testing.assert_array_equal(by_name.per_class, voc_ap(truths, detections, 3, protocol="voc07", difficult="gt").per_class)
    with pytest.raises(ValueError, match="valid: \\['coco_ap50', 'voc07', 'voc2010'\\]"):
        average_precision(truths, detections, 3, "ap75", difficult="gt")
    with pytest.raises(ValueError, match="label 3 is outside \\[1, 2\\]"):
        coco_ap50(truths, detections, 2)
    with pytest.raises(ValueError, match="ground truth for 3 images but detections for 2"):
        voc_ap(truths, detections[:2], 3)
    with pytest.raises(ValueError, match="difficult must be one of"):
        coco_ap50(truths, detections, 3, difficult="skip")
    with pytest.raises(ValueError, match="shape \\(N, 4\\)"):
        GroundTruth([[0, 0, 1]], [1], [False])
    with pytest.raises(ValueError, match="2 boxes, 2 scores, 1 labels"):
        Detections([[0, 0, 1, 1]] * 2, [0.5, 0.4], [1])
    with pytest.raises(ValueError, match="unknown class 'dragon'; valid classes: \\['cat', 'dog'\\]"):
        class_indices(["dog", "dragon"], ("cat", "dog"))
    np.testing.assert_array_equal(class_indices(["dog", "cat"], ("cat", "dog")), [2, 1])


def test_inputs_are_not_mutated():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0]])
    truth = GroundTruth(boxes, [1], [False])
    boxes[0, 0] = 5.0
    assert truth.boxes[0, 0] == 0.0
