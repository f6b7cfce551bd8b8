"""DETR (transformers `DetrForObjectDetection`) built offline from a config, and its adapter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from saliencylab.cam.adapter import DetectorAdapter

RESNET50 = {"depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048], "layer_type": "bottleneck"}
COCO_LABELS = 91  # facebook/detr-resnet-50: 91 COCO ids (+1 "no object" logit added by the model)


@dataclass(frozen=True)
class DetrAdapter(DetectorAdapter):
    """`model(pixel_values=x)` with an all-ones pixel mask; no internal resize (the image processor resizes)."""

    def run(self, model: nn.Module, x: torch.Tensor) -> object:
        return model(pixel_values=x)


def detr(num_labels: int = COCO_LABELS, **config_kwargs) -> nn.Module:
    """DETR-ResNet-50, random init, built from a `DetrConfig`; nothing is downloaded.

    The backbone is transformers' own ResNet-50 (`use_timm_backbone=False`,
    `use_pretrained_backbone=False`), so the state dict matches the `no_timm` revision of
    facebook/detr-resnet-50 as transformers 5 names it (`model.backbone.model.encoder.stages.3...`);
    transformers 4 named the same weights `model.backbone.conv_encoder.model...` (unverified for
    every release). Keyword arguments go to `DetrConfig`.
    """
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    config = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=ResNetConfig(**RESNET50, out_features=["stage4"]),
        num_labels=num_labels,
        **config_kwargs,
    )
    return DetrForObjectDetection(config)
