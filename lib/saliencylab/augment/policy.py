"""Detection AutoAugment policy v3 (Zoph et al. 2019, arXiv 1906.11172): its table and its application.

`POLICY_V3` is the table the original study copied (upstream Jasonlee1995/AutoAugment_Detection,
`policy.py`, `policy_v3`; research notes §1.6): 15 sub-policies of two ops, each op with its
probability and a magnitude step m on the 0–10 grid. An image is augmented by one sub-policy
drawn uniformly; each of its ops runs with its probability, in order. Magnitudes become
parameters by the constants below (research notes §1.6); ops with a sign take a random one.

What differs from the original code, on purpose (docs/augment.md): boxes move with the pixels
(`geometry`), none of the colour ops inverts colours (`pixels`), Posterize keeps ⌊8 − 0.4m⌋ bits
(more bits removed for a larger m), the enhance factor is 1 ± 0.09m, and BBox_Cutout sizes its
rectangle by the chosen box (TF AutoAugment) rather than by the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from saliencylab.augment import geometry, pixels

ROTATE_DEGREES_PER_STEP = 3.0  # 30° at m = 10
SHEAR_PER_STEP = 0.03  # shear coefficient 0.3 at m = 10
TRANSLATE_PIXELS_PER_STEP = 25  # 250 px at m = 10 (TF translate_const), in pixels of the image as given
ENHANCE_PER_STEP = 0.09  # factor 1 ± 0.9 at m = 10
CUTOUT_PAD_PER_STEP = 10  # half side 100 px at m = 10 (TF cutout_const)
BBOX_CUTOUT_FRACTION_PER_STEP = 0.075  # cutout side 0.75 of the chosen box's at m = 10 (TF cutout_bbox_const)
SOLARIZE_ADD_PER_STEP = 11  # addition ±110 at m = 10
POSTERIZE_BITS_PER_STEP = 0.4  # keeps ⌊8 − 0.4m⌋ bits
FILL = 128  # gray written where geometric ops and cutouts leave no source pixel (TF `replace`)
EXTRA_FILL = 0  # value of moved extra planes (attention or erase masks) outside the source


@dataclass(frozen=True)
class Op:
    """One op of a sub-policy: its upstream name, probability and magnitude step (None: no magnitude)."""

    name: str
    probability: float
    magnitude: int | None = None


POLICY_V3: tuple[tuple[Op, Op], ...] = (
    (Op("Posterize", 0.8, 2), Op("TranslateX_BBox", 1.0, 8)),
    (Op("BBox_Cutout", 0.2, 10), Op("Sharpness", 1.0, 8)),
    (Op("Rotate_BBox", 0.6, 8), Op("Rotate_BBox", 0.8, 10)),
    (Op("Equalize", 0.8), Op("AutoContrast", 0.2)),
    (Op("SolarizeAdd", 0.2, 2), Op("TranslateY_BBox", 0.2, 8)),
    (Op("Sharpness", 0.0, 2), Op("Color", 0.4, 8)),
    (Op("Equalize", 1.0), Op("TranslateY_BBox", 1.0, 8)),
    (Op("Posterize", 0.6, 2), Op("Rotate_BBox", 0.0, 10)),
    (Op("AutoContrast", 0.6), Op("Rotate_BBox", 1.0, 6)),
    (Op("Equalize", 0.0), Op("Cutout", 0.8, 10)),
    (Op("Brightness", 1.0, 2), Op("TranslateY_BBox", 1.0, 6)),
    (Op("Contrast", 0.0, 2), Op("ShearY_BBox", 0.8, 0)),
    (Op("AutoContrast", 0.8), Op("Contrast", 0.2, 10)),
    (Op("Rotate_BBox", 1.0, 10), Op("Cutout", 1.0, 10)),
    (Op("SolarizeAdd", 0.8, 6), Op("Equalize", 0.8)),
)
GEOMETRIC_OPS = ("Rotate_BBox", "ShearX_BBox", "ShearY_BBox", "TranslateX_BBox", "TranslateY_BBox")
ENHANCE_OPS = {"Brightness": "brightness", "Color": "color", "Contrast": "contrast", "Sharpness": "sharpness"}


@dataclass(frozen=True)
class Augmented:
    """An image with its boxes and extra planes, as augmented so far.

    image: uint8 (H, W, 3) RGB. boxes: (K', 4) float64 x0, y0, x1, y1 in pixel-edge coordinates.
    kept: (K',) int64 index of each remaining box in the original box list (to keep labels aligned).
    extras: name -> uint8 (H, W) planes (masks) moved with the pixels, never recoloured.
    ops: one record per op of the sub-policy (name, probability, magnitude, applied, parameters).
    """

    image: np.ndarray
    boxes: np.ndarray
    kept: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    sub_policy: int = 0  # 1-based row of POLICY_V3 (the numbering of research notes §1.6)
    ops: tuple[dict[str, Any], ...] = ()


def geometric_matrix(name: str, magnitude: int, negative: bool, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """The forward matrix of a geometric op at magnitude step `magnitude`, and its parameter for the record.

    Args:
        name: one of GEOMETRIC_OPS.
        magnitude: step on the 0–10 grid.
        negative: take the negative sign (rotate clockwise, shear or translate the other way).
        size: (H, W) of the image.

    Raises:
        ValueError: not a geometric op.
    """
    sign = -1.0 if negative else 1.0
    if name == "Rotate_BBox":
        degrees = sign * ROTATE_DEGREES_PER_STEP * magnitude
        return geometry.rotation(degrees, size), {"degrees": degrees}
    if name in ("ShearX_BBox", "ShearY_BBox"):
        level = sign * SHEAR_PER_STEP * magnitude
        return geometry.shear(level, "x" if name == "ShearX_BBox" else "y"), {"level": level}
    if name in ("TranslateX_BBox", "TranslateY_BBox"):
        shift = sign * TRANSLATE_PIXELS_PER_STEP * magnitude
        dx, dy = (shift, 0.0) if name == "TranslateX_BBox" else (0.0, shift)
        return geometry.translation(dx, dy), {"pixels": shift}
    raise ValueError(f"{name!r} is not a geometric op; valid: {list(GEOMETRIC_OPS)}")


def _move(state: Augmented, matrix: np.ndarray, min_side: float) -> Augmented:
    size = state.image.shape[:2]
    boxes, keep = geometry.transform_boxes(state.boxes, matrix, size, min_side)
    return replace(
        state,
        image=geometry.warp(state.image, matrix, FILL),
        boxes=boxes,
        kept=state.kept[keep],
        extras={k: geometry.warp(v, matrix, EXTRA_FILL) for k, v in state.extras.items()},
    )


def _recolour(state: Augmented, op: Op, rng: np.random.Generator) -> tuple[Augmented, dict[str, Any]]:
    """Apply a pixel-value op; returns the new state and the op's parameters."""
    image, m = state.image, op.magnitude
    if op.name == "Equalize":
        return replace(state, image=pixels.equalize(image)), {}
    if op.name == "AutoContrast":
        return replace(state, image=pixels.autocontrast(image)), {}
    if op.name == "Posterize":
        bits = math.floor(8 - POSTERIZE_BITS_PER_STEP * m)
        return replace(state, image=pixels.posterize(image, bits)), {"bits": bits}
    if op.name == "SolarizeAdd":
        addition = (-1 if rng.random() < 0.5 else 1) * SOLARIZE_ADD_PER_STEP * m
        return replace(state, image=pixels.solarize_add(image, addition)), {"addition": addition}
    if op.name in ENHANCE_OPS:
        factor = 1.0 + (-1 if rng.random() < 0.5 else 1) * ENHANCE_PER_STEP * m
        return replace(state, image=pixels.enhance(image, ENHANCE_OPS[op.name], factor)), {"factor": round(factor, 6)}
    h, w = image.shape[:2]
    if op.name == "Cutout":
        centre, half = (int(rng.integers(h)), int(rng.integers(w))), (CUTOUT_PAD_PER_STEP * m,) * 2
        return replace(state, image=pixels.cutout(image, centre, half, FILL)), {"centre": list(centre), "half": list(half)}
    if op.name == "BBox_Cutout":
        if len(state.boxes) == 0:
            return state, {"skipped": "no box left"}
        index = int(rng.integers(len(state.boxes)))
        x0, y0, x1, y1 = state.boxes[index]
        rows, cols = (math.floor(y0), max(math.ceil(y1), math.floor(y0) + 1)), (math.floor(x0), max(math.ceil(x1), math.floor(x0) + 1))
        centre = (int(rng.integers(*rows)), int(rng.integers(*cols)))
        fraction = BBOX_CUTOUT_FRACTION_PER_STEP * m
        half = (int(fraction * (y1 - y0) / 2), int(fraction * (x1 - x0) / 2))
        params = {"box": int(state.kept[index]), "centre": list(centre), "half": list(half)}
        return replace(state, image=pixels.cutout(image, centre, half, FILL)), params
    raise ValueError(f"unknown op {op.name!r}")


def _run_op(state: Augmented, op: Op, rng: np.random.Generator) -> tuple[Augmented, np.ndarray | None]:
    """Draw and run one op, appending its record; a geometric op returns its matrix instead of moving anything.

    The draws from `rng`, in order: one uniform for the probability, then (only when applied) the
    sign and any positions the op needs.
    """
    record: dict[str, Any] = {"op": op.name, "probability": op.probability, "magnitude": op.magnitude}
    if not rng.random() < op.probability:
        return replace(state, ops=(*state.ops, record | {"applied": False})), None
    if op.name in GEOMETRIC_OPS:
        matrix, params = geometric_matrix(op.name, op.magnitude, bool(rng.random() < 0.5), state.image.shape[:2])
    else:
        (state, params), matrix = _recolour(state, op, rng), None
    return replace(state, ops=(*state.ops, record | {"applied": True} | params)), matrix


def apply_op(state: Augmented, op: Op, rng: np.random.Generator, min_side: float = 1.0) -> Augmented:
    """Run one op with its probability (draws as `_run_op`) and append its record to `state.ops`."""
    state, matrix = _run_op(state, op, rng)
    return state if matrix is None else _move(state, matrix, min_side)


def augment_once(
    image: np.ndarray,
    boxes: np.ndarray,
    rng: np.random.Generator,
    extras: dict[str, np.ndarray] | None = None,
    min_side: float = 1.0,
    policy: tuple[tuple[Op, ...], ...] = POLICY_V3,
) -> Augmented:
    """Augment one image with one sub-policy drawn uniformly from `policy`.

    Consecutive geometric ops (in v3 only sub-policy 3's two rotations) are composed into one
    matrix, so the image is resampled once and each box encloses its corners moved by the
    composition: as tight as after one op (re-enclosing after each op, as TF does, gives about
    1.7 times the area at 24° then 30°).

    Args:
        image: uint8 (H, W, 3) RGB. Not modified.
        boxes: (K, 4) x0, y0, x1, y1 in pixel-edge coordinates of `image` (K may be 0).
        rng: the sample's generator (`numpy_generator(seed, "augment", key)`): the only randomness.
        extras: uint8 (H, W) planes moved with the geometric ops (fill 0), e.g. attention masks.
        min_side: boxes narrower or shorter than this (pixels) after clipping are dropped.
        policy: the sub-policy table.

    Returns:
        The augmented sample; `kept` tells which boxes survive, `ops` what was done.

    Raises:
        ValueError: image not uint8 (H, W, 3), or boxes not (K, 4).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes of shape (K, 4), got {boxes.shape}")
    index = int(rng.integers(len(policy)))
    state = Augmented(image, boxes, np.arange(len(boxes)), dict(extras or {}), sub_policy=index + 1)
    pending = None  # consecutive geometric ops, composed: one resampling and one enclosing box for all
    for op in policy[index]:
        if pending is not None and op.name not in GEOMETRIC_OPS:
            state, pending = _move(state, pending, min_side), None
        state, matrix = _run_op(state, op, rng)
        if matrix is not None:
            pending = matrix if pending is None else matrix @ pending
    return state if pending is None else _move(state, pending, min_side)
