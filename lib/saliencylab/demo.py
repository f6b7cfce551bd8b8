"""Demo data made offline: real photographs in PASCAL VOC layout and clearly synthetic attention masks.

The photographs are the sample images bundled with scikit-image (public domain or CC0, see
`skimage/data/README.txt`); their boxes were drawn by hand for this project. The attention masks
are NOT human data: each is a Gaussian blob over the boxes of one class, written in the
benchmark's `human_attention_mask/<class>/<id>.jpg` layout next to a `SYNTHETIC.txt` marker that
the ingest stage turns into a manifest warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from saliencylab.datasets.masks import MASK_DIR, SYNTHETIC_MARKER


@dataclass(frozen=True)
class DemoImage:
    """One demo photograph: its id, the scikit-image file and hand-drawn boxes (class, x0, y0, x1, y1, difficult)."""

    voc_id: str
    skimage_file: str
    objects: tuple[tuple[str, int, int, int, int, bool], ...]


DEMO_IMAGES: tuple[DemoImage, ...] = (
    DemoImage("demo_000001", "astronaut.png", (("person", 15, 20, 370, 511, False),)),
    DemoImage("demo_000002", "chelsea.png", (("cat", 40, 0, 420, 299, False),)),
    DemoImage(
        "demo_000003",
        "motorcycle_left.png",
        (("motorbike", 85, 45, 685, 455, False), ("chair", 30, 95, 165, 290, True)),
    ),
    DemoImage("demo_000004", "camera.png", (("person", 0, 55, 330, 511, False),)),  # grayscale photograph
    DemoImage("demo_000005", "coffee.png", ()),  # no VOC class: an image without objects
)
SPLITS = {"train": ("demo_000001", "demo_000003", "demo_000005"), "val": ("demo_000002", "demo_000004")}


def _annotation_xml(image: DemoImage, width: int, height: int, depth: int) -> str:
    objects = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1, difficult in image.objects
    )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{image.voc_id}.jpg</filename>"
        f"<source><database>saliencylab demo ({image.skimage_file} from scikit-image)</database></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>{depth}</depth></size>"
        f"<segmented>0</segmented>{objects}</annotation>"
    )


def synthetic_attention(height: int, width: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A uint8 (H, W) map in [0, 255]: the max of Gaussians centred on `boxes`, sigma = a quarter of each side."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.zeros((height, width))
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        sx, sy = max((x1 - x0) / 4, 1.0), max((y1 - y0) / 4, 1.0)
        out = np.maximum(out, np.exp(-0.5 * (((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2)))
    return np.rint(255 * out).astype(np.uint8)


def write_demo_dataset(root: Path) -> tuple[Path, Path]:
    """Write the demo VOC folder and the synthetic mask folder under `root`; return (voc_root, masks_root)."""
    import skimage.data

    source = Path(skimage.data.__file__).parent
    voc, masks = root / "VOC2012", root / "synthetic_attention_masks"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (masks / MASK_DIR).mkdir(parents=True, exist_ok=True)
    (masks / SYNTHETIC_MARKER).write_text(
        "These attention masks are synthetic Gaussian blobs over hand-drawn boxes, made by saliencylab's demo.\n"
        "They are not human data and must never be reported as such.\n"
    )
    for image in DEMO_IMAGES:
        with Image.open(source / image.skimage_file) as photo:
            depth = 3 if photo.mode == "RGB" else 1
            photo.save(voc / "JPEGImages" / f"{image.voc_id}.jpg", quality=92)
            width, height = photo.size
        (voc / "Annotations" / f"{image.voc_id}.xml").write_text(_annotation_xml(image, width, height, depth))
        by_class: dict[str, list] = {}
        for name, x0, y0, x1, y1, _ in image.objects:
            by_class.setdefault(name, []).append((x0, y0, x1, y1))
        for name, boxes in by_class.items():
            (masks / MASK_DIR / name).mkdir(exist_ok=True)
            Image.fromarray(synthetic_attention(height, width, boxes)).save(masks / MASK_DIR / name / f"{image.voc_id}.jpg")
    for split, ids in {**SPLITS, "trainval": tuple(sorted(i for ids in SPLITS.values() for i in ids))}.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc, masks


TRAINING_DEMO_PHOTOS = (("astronaut.png", "person"), ("chelsea.png", "cat"), ("motorcycle_left.png", "motorbike"), ("coffee.png", "diningtable"))


def write_training_demo_dataset(root: Path, count: int = 6, masked: int = 2, side: int = 64) -> tuple[Path, Path]:
    """A tiny VOC set for the augmentation study: `count` square crops of the sample photographs.

    Each image `train_<i>` is a `side` x `side` JPEG crop with one object box (the centre half,
    class by photograph); the first `masked` ids get a synthetic attention mask (so they are the
    test set, `--split masked`) and the others none (the training set, `--split unmasked`).

    Returns:
        (voc_root, masks_root) under `root`; masks_root carries the SYNTHETIC marker.
    """
    import skimage.data

    if not 0 < masked < count:
        raise ValueError(f"masked={masked} must leave both a test and a training id among count={count}")
    source = Path(skimage.data.__file__).parent
    voc, masks = root / "VOC2012", root / "synthetic_attention_masks"
    for sub in ("JPEGImages", "Annotations"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (masks / MASK_DIR).mkdir(parents=True, exist_ok=True)
    (masks / SYNTHETIC_MARKER).write_text("Synthetic Gaussian attention masks made by saliencylab's training demo; not human data.\n")
    for i in range(count):
        photo_file, name = TRAINING_DEMO_PHOTOS[i % len(TRAINING_DEMO_PHOTOS)]
        with Image.open(source / photo_file) as photo:
            rgb = np.asarray(photo.convert("RGB"))
        top, left = (i * 11) % (rgb.shape[0] // 4), (i * 17) % (rgb.shape[1] // 4)
        crop = min(rgb.shape[0] - top, rgb.shape[1] - left)
        image = DemoImage(f"train_{i:04d}", photo_file, ((name, side // 4 + i % 3, side // 4, 3 * side // 4, 3 * side // 4 - i % 3, False),))
        Image.fromarray(rgb[top : top + crop, left : left + crop]).resize((side, side)).save(voc / "JPEGImages" / f"{image.voc_id}.jpg", quality=92)
        (voc / "Annotations" / f"{image.voc_id}.xml").write_text(_annotation_xml(image, side, side, 3))
        if i < masked:
            (masks / MASK_DIR / name).mkdir(exist_ok=True)
            boxes = [(x0, y0, x1, y1) for _, x0, y0, x1, y1, _ in image.objects]
            Image.fromarray(synthetic_attention(side, side, boxes)).save(masks / MASK_DIR / name / f"{image.voc_id}.jpg")
    return voc, masks
