"""EigenCAM for seven object detectors: a batched torch engine and the pytorch-grad-cam reference.

Public API:
    get_detector(name) -> DetectorSpec                     registry entry; DETECTOR_NAMES lists them
    build_detector(name, state_dict=None, **kw) -> model   offline, random init or strict load, eval mode
    resolve_layer(model, "backbone.body.layer4") -> module
    eigencam_maps(spec, model, images) -> (B, H, W)        [0, 1] RGB in, float32 [0, 1] maps out
    eigencam_from_activations(acts) -> (B, h, w)           the projection, sign rule and scaling alone
    crop_padded_maps(maps, (H, W), valid) -> (B, H, W)     padding of the model input cropped, resized, min-max
    pin_sign(projections, activations)                     the sign rule
    convert_yolov5_checkpoint(path, out, allow_pickle=...) official yolov5s.pt -> safetensors
The pytorch-grad-cam references, `gradcam_eigencam_maps` and `gradcam_detector_maps`, live in
`saliencylab.cam.gradcam_reference` and are not imported here (grad-cam pulls in scikit-learn,
SciPy and ttach); DETECTOR_NAMES comes from the torch-free `saliencylab.cam.names`, everything
else is imported on first use. Conventions, layers and speed: docs/cam.md.
"""

from saliencylab.cam.names import DETECTOR_NAMES
from saliencylab.lazyexports import lazy_exports

# the rest imports torch, so each name is imported from its module on first use (PEP 562): the CLI's
# `--help` reads DETECTOR_NAMES without loading torch
__getattr__ = lazy_exports(
    __name__,
    {
        "DETECTORS": "detectors",
        "DetectorSpec": "detectors",
        "Preprocess": "detectors",
        "build_detector": "detectors",
        "get_detector": "detectors",
        "crop_padded_maps": "eigencam",
        "eigencam_from_activations": "eigencam",
        "eigencam_maps": "eigencam",
        "pin_sign": "eigencam",
        "resolve_layer": "layers",
        "convert_yolov5_checkpoint": "yolov5_checkpoint",
    },
)

__all__ = [
    "DETECTORS",
    "DETECTOR_NAMES",
    "DetectorSpec",
    "Preprocess",
    "build_detector",
    "convert_yolov5_checkpoint",
    "crop_padded_maps",
    "eigencam_from_activations",
    "eigencam_maps",
    "get_detector",
    "pin_sign",
    "resolve_layer",
]
