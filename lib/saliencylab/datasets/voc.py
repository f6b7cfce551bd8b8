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
    """Parse one VOC annotation XML; raises ValueError naming `source` on malformed content."""
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
            if not (x1 > x0 - 1 and y1 > y0 - 1):
                raise ValueError(f"box {x0, y0, x1, y1} has no area")
            boxes.append((x0 - 1, y0 - 1, x1, y1))
            labels.append(name)
            difficult.append(obj.findtext("difficult", "0").strip() == "1")
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"{source} is not a valid VOC annotation: {e}") from e
    return Annotation(width, height, tuple(boxes), tuple(labels), tuple(difficult))


def parse_split(data: bytes) -> list[str]:
    """Image ids of an ImageSets/Main/<split>.txt file (first column; class files have a second)."""
    return [line.split()[0] for line in data.decode().splitlines() if line.strip()]
