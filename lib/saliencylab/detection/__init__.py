"""Object-detection evaluation: average precision under named protocols, and Faster R-CNN inference.

Public API:
    GroundTruth, Detections                    one image's objects / detections (numpy, original pixels)
    coco_ap50(truths, dets, num_classes)       pycocotools' AP at IoU 0.5 (paper A's "mAP@0.5")
    voc_ap(truths, dets, num_classes, protocol="voc07" | "voc2010")
    average_precision(..., protocol)           any of PROTOCOLS by name
    build_faster_rcnn(state_dict, num_classes, min_size=..., ...) -> model
    detect(model, images) -> list[Detections]; rescale(dets, from_size, to_size)
Conventions (boxes, difficult objects, ties): the docstring of `saliencylab.detection.ap`.
"""

from saliencylab.detection.ap import (
    DIFFICULT_MODES,
    PROTOCOLS,
    APResult,
    Detections,
    GroundTruth,
    average_precision,
    box_iou,
    class_indices,
    coco_ap50,
    voc_ap,
)
from saliencylab.lazyexports import lazy_exports

# the model imports torch: its names are imported on first use, so `--help` stays light
__getattr__ = lazy_exports(__name__, {"build_faster_rcnn": "model", "detect": "model", "rescale": "model"})

__all__ = [
    "DIFFICULT_MODES",
    "PROTOCOLS",
    "APResult",
    "Detections",
    "GroundTruth",
    "average_precision",
    "box_iou",
    "build_faster_rcnn",
    "class_indices",
    "coco_ap50",
    "detect",
    "rescale",
    "voc_ap",
]
