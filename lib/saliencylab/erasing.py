"""Selective erasing (paper A §1.4 of the research notes): which images to erase, and the erase itself.

An image is selected when the score of its CAM against a reference map (DeepGaze, or a human
attention mask) passes a threshold: the paper's IoU of the top-10 % regions < 0.1, or the blog
draft's MAE < 0.1. Scores come from the project's metric suite (`saliencylab.metrics.compare_maps`,
the same normalisation as the `compare` stage). The erase mask is the set of pixels strictly above
the CAM's own 97.5th percentile (NumPy's linear percentile, as the original code): about 2.5 % of
the map. It is computed on the map grid (512² in the study), mapped to the image's native size by
nearest neighbour with pixel centres aligned, and those pixels get a fill value; nothing else of
the image changes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import torch

from saliencylab.metrics import compare_maps

CRITERIA = ("iou", "mae", "human-iou", "human-mae")  # the score is IoU or MAE against DeepGaze or the human mask
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,  # the report (paper A): IoU < 0.1
    "<=": operator.le,  # the original code (Selective_Erasing.ipynb): IoU <= 0.1
    ">": operator.gt,
    ">=": operator.ge,
}
ERASE_PERCENTILE = 97.5  # paper A: pixels strictly above the CAM's 97.5th percentile are erased
IMAGENET_MEAN_255 = (124, 116, 104)  # round(255 × (0.485, 0.456, 0.406)), torchvision's ImageNet mean
FILLS = {"zero": (0, 0, 0), "imagenet-mean": IMAGENET_MEAN_255}  # paper A fills with 0


def criterion_scores(cams: torch.Tensor, references: torch.Tensor, criterion: str, fraction: float = 0.1, iou_mode: str = "paper") -> dict[str, torch.Tensor]:
    """The selection score of each CAM against its reference map, with the suite's constant-map flags.

    Args:
        cams: (B, H, W) float32/float64 CAMs, any finite range. Not modified.
        references: (B, H, W) DeepGaze densities or human masks (scaled to [0, 1]), same shape,
            dtype and device.
        criterion: one of CRITERIA; "iou"/"human-iou" score the top-`fraction` IoU, "mae"/"human-mae"
            the MAE of the min-max normalised maps (as `compare_maps`).
        fraction: top fraction for the IoU (paper: 0.1, its "top 90 %").
        iou_mode: "paper" (each map thresholded at its own linear 90th percentile with >=, ties
            collapse to the whole image) or "exact" (the tie-robust top-k IoU).

    Returns:
        {"score": (B,) float64, "cam_constant": (B,) bool, "reference_constant": (B,) bool} on the CPU.

    Raises:
        ValueError: unknown criterion or IoU mode; maps as `compare_maps` refuses them.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid: {list(CRITERIA)}")
    if iou_mode not in ("paper", "exact"):
        raise ValueError(f"iou_mode must be 'paper' or 'exact', got {iou_mode!r}")
    values = compare_maps(cams, references, fraction=fraction)
    key = "mae" if criterion.endswith("mae") else f"iou_{iou_mode}"
    return {
        "score": values[key].double().cpu(),
        "cam_constant": values["pred_constant"].cpu(),
        "reference_constant": values["target_constant"].cpu(),
    }


def is_selected(score: float, threshold: float, comparison: str) -> bool:
    """Whether `score comparison threshold` holds, e.g. 0.05 < 0.1; comparison is a key of COMPARISONS."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {list(COMPARISONS)}, got {comparison!r}")
    return COMPARISONS[comparison](score, threshold)


def erase_mask(cam: np.ndarray, percentile: float = ERASE_PERCENTILE) -> np.ndarray:
    """The CAM's top pixels: bool (H, W), true where the CAM is strictly above its own percentile.

    Args:
        cam: (H, W) float CAM (float16 is read as float64), finite.
        percentile: in (0, 100); NumPy's default linear interpolation, as the original code.

    Returns:
        bool (H, W). It is empty when the map is constant, and holds fewer than (100 − percentile) %
        of the pixels when values tie at the threshold.

    Raises:
        ValueError: percentile outside (0, 100), a map that is not 2-D or not finite.
    """
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    values = np.asarray(cam, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        raise ValueError(f"expected a finite (H, W) map, got shape {values.shape}")
    return values > np.percentile(values, percentile)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool (h, w) mask to (H, W), pixel centres aligned.

    Output pixel (i, j) takes the input pixel containing its centre: row ⌊(i + 0.5)·h / H⌋,
    column ⌊(j + 0.5)·w / W⌋ (PIL's NEAREST, torch's "nearest-exact"), so a squashed 512² map
    lands on the native image it was computed from.
    """
    h, w = mask.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def apply_erase(image: np.ndarray, mask: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """The image with the masked pixels set to `fill` in every channel.

    Args:
        image: uint8 (H, W, 3) RGB. Not modified.
        mask: bool (H, W), true = erase.
        fill: RGB value 0–255 written into the erased pixels.

    Returns:
        uint8 (H, W, 3), equal to `image` wherever `mask` is false.

    Raises:
        ValueError: mask and image sizes differ.
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    out = image.copy()
    out[mask] = np.asarray(fill, dtype=np.uint8)
    return out
