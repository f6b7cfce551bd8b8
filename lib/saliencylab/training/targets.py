"""Detection targets for training: a training-set sample's meta.json -> boxes and VOC label ids.

Boxes are (K, 4) float32 x0, y0, x1, y1 in pixels of the image the model sees (x is the column,
y the row), labels (K,) int64 in 1..20 with 0 reserved for the background, so a VOC detector
has NUM_CLASSES = 21 outputs. (The original code used 22, counting the background twice and
leaving one logit dead: research notes §1.5.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from saliencylab.datasets.voc import VOC_CLASSES

BACKGROUND = 0
VOC_LABEL_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(VOC_CLASSES)}  # aeroplane=1 ... tvmonitor=20
NUM_CLASSES = len(VOC_CLASSES) + 1  # 20 VOC classes + background

DifficultPolicy = Literal["keep", "drop"]
OutsidePolicy = Literal["clip", "drop"]


@dataclass(frozen=True)
class BoxCounts:
    """What cleaning did to one image's boxes (sums over images are reported in the manifest)."""

    given: int = 0  # boxes in meta.json
    clipped: int = 0  # boxes reaching outside the image, clipped to it (outside="clip")
    outside_dropped: int = 0  # boxes reaching outside the image, dropped (outside="drop")
    degenerate_dropped: int = 0  # zero width or height (after clipping): always dropped
    difficult_dropped: int = 0  # difficult boxes removed (difficult="drop")
    kept: int = 0

    def __add__(self, other: "BoxCounts") -> "BoxCounts":
        return BoxCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.given, self.clipped, self.outside_dropped, self.degenerate_dropped, self.difficult_dropped, self.kept)


@dataclass(frozen=True)
class Target:
    """The ground truth of one training image, in torchvision's detection format (`as_dict`)."""

    boxes: torch.Tensor  # (K, 4) float32 x0, y0, x1, y1 in pixels of the image as stored
    labels: torch.Tensor  # (K,) int64 in 1..20
    counts: BoxCounts

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"boxes": self.boxes, "labels": self.labels}


def label_ids(names: Sequence[str]) -> torch.Tensor:
    """VOC class names -> (K,) int64 ids in 1..20.

    Raises:
        ValueError: naming the unknown class and listing the 20 valid names.
    """
    unknown = sorted({n for n in names if n not in VOC_LABEL_IDS})
    if unknown:
        raise ValueError(f"class name(s) {unknown} are not VOC classes; valid: {list(VOC_CLASSES)}")
    return torch.tensor([VOC_LABEL_IDS[n] for n in names], dtype=torch.int64)


def scale_boxes(boxes: torch.Tensor, original_size: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """Boxes (K, 4) in pixels of an image of `original_size` (H, W) -> pixels of `size` (H, W); new tensor."""
    sy, sx = size[0] / original_size[0], size[1] / original_size[1]
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype)


def clean_boxes(
    boxes: torch.Tensor, size: Sequence[int], outside: OutsidePolicy
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Clip (or flag) boxes reaching outside an image of `size` (H, W) and flag degenerate ones.

    Args:
        boxes: (K, 4) float32 x0, y0, x1, y1 in pixels; not modified.
        size: (H, W) of the image; valid coordinates are x in [0, W], y in [0, H].
        outside: "clip" clips such boxes to the image; "drop" removes them.

    Returns:
        (boxes, keep, outside_count, degenerate_count): boxes (K, 4) clipped when outside="clip",
        keep (K,) bool of the boxes to train on, the number of boxes reaching outside the image,
        and the number of degenerate boxes (x1 <= x0 or y1 <= y0, after clipping) among those not
        already dropped as outside.
    """
    height, width = size
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    is_outside = ((boxes < 0) | (boxes > limits)).any(dim=1)
    clipped = torch.minimum(boxes.clamp(min=0), limits)
    kept_boxes = clipped if outside == "clip" else boxes
    keep = ~is_outside if outside == "drop" else torch.ones(len(boxes), dtype=torch.bool)
    degenerate = (kept_boxes[:, 2] <= kept_boxes[:, 0]) | (kept_boxes[:, 3] <= kept_boxes[:, 1])
    degenerate_count = int((degenerate & keep).sum())
    return kept_boxes, keep & ~degenerate, int(is_outside.sum()), degenerate_count


def build_target(meta: dict[str, Any], size: Sequence[int], *, difficult: DifficultPolicy, outside: OutsidePolicy) -> Target:
    """The training target of one sample from its meta.json (the training-set format).

    Args:
        meta: with `boxes` (K lists x0, y0, x1, y1 in pixels of `original_size`), `labels` (K VOC
            class names), optional `difficult` (K bools, default all False) and optional
            `original_size` (H, W; default `size`).
        size: (H, W) of image.png; boxes are rescaled from `original_size` to it.
        difficult: "keep" trains on difficult objects as ordinary ground truth (the paper's code);
            "drop" removes them (torchvision's detector has no "ignore" regions).
        outside: what to do with boxes reaching outside the image (see `clean_boxes`).

    Raises:
        ValueError: for an unknown class name (listing the valid ones), inconsistent lengths or
            non-finite coordinates.
    """
    raw_boxes = meta.get("boxes", [])
    labels = list(meta.get("labels", []))
    flags = [bool(d) for d in meta.get("difficult", [False] * len(labels))]
    if not len(raw_boxes) == len(labels) == len(flags):
        raise ValueError(f"meta.json has {len(raw_boxes)} boxes, {len(labels)} labels and {len(flags)} difficult flags")
    ids = label_ids(labels)
    boxes = torch.tensor(raw_boxes, dtype=torch.float32).reshape(-1, 4)
    if not torch.isfinite(boxes).all():
        raise ValueError(f"meta.json has non-finite box coordinates: {raw_boxes}")
    boxes = scale_boxes(boxes, meta.get("original_size", size), size)
    boxes, keep, outside_count, degenerate = clean_boxes(boxes, size, outside)
    is_difficult = torch.tensor(flags, dtype=torch.bool)
    difficult_dropped = int((keep & is_difficult).sum()) if difficult == "drop" else 0
    if difficult == "drop":
        keep = keep & ~is_difficult
    counts = BoxCounts(
        given=len(labels),
        clipped=outside_count if outside == "clip" else 0,
        outside_dropped=outside_count if outside == "drop" else 0,
        degenerate_dropped=degenerate,
        difficult_dropped=difficult_dropped,
        kept=int(keep.sum()),
    )
    return Target(boxes[keep].contiguous(), ids[keep], counts)
