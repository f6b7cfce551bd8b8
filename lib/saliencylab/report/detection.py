"""A bootstrap interval of an evaluate artifact's mAP: its per-image detections and truths resampled by image.

`evaluate` stores one sample per image (detections.json, truth.json) and its mAP as a point value;
the report resamples the images with replacement and recomputes COCO AP50 with the artifact's own
settings (difficult handling, IoU threshold), so the interval describes the same protocol.
"""

from __future__ import annotations

import math

import numpy as np

from saliencylab.datasets.voc import VOC_CLASSES
from saliencylab.detection import Detections, GroundTruth, average_precision, class_indices
from saliencylab.report.run import Node
from saliencylab.seeding import numpy_generator

PROTOCOL = "coco_ap50"  # the paper's "mAP@0.5"
CONFIDENCE = 0.95


def image_records(node: Node) -> tuple[list[GroundTruth], list[Detections]]:
    """Truths and detections of every image of an evaluate node, in shard order."""
    truths, found = [], []
    for record in node.artifact.manifest.shards:
        for sample in node.artifact.samples(record.name):
            t, d = sample["truth.json"], sample["detections.json"]
            truths.append(GroundTruth(t["boxes"], class_indices(t["labels"], VOC_CLASSES), t["difficult"]))
            found.append(Detections(d["boxes"], d["scores"], class_indices(d["labels"], VOC_CLASSES)))
    return truths, found


def map_interval(node: Node, n_resamples: int, seed: int) -> tuple[float, float] | None:
    """Percentile-bootstrap 95% interval of an evaluate node's COCO AP50 over its images.

    Resamples are drawn from `numpy_generator(seed, "report", "map-bootstrap", node.path)`; a resample
    whose mAP is undefined (no positives drawn) is left out. Returns None when there is nothing to
    resample (no images, n_resamples 0) or no resample has a defined mAP.
    """
    truths, found = image_records(node)
    if not truths or n_resamples < 1:
        return None
    rng = numpy_generator(seed, "report", "map-bootstrap", node.path)
    difficult = node.params.get("coco_difficult", "gt")
    threshold = node.params.get("iou_threshold", 0.5)
    means = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(truths), size=len(truths))
        result = average_precision([truths[i] for i in pick], [found[i] for i in pick], len(VOC_CLASSES), PROTOCOL,
                                   difficult=difficult, iou_threshold=threshold)  # fmt: skip
        if math.isfinite(result.mean):
            means.append(result.mean)
    if not means:
        return None
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(np.array(means), [tail, 1 - tail])
    return float(low), float(high)
