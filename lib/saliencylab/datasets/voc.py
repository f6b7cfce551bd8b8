"""PASCAL VOC (VOCdevkit layout): find the root, list image ids, parse annotation XML.

Boxes are (x0, y0, x1, y1) in pixels of the original image, converted from VOC's 1-based
inclusive corners by subtracting 1 from x0 and y0 (torchvision's convention). Labels are VOC class
names; `difficult` is kept per box so evaluation can decide what to do with it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
ROOT_CANDIDATES = ("", "VOC2012", "VOCdevkit/VOC2012")


@dataclass(frozen=True)
class Annotation:
    """The objects of one image: boxes (K, 4) x0, y0, x1, y1 in original pixels, labels and difficult flags."""

    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]
    difficult: tuple[bool, ...]


def find_root(keys: list[str]) -> str:
    """The prefix under which `JPEGImages/` lives, given every key of the dataset folder.

    Raises ValueError when no candidate (`.`, `VOC2012`, `VOCdevkit/VOC2012`) holds JPEGImages.
    """
    for prefix in ROOT_CANDIDATES:
        marker = f"{prefix}/JPEGImages/" if prefix else "JPEGImages/"
        if any(k.startswith(marker) for k in keys):
            return prefix
    raise ValueError("no JPEGImages/ folder found (looked in ., VOC2012/ and VOCdevkit/VOC2012/)")


def parse_annotation(data: bytes, source: str) -> Annotation:
    """Parse one VOC annotation XML, boxes as written (see `clip_annotation`).

    Raises ValueError naming `source` on malformed content: no size, a missing or non-numeric
    coordinate, an unknown class.
    """
    try:
        root = ET.fromstring(data)
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
        boxes, labels, difficult = [], [], []
        for obj in root.iter("object"):
            name = obj.findtext("name", "").strip()
            if name not in VOC_CLASSES:
                raise ValueError(f"unknown class {name!r}")
            bb = obj.find("bndbox")
            x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((x0 - 1, y0 - 1, x1, y1))
            labels.append(name)
            difficult.append(obj.findtext("difficult", "0").strip() == "1")
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{source} is not a valid VOC annotation: {e}") from e
    return Annotation(width, height, tuple(boxes), tuple(labels), tuple(difficult))


def clip_annotation(annotation: Annotation) -> tuple[Annotation, int, int]:
    """Clip every box to the image, [0, width] × [0, height], and drop the boxes left without area.

    A box is degenerate when x1 <= x0 or y1 <= y0 after clipping, or a coordinate is NaN: an
    inverted or zero-size box in the XML, or one wholly outside the image. Labels and difficult
    flags of dropped boxes go with them. The input is not modified.

    Returns:
        (the clipped annotation, how many kept boxes were changed by clipping, how many were dropped)
    """
    width, height = float(annotation.width), float(annotation.height)
    kept: list[tuple[tuple[float, float, float, float], str, bool]] = []
    clipped = 0
    for box, label, difficult in zip(annotation.boxes, annotation.labels, annotation.difficult):
        x0, y0, x1, y1 = box
        inside = (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height))
        if not (inside[2] > inside[0] and inside[3] > inside[1]):
            continue
        clipped += inside != box
        kept.append((inside, label, difficult))
    clipped_annotation = Annotation(
        annotation.width,
        annotation.height,
        tuple(b for b, _, _ in kept),
        tuple(label for _, label, _ in kept),
        tuple(d for _, _, d in kept),
    )
    return clipped_annotation, clipped, len(annotation.boxes) - len(kept)


def parse_split(data: bytes) -> list[str]:
    """Image ids of an ImageSets/Main/<split>.txt file (first column; class files have a second)."""
    return [line.split()[0] for line in data.decode().splitlines() if line.strip()]
