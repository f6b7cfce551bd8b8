"""EigenCAM for seven object detectors: a batched torch engine and the pytorch-grad-cam reference.

Public API:
    get_detector(name) -> DetectorSpec                     registry entry; DETECTOR_NAMES lists them
    build_detector(name, state_dict=None, **kw) -> model   offline, random init or strict load, eval mode
    resolve_layer(model, "backbone.body.layer4") -> module
    eigencam_maps(spec, model, images) -> (B, H, W)        [0, 1] RGB in, float32 [0, 1] maps out
    eigencam_from_activations(acts) -> (B, h, w)           the projection, sign rule and scaling alone
    pin_sign(projections, activations)                     the sign rule
    convert_yolov5_checkpoint(path, out, allow_pickle=...) official yolov5s.pt -> safetensors
The pytorch-grad-cam reference, `gradcam_eigencam_maps`, lives in `saliencylab.cam.gradcam_reference`
and is not imported here (grad-cam pulls in scikit-learn, SciPy and ttach). Conventions, layers
and speed: docs/cam.md.
"""

from saliencylab.cam.detectors import (
    DETECTOR_NAMES,
    DETECTORS,
    DetectorSpec,
    Preprocess,
    build_detector,
    get_detector,
)
from saliencylab.cam.eigencam import eigencam_from_activations, eigencam_maps, pin_sign
from saliencylab.cam.layers import resolve_layer
from saliencylab.cam.yolov5_checkpoint import convert_yolov5_checkpoint

__all__ = [
    "DETECTORS",
    "DETECTOR_NAMES",
    "DetectorSpec",
    "Preprocess",
    "build_detector",
    "convert_yolov5_checkpoint",
    "eigencam_from_activations",
    "eigencam_maps",
    "get_detector",
    "pin_sign",
    "resolve_layer",
]
