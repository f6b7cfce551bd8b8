"""Faster R-CNN inference for evaluation: a fine-tuned detector rebuilt, then images in, detections out.

The detector is rebuilt exactly as the finetune stage built it (`saliencylab.training.model`:
the architecture's COCO layout with a `num_classes` box predictor, frozen batch norm) and its
fine-tuned state dict loaded strictly. Inference runs torchvision's own pipeline: normalise,
resize so the short side is `min_size` (long side at most `max_size`), RPN, box head, per-class
NMS, boxes mapped back to the input image's pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.detection.ap import Detections
from saliencylab.detection.defaults import TORCHVISION_DETECTIONS_PER_IMAGE, TORCHVISION_SCORE_THRESHOLD
from saliencylab.training.defaults import PAPER_ARCHITECTURE, TORCHVISION_MAX_SIZE, TORCHVISION_MIN_SIZE
from saliencylab.training.model import build_finetune_model


def build_faster_rcnn(
    state_dict: Mapping[str, torch.Tensor] | None,
    num_classes: int,
    *,
    architecture: str = PAPER_ARCHITECTURE,
    min_size: int = TORCHVISION_MIN_SIZE,
    max_size: int = TORCHVISION_MAX_SIZE,
    score_threshold: float = TORCHVISION_SCORE_THRESHOLD,
    detections_per_image: int = TORCHVISION_DETECTIONS_PER_IMAGE,
    seed: int = 0,
) -> nn.Module:
    """A fine-tuned Faster R-CNN in eval mode on the CPU, `state_dict` loaded strictly.

    Args:
        state_dict: e.g. `saliencylab.weights.load_finetuned(uri).state_dict`; None keeps the
            random init drawn from `seed` (tests). Not modified.
        num_classes: box-predictor classes, background included (VOC: 21).
        architecture: a name of `saliencylab.training.defaults.ARCHITECTURE_NAMES` (paper: R50-FPN).
        min_size, max_size: torchvision's internal resize, in pixels.
        score_threshold: minimum score of an output detection, in [0, 1].
        detections_per_image: maximum detections per image after NMS.
        seed: seeds the random init (overwritten by `state_dict` when given); the global RNG is
            left unchanged.

    Raises:
        ValueError: if a size or threshold is out of range, the architecture is unknown, or
            `state_dict` does not match (the message names the mismatching keys).
    """
    if num_classes < 2 or min_size < 1 or max_size < min_size or not 0 <= score_threshold <= 1 or detections_per_image < 1:
        raise ValueError(
            f"need num_classes >= 2, 1 <= min_size <= max_size, score_threshold in [0, 1], detections_per_image >= 1; "
            f"got {num_classes}, {min_size}, {max_size}, {score_threshold}, {detections_per_image}"
        )
    model = build_finetune_model(architecture, None, min_size=min_size, max_size=max_size, num_classes=num_classes, seed=seed)
    if state_dict is not None:
        load_state_dict_strict(model, state_dict)
    model.roi_heads.score_thresh = score_threshold
    model.roi_heads.detections_per_img = detections_per_image
    return model.eval()


def detect(model: nn.Module, images: torch.Tensor) -> list[Detections]:
    """Run the detector on a batch; boxes come back in the batch's pixel coordinates.

    Args:
        model: from `build_faster_rcnn`, on the images' device.
        images: (B, 3, H, W) float32 RGB in [0, 1]. Not modified.

    Returns:
        B Detections (float64 boxes x0, y0, x1, y1 in pixels of the H×W input, scores in [0, 1]
        sorted descending, labels in [1, num_classes - 1]), on the CPU.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    with torch.inference_mode():
        outputs = model(list(images))
    return [
        Detections(o["boxes"].double().cpu().numpy(), o["scores"].double().cpu().numpy(), o["labels"].cpu().numpy())
        for o in outputs
    ]


def rescale(detections: Detections, from_size: Sequence[int], to_size: Sequence[int]) -> Detections:
    """`detections` with boxes mapped from an image of `from_size` (H, W) to one of `to_size` (H, W).

    For a squashed ingest (image.png resized to 512×512) this maps boxes back to the original
    image's pixels: x scales by W_to / W_from, y by H_to / H_from. Returns a new Detections.
    """
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    factors = np.array([sx, sy, sx, sy], dtype=np.float64)
    return Detections(detections.boxes * factors, detections.scores, detections.labels)
