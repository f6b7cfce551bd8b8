"""Explanation maps of an image classifier: guided back-propagation, Grad-CAM and RISE (docs/xai.md).

`classifier` builds the explained torchvision ResNet and maps labels to class indices; `gbp`,
`gradcam` and `rise` are the methods, pure and batched: normalised (B, 3, H, W) images and (B,)
target classes in, (B, H, W) maps out, on the images' device.
"""

from saliencylab.lazyexports import lazy_exports
from saliencylab.xai.defaults import DEFAULT_CELLS, DEFAULT_MASKS, DEFAULT_P1, IMAGENET, INPUT_SIZE, NOTEBOOK

# the methods and the classifier import torch: their names are imported on first use, so `--help` stays light
__getattr__ = lazy_exports(
    __name__,
    {
        "ARCHITECTURES": "classifier",
        "IMAGENET_MEAN": "classifier",
        "IMAGENET_STD": "classifier",
        "NUM_CLASSES": "classifier",
        "LabelMap": "classifier",
        "build_classifier": "classifier",
        "get_architecture": "classifier",
        "imagenet_label_map": "classifier",
        "normalise": "classifier",
        "top_classes": "classifier",
        "gbp_gradients": "gbp",
        "gbp_maps": "gbp",
        "gradcam_maps": "gradcam",
        "RiseMasks": "rise",
        "check_rise_memory": "rise",
        "check_rise_params": "rise",
        "rise_mask_bank": "rise",
        "rise_maps": "rise",
        "rise_memory_bytes": "rise",
    },
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
