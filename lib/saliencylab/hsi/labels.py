"""Algorithm 1 of the HSI paper: passive and pseudo conditional fixation/saliency maps from fixations and masks.

Per image, the passive-viewing fixation map F (from SALICON's free-viewing fixations) and its blurred
saliency map; per object category c with mask m, the pseudo conditional fixation map pf = m ⊙ F,
kept when area(m)/area(image) ≥ Tₐ and Σpf/ΣF ≥ T_r, and its blurred saliency map. Every choice
the paper leaves open (research-notes §6.3) is a field of `LabelParams`; docs/hsi.md says why each
default was chosen. Arrays only: reading .mat and COCO files is `saliencylab.datasets`' job.

Conventions: fixation points are (N, 2) int64 (row, column) = (y, x), 0-based; maps are (H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter

COMPARISONS = (">=", ">")
FIXATION_VALUES = ("binary", "count")
ORDERS = ("mask-then-blur", "blur-then-mask")
NORMALISATIONS = ("max", "minmax", "sum")


@dataclass(frozen=True)
class LabelParams:
    """The parameters of Algorithm 1 (defaults: the paper where it says, our choice where it does not)."""

    area_threshold: float = 0.1  # Tₐ: minimum mask area / image area (paper)
    share_threshold: float = 0.05  # T_r: minimum share of the image's fixations inside the mask (paper)
    comparison: Literal[">=", ">"] = ">="  # how both thresholds compare (paper: "≥")
    sigma: float = 19.0  # Gaussian blur sigma in pixels at `sigma_reference_width` (paper, SALICON: 19)
    sigma_reference_width: int = 640  # image width sigma refers to (SALICON: 640); 0 = sigma in pixels as is
    fixation_values: Literal["binary", "count"] = "binary"  # F: 1 per fixated pixel, or the fixation count
    order: Literal["mask-then-blur", "blur-then-mask"] = "mask-then-blur"  # blur pf, or mask the passive map
    normalise: Literal["max", "minmax", "sum"] = "max"  # scaling of every saliency map

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("comparison", self.comparison, COMPARISONS),
            ("fixation_values", self.fixation_values, FIXATION_VALUES),
            ("order", self.order, ORDERS),
            ("normalise", self.normalise, NORMALISATIONS),
        ):
            if value not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {value!r}")
        if not (0 <= self.area_threshold <= 1 and 0 <= self.share_threshold <= 1):
            raise ValueError(f"thresholds must be in [0, 1], got {self.area_threshold}, {self.share_threshold}")
        if self.sigma < 0 or self.sigma_reference_width < 0:
            raise ValueError(f"sigma and sigma_reference_width must be >= 0, got {self.sigma}, {self.sigma_reference_width}")


@dataclass(frozen=True)
class ConditionalLabel:
    """One category's pseudo conditional label and the statistics that decided whether it is kept."""

    kept: bool
    area_ratio: float  # area(m) / (H * W)
    fixation_share: float  # Σ(m ⊙ F) / ΣF
    fixations: np.ndarray  # (H, W) float32 m ⊙ F
    saliency: np.ndarray  # (H, W) float32, normalised by `LabelParams.normalise`


def fixation_points(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """SALICON fixations ([x, y], 1-based) as 0-based (row, column) points inside the image.

    Args:
        xy: (N, 2) numeric [x, y] = [column, row], 1-based as in SALICON's .mat files; rounded to the
            nearest pixel. Not mutated.
        size: (H, W) of the image.

    Returns:
        (N', 2) int64 (row, column) of the points with 0 <= row < H and 0 <= column < W, in input
        order; the others (off-image samples) are dropped.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    cols, rows = np.rint(xy[:, 0]).astype(np.int64) - 1, np.rint(xy[:, 1]).astype(np.int64) - 1
    inside = (rows >= 0) & (rows < size[0]) & (cols >= 0) & (cols < size[1])
    return np.stack([rows[inside], cols[inside]], axis=1)


def fixation_map(points: np.ndarray, size: tuple[int, int], values: str = "binary") -> np.ndarray:
    """The (H, W) float32 fixation map of (N, 2) (row, column) points: 1 at fixated pixels, or the count."""
    if values not in FIXATION_VALUES:
        raise ValueError(f"values must be one of {FIXATION_VALUES}, got {values!r}")
    counts = np.zeros(size, dtype=np.float32)
    np.add.at(counts, (points[:, 0], points[:, 1]), 1.0)
    return (counts > 0).astype(np.float32) if values == "binary" else counts


def blur_sigma(params: LabelParams, width: int) -> float:
    """The blur sigma in pixels for an image `width` pixels wide (sigma scaled by width / reference width)."""
    return params.sigma if params.sigma_reference_width == 0 else params.sigma * width / params.sigma_reference_width


def saliency_from_fixations(fixations: np.ndarray, sigma: float, normalise: str = "max") -> np.ndarray:
    """Blur an (H, W) fixation map with a Gaussian of `sigma` px (scipy, reflect boundary) and scale it.

    Returns:
        (H, W) float32: `max` divides by the maximum (range [0, 1]), `minmax` maps to [0, 1], `sum`
        divides by the sum (a density). An all-zero map stays all zero.
    """
    return normalise_map(_blur(fixations, sigma), normalise)


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """float64 Gaussian blur (scipy's reflect boundary, truncated at 4 sigma); sigma 0 = unchanged."""
    values = np.asarray(values, dtype=np.float64)
    return gaussian_filter(values, sigma) if sigma > 0 else values


def normalise_map(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale an (H, W) non-negative map by `mode` (max, minmax, sum) as float32; an all-zero map stays zero."""
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
    values = np.asarray(values, dtype=np.float64)
    if mode == "minmax":
        values = values - values.min()
    scale = values.sum() if mode == "sum" else values.max()
    return (values / scale if scale > 0 else np.zeros_like(values)).astype(np.float32)


def passive_maps(points: np.ndarray, size: tuple[int, int], params: LabelParams) -> tuple[np.ndarray, np.ndarray]:
    """The passive-viewing (fixation map F, saliency map) of an image, both (H, W) float32.

    Raises:
        ValueError: If no fixation lies inside the image.
    """
    if len(points) == 0:
        raise ValueError("the image has no fixation inside its bounds")
    fixations = fixation_map(points, size, params.fixation_values)
    return fixations, saliency_from_fixations(fixations, blur_sigma(params, size[1]), params.normalise)


def union_masks(named: Sequence[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pixelwise union of the masks that share a name (e.g. all instances of one category).

    Args:
        named: (name, (H, W) mask) pairs; nonzero = inside. Not mutated.

    Returns:
        name -> (H, W) uint8 {0, 1}, names in first-appearance order.
    """
    union: dict[str, np.ndarray] = {}
    for name, mask in named:
        inside = (np.asarray(mask) != 0).astype(np.uint8)
        union[name] = np.maximum(union[name], inside) if name in union else inside
    return union


def _passes(value: float, threshold: float, comparison: str) -> bool:
    return value >= threshold if comparison == ">=" else value > threshold


def conditional_label(fixations: np.ndarray, mask: np.ndarray, params: LabelParams) -> ConditionalLabel:
    """Algorithm 1 for one category: pf = m ⊙ F, the two thresholds, and the blurred conditional map.

    Args:
        fixations: (H, W) float32 passive fixation map F (from `passive_maps`), not all zero.
        mask: (H, W) the category's mask (any dtype; nonzero = inside), e.g. COCO's uint8 {0, 1}.
        params: thresholds, comparison, blur and order.

    Returns:
        A ConditionalLabel; `kept` is area_ratio ≥ Tₐ and fixation_share ≥ T_r (or `>`). With
        `blur-then-mask` the saliency is the blurred F masked by m, else m ⊙ F blurred; both scaled.

    Raises:
        ValueError: If the shapes differ or F holds no fixation.
    """
    if fixations.shape != mask.shape:
        raise ValueError(f"mask {mask.shape} and fixation map {fixations.shape} differ in size")
    total = float(fixations.sum())
    if total <= 0:
        raise ValueError("the fixation map is empty")
    inside = np.asarray(mask) != 0
    masked = np.where(inside, fixations, 0).astype(np.float32)
    area_ratio, share = float(inside.mean()), float(masked.sum()) / total
    kept = _passes(area_ratio, params.area_threshold, params.comparison) and _passes(share, params.share_threshold, params.comparison)
    sigma = blur_sigma(params, fixations.shape[1])
    if params.order == "mask-then-blur":
        saliency = saliency_from_fixations(masked, sigma, params.normalise)
    else:
        saliency = normalise_map(np.where(inside, _blur(fixations, sigma), 0.0), params.normalise)
    return ConditionalLabel(kept, area_ratio, share, masked, saliency)
