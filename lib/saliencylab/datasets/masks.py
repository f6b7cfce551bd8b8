"""Human attention masks of the ML-Interpretability-Evaluation-Benchmark (Mohseni et al., arXiv 1801.05075).

Layout: `human_attention_mask/<class>/<voc_id>.jpg`, grayscale, brighter = more attention. One VOC
id can have masks under two classes (nine ids do in the published set), so a policy merges them:
`max` (pixelwise maximum: attention to either object, our default), `mean`, or `last` (the mask of
the alphabetically last class wins, which is what copying the folders flat did in the paper's code).
A folder that holds a file named `SYNTHETIC.txt` contains generated stand-ins, never human data.
"""

from __future__ import annotations

import numpy as np

from saliencylab.datasets.names import sample_id

MASK_DIR = "human_attention_mask"
SYNTHETIC_MARKER = "SYNTHETIC.txt"
MASK_SUFFIXES = (".jpg", ".jpeg", ".png")
MASK_LAYOUT = f"{MASK_DIR}/<class>/<id>{{{','.join(MASK_SUFFIXES)}}}"  # for error messages
DUPLICATE_POLICIES = ("max", "mean", "last")


def index_masks(keys: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Map each sample id to its (class, key) masks, sorted by class, from every key of the mask folder.

    Keys outside `human_attention_mask/<class>/<file>` are ignored. The id is the file name without
    its extension made safe by `saliencylab.datasets.names.sample_id`, as for the images.
    """
    index: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        parts = key.split("/")
        if MASK_DIR not in parts:
            continue
        rest = parts[parts.index(MASK_DIR) + 1 :]
        if len(rest) != 2 or not rest[1].lower().endswith(MASK_SUFFIXES):
            continue
        voc_id = sample_id(rest[1].rsplit(".", 1)[0])
        index.setdefault(voc_id, []).append((rest[0], key))
    return {k: sorted(v) for k, v in sorted(index.items())}


def merge_masks(masks: list[np.ndarray], policy: str) -> np.ndarray:
    """Merge same-size uint8 (H, W) masks of one image by `policy` (max, mean or last); returns uint8 (H, W)."""
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicate-mask policy {policy!r}; valid: {list(DUPLICATE_POLICIES)}")
    if not masks:
        raise ValueError("merge_masks needs at least one mask")
    if len({m.shape for m in masks}) != 1:
        raise ValueError(f"masks of one image differ in size: {[m.shape for m in masks]}")
    if policy == "last":
        return masks[-1]
    stack = np.stack(masks).astype(np.float64)
    merged = stack.max(axis=0) if policy == "max" else stack.mean(axis=0)
    return np.rint(merged).astype(np.uint8)


def check_mask_aspect(mask: tuple[int, int], image: tuple[int, int], tolerance: float) -> None:
    """Raise ValueError unless a mask of size `mask` = (height, width) fits an image of size `image`.

    The two aspect ratios (width / height) may differ by at most `tolerance`, relative to the
    image's: a mask resized to its image's size would otherwise be stretched.
    """
    (mask_h, mask_w), (image_h, image_w) = mask, image
    mismatch = abs((mask_w / mask_h) / (image_w / image_h) - 1.0)
    if mismatch > tolerance:
        raise ValueError(
            f"the mask is {mask_h}x{mask_w} (height x width) but its image is {image_h}x{image_w}: their aspect "
            f"ratios differ by {mismatch:.1%}, more than mask_aspect_tolerance={tolerance}"
        )
