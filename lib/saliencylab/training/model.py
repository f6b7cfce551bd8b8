"""The detector to fine-tune: a COCO-layout Faster R-CNN, strictly loaded, with a fresh 21-class box predictor.

Built the way torchvision builds its detectors when trained weights are given (never downloading
anything): FrozenBatchNorm2d in the backbone and the first backbone stages frozen
(TRAINABLE_BACKBONE_LAYERS = 3, torchvision's default for a trained model, hence the paper's).
The state dict is loaded into the 91-class COCO layout first, then the box predictor is replaced,
as the paper's code did with `FastRCNNPredictor`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.seeding import seeded_init
from saliencylab.training.defaults import ARCHITECTURE_NAMES, TORCHVISION_MAX_SIZE, TORCHVISION_MIN_SIZE
from saliencylab.training.targets import NUM_CLASSES

COCO_NUM_CLASSES = 91  # torchvision's COCO releases: 90 category ids + background
TRAINABLE_BACKBONE_LAYERS = 3  # torchvision's default when starting from trained weights


def _resnet50_fpn(**kwargs) -> FasterRCNN:
    backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    return FasterRCNN(_resnet_fpn_extractor(backbone, TRAINABLE_BACKBONE_LAYERS), COCO_NUM_CLASSES, **kwargs)


def _mobilenet_v3_large_fpn(**kwargs) -> FasterRCNN:
    backbone = mobilenet_v3_large(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _mobilenet_extractor(backbone, True, TRAINABLE_BACKBONE_LAYERS)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3  # torchvision's layout for this model: 3 feature maps
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    return FasterRCNN(backbone, COCO_NUM_CLASSES, rpn_anchor_generator=anchors, rpn_score_thresh=0.05, **kwargs)


TINY_CHANNELS, TINY_REPRESENTATION = 32, 64


def _tiny(**kwargs) -> FasterRCNN:
    """Faster R-CNN around a 3-convolution backbone (stride 8, ~0.2 M parameters): tests and smoke runs only."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((3, 16), (16, TINY_CHANNELS), (TINY_CHANNELS, TINY_CHANNELS)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
    backbone = nn.Sequential(*layers)
    backbone.out_channels = TINY_CHANNELS  # FasterRCNN reads it; a plain tensor output becomes feature map "0"
    return FasterRCNN(
        backbone,
        rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(TINY_CHANNELS * 7 * 7, TINY_REPRESENTATION),
        box_predictor=FastRCNNPredictor(TINY_REPRESENTATION, COCO_NUM_CLASSES),
        **kwargs,
    )


@dataclass(frozen=True)
class Architecture:
    """A fine-tunable detector: its builder and the torchvision COCO release with its state-dict layout."""

    name: str
    build: Callable[..., FasterRCNN]  # (**FasterRCNN kwargs) -> 91-class model, random init
    coco_weights: str  # weights spec of the matching COCO release in the local cache (weights.py); "" = none


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "fasterrcnn_resnet50_fpn", _resnet50_fpn, "torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1"
    ),  # the paper's model
    Architecture(
        "fasterrcnn_mobilenet_v3_large_fpn",
        _mobilenet_v3_large_fpn,
        "torchvision:FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1",
    ),  # 19 M parameters instead of 41 M
    Architecture("fasterrcnn_tiny", _tiny, ""),  # no release: random weights, for tests and smoke runs
)


def get_architecture(name: str) -> Architecture:
    """The architecture called `name`; raises ValueError listing the valid names."""
    for arch in ARCHITECTURES:
        if arch.name == name:
            return arch
    raise ValueError(f"unknown architecture {name!r}; valid: {list(ARCHITECTURE_NAMES)}")


def build_finetune_model(
    architecture: str,
    coco_state: Mapping[str, torch.Tensor] | None,
    *,
    min_size: int = TORCHVISION_MIN_SIZE,
    max_size: int = TORCHVISION_MAX_SIZE,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
) -> FasterRCNN:
    """A Faster R-CNN ready to fine-tune on VOC, on the CPU, in train mode.

    Args:
        architecture: a name from ARCHITECTURE_NAMES.
        coco_state: a state dict in the 91-class COCO layout of that architecture (e.g. the
            torchvision release), or None for random weights (tests), drawn under `seed`.
        min_size, max_size: the model's internal resize (shorter side to min_size, longer side at
            most max_size; torchvision: 800/1333). Images are given as (3, H, W) float in [0, 1].
        num_classes: outputs of the new box predictor, background included (VOC: 21).
        seed: seeds the random initialisation of the model (without `coco_state`) and of the new
            box predictor, through `seeded_init`; the global RNG is left unchanged.

    Raises:
        ValueError: if `coco_state` does not fit the architecture, naming the mismatching keys.
    """
    arch = get_architecture(architecture)
    with seeded_init(seed, "weights", arch.name):
        model = arch.build(min_size=min_size, max_size=max_size)
    if coco_state is not None:
        try:
            load_state_dict_strict(model, coco_state)
        except ValueError as e:
            raise ValueError(f"the weights do not fit {arch.name} in the COCO layout (91 classes):\n{e}") from None
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    with seeded_init(seed, "box_predictor", num_classes):
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    return model.train()

