"""A tiny synthetic SALICON + COCO stand-in, written at test time as real JPEG, .mat and JSON files.

Three 96x128 images with drawn objects; COCO instances with polygon and RLE masks; per-subject
fixations in SALICON's .mat layout (`gaze` struct array, [x, y] 1-based). Image 1 has its fixations
on the dog, image 2 on the cat and the dog, image 3 on neither object.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.io import savemat

HEIGHT, WIDTH = 96, 128
CATEGORIES = [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 17, "name": "cat", "supercategory": "animal"},
              {"id": 10, "name": "traffic light", "supercategory": "outdoor"}]  # fmt: skip
DOG = (10, 10, 60, 50)  # x0, y0, x1, y1 of the dog rectangle
CAT = (70, 40, 120, 90)


def file_name(image_id: int, split: str = "train") -> str:
    return f"COCO_{split}2014_{image_id:012d}.jpg"


def _polygon(box: tuple[int, int, int, int]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _rle(box: tuple[int, int, int, int]) -> dict:
    from pycocotools import mask as mask_utils

    m = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    m[box[1] : box[3], box[0] : box[2]] = 1
    rle = mask_utils.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def gaze_struct(subjects: list[np.ndarray]) -> np.ndarray:
    """A SALICON `gaze` struct array: one record per subject with location, timestamp, fixations."""
    gaze = np.empty((len(subjects), 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    for i, points in enumerate(subjects):
        gaze[i, 0] = (points.astype(np.float64), np.arange(len(points), dtype=np.float64)[:, None], points.astype(np.float64))
    return gaze


def _points(rng: np.random.Generator, box: tuple[int, int, int, int], n: int) -> np.ndarray:
    """n fixations [x, y], 1-based, inside box."""
    x0, y0, x1, y1 = box
    return np.stack([rng.integers(x0 + 2, x1, n), rng.integers(y0 + 2, y1, n)], axis=1)


def write_salicon_coco(root: Path, split: str = "train") -> tuple[Path, Path]:
    """Write the stand-in under `root`; returns (salicon folder, coco folder)."""
    rng = np.random.default_rng(0)
    salicon, coco = root / "salicon", root / "coco"
    (salicon / "images" / split).mkdir(parents=True)
    (salicon / "fixations" / split).mkdir(parents=True)
    (coco / "annotations").mkdir(parents=True)
    images, annotations = [], []
    background = (66, 2, 126, 36)  # right of the dog, above the cat
    gazes = {
        1: [_points(rng, DOG, 6), _points(rng, DOG, 5)],
        2: [np.concatenate([_points(rng, CAT, 4), _points(rng, DOG, 2)]), _points(rng, CAT, 3)],
        3: [_points(rng, background, 5), np.array([[0, 5], [WIDTH + 1, 5]])],  # 2 off-image points
    }
    for image_id, subjects in gazes.items():
        picture = Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 60))
        draw = ImageDraw.Draw(picture)
        draw.rectangle(DOG, fill=(150, 100, 50))
        draw.ellipse(CAT, fill=(200, 200, 200))
        picture.save(salicon / "images" / split / file_name(image_id, split), quality=90)
        savemat(
            salicon / "fixations" / split / file_name(image_id, split).replace(".jpg", ".mat"),
            {"image": file_name(image_id, split)[:-4], "resolution": np.array([[HEIGHT, WIDTH]]), "gaze": gaze_struct(subjects)},
        )
        images.append({"id": image_id, "file_name": file_name(image_id, split), "height": HEIGHT, "width": WIDTH})
        annotations.append({"id": 100 + image_id, "image_id": image_id, "category_id": 18, "segmentation": _polygon(DOG),
                            "area": 2000.0, "bbox": [10, 10, 50, 40], "iscrowd": 0})  # fmt: skip
        annotations.append({"id": 200 + image_id, "image_id": image_id, "category_id": 17, "segmentation": _rle(CAT),
                            "area": 2500.0, "bbox": [70, 40, 50, 50], "iscrowd": 0})  # fmt: skip
    document = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (coco / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(document))
    return salicon, coco
