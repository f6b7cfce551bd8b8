"""Explanation maps of an image classifier: guided back-propagation, Grad-CAM and RISE (docs/xai.md).

`classifier` builds the explained torchvision ResNet and maps labels to class indices; `gbp`,
`gradcam` and `rise` are the methods, pure and batched: normalised (B, 3, H, W) images and (B,)
target classes in, (B, H, W) maps out, on the images' device.
"""

from saliencylab.xai.classifier import (
    ARCHITECTURES,
    IMAGENET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    NUM_CLASSES,
    LabelMap,
    build_classifier,
    get_architecture,
    imagenet_label_map,
    normalise,
    top_classes,
)
from saliencylab.xai.gbp import gbp_gradients, gbp_maps
from saliencylab.xai.gradcam import gradcam_maps
from saliencylab.xai.rise import (
    DEFAULT_CELLS,
    DEFAULT_MASKS,
    DEFAULT_P1,
    NOTEBOOK,
    RiseMasks,
    check_rise_memory,
    check_rise_params,
    rise_mask_bank,
    rise_maps,
    rise_memory_bytes,
)

METHODS = ("gbp", "gradcam", "rise")  # the `method` values of the xai stage

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CELLS",
    "DEFAULT_MASKS",
    "DEFAULT_P1",
    "IMAGENET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "METHODS",
    "NOTEBOOK",
    "NUM_CLASSES",
    "LabelMap",
    "RiseMasks",
    "build_classifier",
    "check_rise_memory",
    "check_rise_params",
    "gbp_gradients",
    "gbp_maps",
    "get_architecture",
    "gradcam_maps",
    "imagenet_label_map",
    "normalise",
    "rise_mask_bank",
    "rise_maps",
    "rise_memory_bytes",
    "top_classes",
]
