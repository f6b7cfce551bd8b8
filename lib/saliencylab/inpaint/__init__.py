"""Selective inpainting with Deep Image Prior: generator networks, the batched fitting engine, the pixel frame."""

from saliencylab.inpaint.canvas import composite, known_from_erase_mask, padded_size, reflect_pad
from saliencylab.inpaint.engine import FitResult, FitSettings, InpaintItem, fit_group, inpaint_images
from saliencylab.inpaint.nets import NetSpec, build_net, stack_nets

__all__ = [
    "FitResult",
    "FitSettings",
    "InpaintItem",
    "NetSpec",
    "build_net",
    "composite",
    "fit_group",
    "inpaint_images",
    "known_from_erase_mask",
    "padded_size",
    "reflect_pad",
    "stack_nets",
]
