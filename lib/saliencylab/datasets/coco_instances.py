"""COCO instance annotations (pycocotools): the object masks and category names of one image.

`instances_{split}2014.json` is read from bytes (so it may come from s3://) into a pycocotools
`COCO` index; masks are decoded by pycocotools' `annToMask` (polygons and RLE), never by our code.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InstanceMask:
    """One object: its annotation id, category id and name, crowd flag and (H, W) uint8 {0, 1} mask."""

    annotation_id: int
    category_id: int
    category: str
    iscrowd: bool
    mask: np.ndarray


def load_instances(data: bytes, source: str):
    """A pycocotools `COCO` index of an instances JSON file's bytes.

    Raises:
        ValueError: Naming `source`, if the bytes are not a COCO instances JSON object.
    """
    from pycocotools.coco import COCO

    try:
        dataset = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{source} is not JSON: {e}") from e
    if not isinstance(dataset, dict) or not {"images", "annotations", "categories"} <= set(dataset):
        raise ValueError(f"{source} is not a COCO instances file (needs images, annotations and categories)")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def image_ids_by_file(coco) -> dict[str, int]:
    """COCO image file name (e.g. COCO_train2014_000000000009.jpg) -> image id."""
    return {image["file_name"]: image_id for image_id, image in coco.imgs.items()}


def instance_masks(coco, image_id: int, include_crowd: bool) -> list[InstanceMask]:
    """The decoded masks of the objects of `image_id`, in annotation id order.

    Raises:
        ValueError: If an annotation has no segmentation, or its mask is not the image's size.
    """
    image = coco.imgs[image_id]
    size = (int(image["height"]), int(image["width"]))
    masks = []
    for annotation in sorted(coco.imgToAnns.get(image_id, []), key=lambda a: a["id"]):
        crowd = bool(annotation.get("iscrowd", 0))
        if crowd and not include_crowd:
            continue
        if not annotation.get("segmentation"):
            raise ValueError(f"annotation {annotation['id']} of image {image['file_name']} has no segmentation")
        if annotation.get("category_id") not in coco.cats:
            raise ValueError(f"annotation {annotation['id']} of image {image['file_name']} has an unknown category")
        mask = coco.annToMask(annotation)
        if mask.shape != size:
            raise ValueError(f"annotation {annotation['id']} decodes to {mask.shape}, image {image['file_name']} is {size}")
        category = coco.cats[annotation["category_id"]]["name"]
        masks.append(InstanceMask(annotation["id"], annotation["category_id"], category, crowd, mask))
    return masks
