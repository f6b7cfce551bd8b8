"""The five torchvision detectors: offline builders with the COCO releases' layout, and their adapter.

Every builder passes `weights=None, weights_backbone=None`, so nothing is ever downloaded;
keyword arguments go to the torchvision builder (e.g. `num_classes=21` for a VOC fine-tune,
`min_size=...` for a smaller internal resize).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import detection
from torchvision.ops import FrozenBatchNorm2d

from saliencylab.cam.adapter import DetectorAdapter, ModelInput


@dataclass(frozen=True)
class TorchvisionAdapter(DetectorAdapter):
    """GeneralizedRCNNTransform (normalise, then resize and pad, or normalise only) -> `model.backbone`.

    The backbone in eval mode does not depend on the RPN or the heads, so the engine runs only
    the transform and the backbone; target layers must lie under `backbone`.
    """

    feature_root: str = "backbone"

    def model_input(self, model: nn.Module, images: torch.Tensor, internal_resize: bool) -> ModelInput:
        transform = model.transform
        if not internal_resize:
            return ModelInput(transform.normalize(images), (1.0, 1.0))
        batch, _ = transform(list(images))
        (height, width), (padded_h, padded_w) = batch.image_sizes[0], batch.tensors.shape[-2:]
        return ModelInput(batch.tensors, (height / padded_h, width / padded_w))

    def run(self, model: nn.Module, x: torch.Tensor) -> object:
        return model.backbone(x)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace each nn.BatchNorm2d under `module` by a FrozenBatchNorm2d with the same statistics, in place.

    torchvision builds the ResNet-50 of its detectors with FrozenBatchNorm2d only when weights
    are given; random-init builds get nn.BatchNorm2d, whose extra `num_batches_tracked` buffers
    would make the COCO state dicts fail a strict load. In eval mode both compute the same.
    """
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def faster_rcnn(**kwargs) -> nn.Module:
    """`fasterrcnn_resnet50_fpn`, random init, state-dict layout of FasterRCNN_ResNet50_FPN_Weights.COCO_V1."""
    model = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
    _freeze_batchnorm(model.backbone.body)
    return model


def mask_rcnn(**kwargs) -> nn.Module:
    """`maskrcnn_resnet50_fpn`, random init, state-dict layout of MaskRCNN_ResNet50_FPN_Weights.COCO_V1."""
    model = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
    _freeze_batchnorm(model.backbone.body)
    return model


def retinanet(**kwargs) -> nn.Module:
    """`retinanet_resnet50_fpn`, random init, state-dict layout of RetinaNet_ResNet50_FPN_Weights.COCO_V1."""
    model = detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
    _freeze_batchnorm(model.backbone.body)
    return model


def ssd300(**kwargs) -> nn.Module:
    """`ssd300_vgg16`, random init (VGG-16 has no batch norm), layout of SSD300_VGG16_Weights.COCO_V1."""
    return detection.ssd300_vgg16(weights=None, weights_backbone=None, **kwargs)


def ssdlite(**kwargs) -> nn.Module:
    """`ssdlite320_mobilenet_v3_large`, random init, layout of SSDLite320_MobileNet_V3_Large_Weights.COCO_V1.

    Without backbone weights torchvision uses MobileNetV3's reduced tail (its last stage has
    half the channels); the COCO release was built the same way, so the layouts agree.
    """
    return detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, **kwargs)
