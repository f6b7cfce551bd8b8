"""The one resampling path for maps before a metric: bilinear, antialiased only when shrinking.

Metrics require equal shapes and never resize on their own. Callers bring the prediction to
the target's grid (the MIT benchmark's convention: the saliency map is resized to the size of
the fixation or ground-truth map) with `resize_to`.
"""

from __future__ import annotations

import numbers

import torch.nn.functional as F
from torch import Tensor

from saliencylab.metrics.inputs import FLOAT_DTYPES


def resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a batch of maps to `size` with bilinear interpolation.

    Convention: `align_corners=False` (pixel centres at half-integer positions, as PIL and
    OpenCV do), and antialiasing only when the map shrinks along at least one axis (then
    torch's antialiased bilinear filter widens the triangle kernel along the shrinking axis;
    along a growing axis it is plain bilinear). The MIT MATLAB code uses bicubic `imresize`;
    we use bilinear because it never overshoots, so non-negative maps stay non-negative and
    min-max scaled maps stay in [0, 1].

    Args:
        x: (B, H, W) float32 or float64 maps. Not modified.
        size: target (height, width), positive integers.

    Returns:
        (B, height, width) in x's dtype on x's device; a copy of x when the size already matches.

    Raises:
        TypeError: x is not a float32/float64 tensor.
        ValueError: x is not (B, H, W) or `size` is not two positive integers.
    """
    if not isinstance(x, Tensor) or x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be a float32 or float64 tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 3:
        raise ValueError(f"x must have shape (B, H, W), got {tuple(x.shape)}")
    if len(size) != 2 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"size must be (height, width) with positive integers, got {size!r}")
    height, width = int(size[0]), int(size[1])
    if (height, width) == tuple(x.shape[1:]):
        return x.clone()
    shrinking = height < x.shape[1] or width < x.shape[2]
    # interpolate wants (B, C, H, W): the maps become one channel each
    out = F.interpolate(x[:, None], size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)
    return out[:, 0]
