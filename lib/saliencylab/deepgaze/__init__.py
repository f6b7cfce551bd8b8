"""DeepGaze IIE (Linardos et al. 2021), re-implemented to run offline and load the authors' weights.

Public API:
    build_deepgaze_iie(seed=None) -> DeepGazeIIE      random init, checkpoint-compatible state dict
    model(images, centerbias) -> log density          (B,3,H,W) 0-255 RGB, (B,H,W) -> (B,1,H,W)
    (strict loading with a readable mismatch report: saliencylab.checkpoints.load_state_dict_strict)
    centerbias_from_template(template, size)          MIT1003 template -> (H,W) log density
    uniform_centerbias(size)                          (H,W) filled with -log(H*W)
    check_image_range(images)                         refuses [0,1]-scaled or out-of-range images
"""

from saliencylab.deepgaze.centerbias import centerbias_from_template, uniform_centerbias
from saliencylab.deepgaze.inputs import check_image_range
from saliencylab.deepgaze.model import DeepGazeIIE, build_deepgaze_iie

__all__ = [
    "DeepGazeIIE",
    "build_deepgaze_iie",
    "centerbias_from_template",
    "check_image_range",
    "uniform_centerbias",
]
