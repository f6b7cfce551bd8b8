"""Centre-bias log densities for DeepGaze IIE: the MIT1003 template resized to an image, or uniform.

The DeepGaze README recipe loads `centerbias_mit1003.npy` (1024×1024 float64 log density),
resizes it with `scipy.ndimage.zoom(template, (H/h, W/w), order=0, mode='nearest')` and subtracts
its logsumexp. `centerbias_from_template` reproduces that index mapping exactly in torch, without
scipy: output pixel o of an axis of n_out pixels reads input pixel ⌊o·(n_in−1)/(n_out−1) + ½⌋
(corners aligned; pixel 0 when n_out = 1). Note this is *not* PyTorch's `nearest` mapping.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (H, W), two positive ints, got {size!r}") from None
    if height < 1 or width < 1 or (height, width) != tuple(size):
        raise ValueError(f"size must be (H, W), two positive ints, got {size!r}")
    return height, width


def zoom_nearest_indices(n_in: int, n_out: int, device: torch.device | None = None) -> torch.Tensor:
    """Source indices of `scipy.ndimage.zoom(order=0)` along one axis of n_in → n_out pixels.

    Returns:
        (n_out,) int64 tensor with values in [0, n_in − 1].
    """
    if n_out == 1:
        return torch.zeros(1, dtype=torch.int64, device=device)
    # float64 and the same operation order as scipy (o * ((n_in-1)/(n_out-1))), so ties round alike.
    step = (n_in - 1) / (n_out - 1)
    coords = torch.arange(n_out, dtype=torch.float64, device=device) * step
    return torch.floor(coords + 0.5).to(torch.int64).clamp_(0, n_in - 1)


def centerbias_from_template(template: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre-bias log density for an image of `size`, from a log-density template.

    Args:
        template: (h, w) float array or tensor, a log density (e.g. the MIT1003 1024×1024
            template); any additive constant is allowed. Not modified.
        size: (H, W) of the image, positive ints.

    Returns:
        (H, W) tensor, the template resized as `scipy.ndimage.zoom(order=0, mode='nearest')`
        does, minus its logsumexp (so logsumexp over H×W is 0). Same floating dtype and device
        as a tensor template; float64 for a numpy template. Add a batch axis (`[None]` or
        `.expand(B, H, W)`) before passing it to the model.

    Raises:
        ValueError: If `template` is not 2-D, is empty or holds NaN/inf, or `size` is invalid.
        TypeError: If `template` is not a real-valued array or tensor.
    """
    height, width = _size(size)
    if isinstance(template, np.ndarray):
        if not np.issubdtype(template.dtype, np.floating) and not np.issubdtype(template.dtype, np.integer):
            raise TypeError(f"template must be a real-valued array, got dtype {template.dtype}")
        template = torch.from_numpy(np.ascontiguousarray(template, dtype=np.float64))
    elif not isinstance(template, torch.Tensor):
        raise TypeError(f"template must be a numpy array or torch.Tensor, got {type(template).__name__}")
    elif not template.is_floating_point():
        template = template.to(torch.float64)
    if template.ndim != 2:
        raise ValueError(f"template must be 2-D (h, w), got shape {tuple(template.shape)}")
    if template.numel() == 0:
        raise ValueError(f"template is empty (shape {tuple(template.shape)})")
    if not bool(torch.isfinite(template).all()):
        raise ValueError("template contains NaN or inf; it must be a finite log density")
    rows = zoom_nearest_indices(template.shape[0], height, template.device)
    cols = zoom_nearest_indices(template.shape[1], width, template.device)
    resized = template[rows[:, None], cols[None, :]]
    return resized - torch.logsumexp(resized.reshape(-1), dim=0)


def uniform_centerbias(
    size: tuple[int, int], dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """The uniform centre bias: (H, W) filled with −log(H·W), a log density with logsumexp 0.

    Args:
        size: (H, W), positive ints.
        dtype: Floating dtype of the result.
        device: Device of the result (default: the default device).

    Raises:
        ValueError: If `size` is invalid.
    """
    height, width = _size(size)
    return torch.full((height, width), -math.log(height * width), dtype=dtype, device=device)
