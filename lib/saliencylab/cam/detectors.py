"""The registry of detectors the CAM engine knows: how to build each one and where to look in it.

Each entry is a frozen `DetectorSpec`; change any field with `dataclasses.replace`, e.g.
`replace(get_detector("faster_rcnn"), internal_resize=False)` or another `target_layer`.
Layers, preprocessing and sizes per detector are tabulated in docs/cam.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from saliencylab.cam import detr as _detr
from saliencylab.cam import torchvision_detectors as _tv
from saliencylab.cam import yolov5 as _yolov5
from saliencylab.cam.adapter import DetectorAdapter
from saliencylab.cam.names import DETECTOR_NAMES
from saliencylab.checkpoints import load_state_dict_strict

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, for images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Per-channel `(x - mean) / std` that turns an RGB [0, 1] batch into the model's input."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> same shape, dtype and device. Never in place: the identity returns `images` itself."""
        if self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0):
            return images
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


IDENTITY = Preprocess()


@dataclass(frozen=True)
class DetectorSpec:
    """Everything the engine needs to know about one detector."""

    name: str  # registry key
    builder: Callable[..., nn.Module]  # random init, offline; keyword arguments pass through build_detector
    target_layer: str  # dotted module path from the model root (see resolve_layer)
    preprocess: Preprocess  # RGB [0, 1] -> model input; torchvision models normalise inside, so identity
    internal_resize: bool  # run the model's own resize (torchvision transform); False: the backbone sees H×W as given
    adapter: DetectorAdapter = field(default_factory=DetectorAdapter)  # how to feed the model up to the layer
    size_multiple: int = 1  # H and W must be multiples of this (YOLOv5: 32, its largest stride)
    source: str = ""  # where the layer choice comes from


_TORCHVISION = _tv.TorchvisionAdapter()
DETECTORS: tuple[DetectorSpec, ...] = (
    DetectorSpec(
        name="faster_rcnn", builder=_tv.faster_rcnn, target_layer="backbone.body.layer4",
        preprocess=IDENTITY, internal_resize=True, adapter=_TORCHVISION,
        source="paper A code (EvaluateSaliencyMaps.ipynb): ResNet-50 stage 4 (C5), no reshape_transform",
    ),
    DetectorSpec(
        name="mask_rcnn", builder=_tv.mask_rcnn, target_layer="backbone.body.layer4",
        preprocess=IDENTITY, internal_resize=True, adapter=_TORCHVISION,
        source="no code in paper A; the same ResNet-50-FPN body as Faster R-CNN, so its stage 4",
    ),
    DetectorSpec(
        name="retinanet", builder=_tv.retinanet, target_layer="backbone.body.layer4",
        preprocess=IDENTITY, internal_resize=True, adapter=_TORCHVISION,
        source="no code in paper A; ResNet-50 stage 4 (C5, which also feeds P6/P7)",
    ),
    DetectorSpec(
        name="ssd300", builder=_tv.ssd300, target_layer="backbone.extra.1",
        preprocess=IDENTITY, internal_resize=True, adapter=_TORCHVISION,
        source="paper A code: backbone.extra[1], the second SSD feature map (512×10×10)",
    ),
    DetectorSpec(
        name="ssdlite", builder=_tv.ssdlite, target_layer="backbone.features.1",
        preprocess=IDENTITY, internal_resize=True, adapter=_TORCHVISION,
        source="no code in paper A; end of the MobileNetV3 trunk (stride 32), before the SSDlite extra blocks",
    ),
    DetectorSpec(
        name="yolov5s", builder=_yolov5.yolov5s, target_layer="model.23",
        preprocess=IDENTITY, internal_resize=False, adapter=DetectorAdapter(), size_multiple=32,
        source="paper A code (yolo-saliency.ipynb): model.model.model[-2] on AutoShape, the last C3 before Detect",
    ),
    DetectorSpec(
        name="detr", builder=_detr.detr, target_layer="model.backbone.model.encoder.stages.3",
        preprocess=Preprocess(IMAGENET_MEAN, IMAGENET_STD), internal_resize=False, adapter=_detr.DetrAdapter(),
        source="no code in paper A; ResNet-50 stage 4, the feature map DETR's transformer encoder reads",
    ),
)
_BY_NAME: Mapping[str, DetectorSpec] = {spec.name: spec for spec in DETECTORS}


def get_detector(name: str) -> DetectorSpec:
    """The registry entry called `name`.

    Raises:
        ValueError: If `name` is unknown; the message lists the valid names.
    """
    if name not in _BY_NAME:
        raise ValueError(f"unknown detector {name!r}; valid names: {list(DETECTOR_NAMES)}")
    return _BY_NAME[name]


def build_detector(
    name: str | DetectorSpec, state_dict: Mapping[str, torch.Tensor] | None = None, **builder_kwargs
) -> nn.Module:
    """A detector in eval mode, randomly initialised or with `state_dict` loaded strictly.

    Nothing is downloaded: every builder starts from random weights.

    Args:
        name: a registry name (see `DETECTOR_NAMES`) or a `DetectorSpec`.
        state_dict: name → tensor with exactly the model's keys and shapes, e.g. from
            `saliencylab.weights.load_weights`; None keeps the random init (build inside
            `saliencylab.seeding.seeded_init` for reproducible weights). Not modified.
        **builder_kwargs: passed to the spec's builder, e.g. `num_classes=21` for torchvision
            detectors, `num_classes` for yolov5s, `num_labels` for detr.

    Returns:
        The model on the CPU, in eval mode.

    Raises:
        ValueError: If `name` is unknown, or `state_dict` does not match: the message gives the
            counts of missing keys, unexpected keys and shape mismatches and the first 10 of each.
        TypeError: If `state_dict` is not a mapping of names to tensors.
    """
    spec = name if isinstance(name, DetectorSpec) else get_detector(name)
    model = spec.builder(**builder_kwargs)
    if state_dict is not None:
        load_state_dict_strict(model, state_dict)
    return model.eval()
