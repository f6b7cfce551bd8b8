"""Average precision of object detections at one IoU threshold, under three named protocols.

Protocols (each a pure function of per-image ground truth and detections):
    coco_ap50   COCO-style AP at IoU 0.5 as pycocotools' COCOeval computes it (101-point interpolated
                precision, at most 100 detections per image and class, area range "all"): what
                paper A reported as "mAP@0.5" (research notes §1.5).
    voc07       PASCAL VOC 2007 11-point interpolated AP (recall 0, 0.1, ..., 1).
    voc2010     PASCAL VOC 2010+ all-point AP: the area under the precision envelope.

Boxes are (K, 4) x0, y0, x1, y1 in pixels of the original image, continuous corners (torchvision's
convention: the VOC reader subtracts 1 from xmin and ymin, so the devkit's "+1" is already in the
box), IoU = intersection / union without any +1. Labels are class indices in [1, num_classes]
(0 is the background and never appears). Each protocol keeps its own matching rule: COCO matches
at IoU >= threshold to the best still-free object, VOC at IoU > threshold to the best-overlapping
object, a second hit on an already-matched object being a false positive.

`difficult` objects (VOC's flag) are handled by the `difficult` argument:
    "gt"      they are ordinary objects (paper A's code: parsed but unused).
    "ignore"  they are neither positives nor negatives. VOC protocols: a detection whose best
              object is difficult counts neither way (the devkit's rule). COCO: they become
              crowd regions (iscrowd=1, pycocotools' only ignore mechanism): a detection overlapping
              one by intersection / detection area >= threshold, and matching no ordinary object,
              counts neither way, and one region can absorb several detections.
A class with no positive object has AP NaN and is left out of the mean (pycocotools' -1).
Score ties are broken by image order, then by the detection's position within its image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

PROTOCOLS = ("coco_ap50", "voc07", "voc2010")
DIFFICULT_MODES = ("gt", "ignore")
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # pycocotools' recThrs
VOC07_RECALL_POINTS = np.arange(11) / 10  # exact tenths: 0.1 * 3 would miss a recall of exactly 0.3
COCO_MAX_DETS = 100  # pycocotools' last maxDets, the one its AP50 uses


def _array(value, dtype, columns: int | None, name: str) -> np.ndarray:
    """`value` as a new array of `dtype` with shape (N, columns), or (N,) when `columns` is None."""
    array = np.array(value, dtype=dtype)
    if array.size == 0:
        array = array.reshape((0, columns) if columns else (0,))
    if array.ndim != (2 if columns else 1) or (columns and array.shape[1] != columns):
        raise ValueError(f"{name} must have shape {f'(N, {columns})' if columns else '(N,)'}, got {array.shape}")
    return array


def _set_arrays(instance: object, what: str, layout: dict[str, tuple[type, int | None]]) -> None:
    """Replace the fields of a frozen dataclass by checked copies: field -> (dtype, columns), one length for all."""
    arrays = {name: _array(getattr(instance, name), dtype, columns, f"{what} {name}") for name, (dtype, columns) in layout.items()}
    if len({len(a) for a in arrays.values()}) > 1:
        raise ValueError(f"{what}: " + ", ".join(f"{len(a)} {name}" for name, a in arrays.items()) + "; expected one length")
    for name, array in arrays.items():
        object.__setattr__(instance, name, array)


@dataclass(frozen=True)
class GroundTruth:
    """The annotated objects of one image.

    Attributes:
        boxes: (K, 4) float64, x0, y0, x1, y1 in pixels of the original image.
        labels: (K,) int64 class indices in [1, num_classes].
        difficult: (K,) bool, VOC's difficult flag.
    """

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray

    def __post_init__(self) -> None:
        _set_arrays(self, "ground truth", {"boxes": (np.float64, 4), "labels": (np.int64, None), "difficult": (bool, None)})


@dataclass(frozen=True)
class Detections:
    """The detections of one image.

    Attributes:
        boxes: (D, 4) float64, x0, y0, x1, y1 in pixels of the original image.
        scores: (D,) float64 confidences, higher is surer; any range.
        labels: (D,) int64 class indices in [1, num_classes].
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        _set_arrays(self, "detections", {"boxes": (np.float64, 4), "scores": (np.float64, None), "labels": (np.int64, None)})


@dataclass(frozen=True)
class APResult:
    """AP per class and their mean under one protocol.

    Attributes:
        protocol: one of PROTOCOLS.
        per_class: num_classes floats in [0, 1], index c-1 for class c; NaN for a class without positives.
        mean: mean over the classes with positives; NaN when no class has any.
        positives: per class, the number of objects that count as positives.
        detections: per class, the number of detections evaluated (after the per-image cap for COCO).
    """

    protocol: str
    per_class: tuple[float, ...]
    mean: float
    positives: tuple[int, ...]
    detections: tuple[int, ...]


def class_indices(names: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """(K,) int64 indices in [1, len(classes)] of class `names` (0 is the background).

    Raises:
        ValueError: naming the first unknown class and listing `classes`.
    """
    index = {name: i + 1 for i, name in enumerate(classes)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; valid classes: {list(classes)}")
    return np.array([index[n] for n in names], dtype=np.int64)


def box_iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """Pairwise IoU of boxes `a` (D, 4) and `b` (G, 4), x0, y0, x1, y1; returns (D, G) float64.

    Where `crowd[g]` is true, column g holds intersection / area of the `a` box instead (COCO crowd).
    """
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None:
        union = np.where(crowd[None, :], area_a[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _check(truths: Sequence[GroundTruth], detections: Sequence[Detections], num_classes: int, difficult: str) -> None:
    if len(truths) != len(detections):
        raise ValueError(f"got ground truth for {len(truths)} images but detections for {len(detections)}")
    if difficult not in DIFFICULT_MODES:
        raise ValueError(f"difficult must be one of {DIFFICULT_MODES}, got {difficult!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for i, (truth, dets) in enumerate(zip(truths, detections)):
        for what, labels in (("ground-truth", truth.labels), ("detection", dets.labels)):
            bad = labels[(labels < 1) | (labels > num_classes)]
            if len(bad):
                raise ValueError(f"image {i}: {what} label {int(bad[0])} is outside [1, {num_classes}]")


def _coco_match(truth_boxes, crowd, det_boxes, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching in one image and class; returns (matched, ignored) per detection.

    Detections come sorted by score; objects with ordinary ones first. Each detection takes the
    free object of highest IoU >= threshold (ties: the later one), preferring ordinary objects;
    crowd objects stay free. A detection matched to a crowd object is ignored.
    """
    ious = box_iou(det_boxes, truth_boxes, crowd)
    taken = np.zeros(len(truth_boxes), dtype=bool)
    matched = np.zeros(len(det_boxes), dtype=bool)
    ignored = np.zeros(len(det_boxes), dtype=bool)
    for d in range(len(det_boxes)):
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for g in range(len(truth_boxes)):
            if taken[g] and not crowd[g]:
                continue
            if best > -1 and not crowd[best] and crowd[g]:
                break
            if ious[d, g] < best_iou:
                continue
            best, best_iou = g, ious[d, g]
        if best > -1:
            matched[d], ignored[d] = True, bool(crowd[best])
            taken[best] = True
    return matched, ignored


def _interpolated_ap(tp: np.ndarray, fp: np.ndarray, positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection, in score order (float64, precision eps-guarded)."""
    tp_sum, fp_sum = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    recall = tp_sum / positives
    precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
    return recall, precision


def coco_ap50(
    truths: Sequence[GroundTruth],
    detections: Sequence[Detections],
    num_classes: int,
    *,
    difficult: Literal["gt", "ignore"] = "gt",
    iou_threshold: float = 0.5,
    max_dets: int = COCO_MAX_DETS,
) -> APResult:
    """COCO-style AP at one IoU threshold, as pycocotools' COCOeval (bbox, area "all").

    Per class: in each image the `max_dets` highest-scoring detections are matched greedily
    (`_coco_match`); all images' detections are then sorted by score (stable), precision is made
    monotone from the right and read at the 101 recall points (0 where the recall is never reached).

    Args:
        truths: one GroundTruth per image.
        detections: one Detections per image, same order.
        num_classes: classes are 1..num_classes.
        difficult: "gt" (paper A) or "ignore" (difficult objects as crowd regions); see the module docstring.
        iou_threshold: minimum IoU of a match (inclusive). Paper: 0.5.
        max_dets: detections per image and class that are evaluated. pycocotools: 100.

    Returns:
        APResult with protocol "coco_ap50". Inputs are not modified.

    Raises:
        ValueError: on mismatched lengths, labels outside [1, num_classes] or an unknown `difficult`.
    """
    _check(truths, detections, num_classes, difficult)
    per_class, positives, counts = [], [], []
    for c in range(1, num_classes + 1):
        scores, matched, ignored, npos = [], [], [], 0
        for truth, dets in zip(truths, detections):
            t_mask = truth.labels == c
            crowd = truth.difficult[t_mask] if difficult == "ignore" else np.zeros(int(t_mask.sum()), dtype=bool)
            order_t = np.argsort(crowd, kind="mergesort")
            d_mask = dets.labels == c
            order_d = np.argsort(-dets.scores[d_mask], kind="mergesort")[:max_dets]
            npos += int((~crowd).sum())
            if not len(order_d):
                continue
            m, ig = _coco_match(truth.boxes[t_mask][order_t], crowd[order_t], dets.boxes[d_mask][order_d], iou_threshold)
            scores.append(dets.scores[d_mask][order_d])
            matched.append(m)
            ignored.append(ig)
        n_dets = int(sum(len(s) for s in scores))
        positives.append(npos)
        counts.append(n_dets)
        if npos == 0:
            per_class.append(float("nan"))
            continue
        if n_dets == 0:
            per_class.append(0.0)
            continue
        order = np.argsort(-np.concatenate(scores), kind="mergesort")
        m, ig = np.concatenate(matched)[order], np.concatenate(ignored)[order]
        recall, precision = _interpolated_ap(m & ~ig, ~m & ~ig, npos)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
        sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
        per_class.append(float(sampled.mean()))
    return _result("coco_ap50", per_class, positives, counts)


def voc_ap(
    truths: Sequence[GroundTruth],
    detections: Sequence[Detections],
    num_classes: int,
    *,
    protocol: Literal["voc07", "voc2010"] = "voc2010",
    difficult: Literal["gt", "ignore"] = "ignore",
    iou_threshold: float = 0.5,
) -> APResult:
    """PASCAL VOC AP (devkit `VOCevaldet` rules): 11-point (VOC2007) or all-point (VOC2010+).

    Per class, all detections of all images sorted by score (stable); each one is a true positive
    when its best-overlapping object of that class (IoU > threshold) is not yet matched, a false
    positive otherwise (no overlap, or a duplicate); with difficult="ignore" a detection whose best
    object is difficult counts neither way. Precision is eps-guarded.
    voc07: mean over recall r in {0, 0.1, ..., 1} of max precision at recall >= r (0 if none).
    voc2010: sum over recall steps of (step width) x (max precision at recall >= that step).

    Args:
        truths: one GroundTruth per image.
        detections: one Detections per image, same order.
        num_classes: classes are 1..num_classes.
        protocol: "voc07" or "voc2010".
        difficult: "ignore" (the devkit's rule, default) or "gt" (paper A's code).
        iou_threshold: IoU a match must exceed (exclusive, as the devkit). Standard: 0.5.

    Returns:
        APResult with the given protocol. Inputs are not modified.

    Raises:
        ValueError: on mismatched lengths, labels outside [1, num_classes], an unknown protocol or `difficult`.
    """
    if protocol not in ("voc07", "voc2010"):
        raise ValueError(f"protocol must be 'voc07' or 'voc2010', got {protocol!r}")
    _check(truths, detections, num_classes, difficult)
    per_class, positives, counts = [], [], []
    for c in range(1, num_classes + 1):
        hard = [t.difficult[t.labels == c] if difficult == "ignore" else np.zeros(int((t.labels == c).sum()), bool) for t in truths]
        npos = int(sum((~h).sum() for h in hard))
        image_of, scores, boxes = [], [], []
        for i, dets in enumerate(detections):
            d_mask = dets.labels == c
            image_of.extend([i] * int(d_mask.sum()))
            scores.append(dets.scores[d_mask])
            boxes.append(dets.boxes[d_mask])
        scores_all = np.concatenate(scores)
        positives.append(npos)
        counts.append(len(scores_all))
        if npos == 0:
            per_class.append(float("nan"))
            continue
        order = np.argsort(-scores_all, kind="mergesort")
        boxes_all, image_of = np.concatenate(boxes)[order], np.asarray(image_of, dtype=np.int64)[order]
        taken = [np.zeros(len(h), dtype=bool) for h in hard]
        tp, fp = np.zeros(len(order), dtype=bool), np.zeros(len(order), dtype=bool)
        for k in range(len(order)):
            i = image_of[k]
            objects = truths[i].boxes[truths[i].labels == c]
            ious = box_iou(boxes_all[k : k + 1], objects)[0]
            best = int(np.argmax(ious)) if len(ious) else -1
            if best < 0 or ious[best] <= iou_threshold:
                fp[k] = True
            elif hard[i][best]:
                continue
            elif taken[i][best]:
                fp[k] = True
            else:
                tp[k] = taken[i][best] = True
        recall, precision = _interpolated_ap(tp, fp, npos)
        per_class.append(_voc07(recall, precision) if protocol == "voc07" else _voc2010(recall, precision))
    return _result(protocol, per_class, positives, counts)


def _voc07(recall: np.ndarray, precision: np.ndarray) -> float:
    points = [precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in VOC07_RECALL_POINTS]
    return float(np.mean(points))


def _voc2010(recall: np.ndarray, precision: np.ndarray) -> float:
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _result(protocol: str, per_class: list[float], positives: list[int], counts: list[int]) -> APResult:
    values = np.asarray(per_class, dtype=np.float64)
    mean = float(values[~np.isnan(values)].mean()) if (~np.isnan(values)).any() else float("nan")
    return APResult(protocol, tuple(per_class), mean, tuple(positives), tuple(counts))


def average_precision(
    truths: Sequence[GroundTruth],
    detections: Sequence[Detections],
    num_classes: int,
    protocol: str,
    *,
    difficult: Literal["gt", "ignore"],
    iou_threshold: float = 0.5,
) -> APResult:
    """AP under the named `protocol` (one of PROTOCOLS); see `coco_ap50` and `voc_ap`."""
    if protocol == "coco_ap50":
        return coco_ap50(truths, detections, num_classes, difficult=difficult, iou_threshold=iou_threshold)
    if protocol in ("voc07", "voc2010"):
        return voc_ap(truths, detections, num_classes, protocol=protocol, difficult=difficult, iou_threshold=iou_threshold)
    raise ValueError(f"unknown AP protocol {protocol!r}; valid: {list(PROTOCOLS)}")
