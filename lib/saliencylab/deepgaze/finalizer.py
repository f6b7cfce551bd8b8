"""Turns the readout maps of K heads into log densities: upsample, blur, add centre bias, normalise.

Upstream (per head, `deepgaze_pytorch.modules.Finalizer`), with every resize PyTorch `nearest`:
  1. downscale the (B, H, W) centre bias by a fixed ½ (pixels (2i, 2j)) to (B, H₂, W₂);
  2. resize the (B, 1, h, w) readout map to H₂ × W₂;
  3. blur along H, then W, with a Gaussian of the head's σ: taps exp(−½(d/σ)²), |d| ≤ ⌈3σ⌉,
     normalised to sum 1, replicate padding;
  4. add `center_bias_weight` × the downscaled centre bias;
  5. resize to H × W and subtract the logsumexp over H × W.

Here steps 2–3 are one small matrix per axis and head (the blur applied to the nearest-upsampled
map is linear in the h × w readout), and step 5 is carried out at half resolution: nearest
upsampling only repeats pixels, so the full-resolution logsumexp equals a half-resolution one with
each pixel weighted by how often it is repeated. The caller mixes heads at half resolution and
upsamples once. Against upstream with the same random weights the output differs by ≤ 1e-12 in
float64 and ≤ 2e-6 in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

GAUSS_TRUNCATE = 3  # kernel radius = ⌈3σ⌉
INITIAL_SIGMA = 8.0  # blur σ in pixels of the half-resolution map, learned per head
INITIAL_CENTER_BIAS_WEIGHT = 1.0  # learned per head
SALIENCY_MAP_FACTOR = 2  # the blur and the centre-bias addition run at 1/2 of the image size


class GaussianFilter(nn.Module):
    """Holds one head's learned blur width `sigma` (scalar, state-dict shape `[]`), in pixels."""

    def __init__(self, sigma: float = INITIAL_SIGMA):
        super().__init__()
        self.sigma = nn.Parameter(torch.tensor(sigma, dtype=torch.float32))


class Finalizer(nn.Module):
    """Holds one head's finalising parameters: `gauss.sigma` and `center_bias_weight` (1,).

    `finalize_heads` applies the finalisers of all heads of a member at once.
    """

    def __init__(self):
        super().__init__()
        self.gauss = GaussianFilter()
        self.center_bias_weight = nn.Parameter(torch.tensor([INITIAL_CENTER_BIAS_WEIGHT]))


def gaussian_taps(sigmas: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Normalised Gaussian taps of K heads, zero-padded to the largest radius.

    Args:
        sigmas: (K,) σ in pixels, finite and > 0. Gradients flow to σ; the radii ⌈3σ⌉ are
            computed in `dtype` (as upstream does) and are not differentiated.
        dtype: Floating dtype of the taps.

    Returns:
        (K, 2R + 1) on sigmas' device, R the largest radius; row k holds exp(−½(d/σ_k)²) for
        |d| ≤ ⌈3σ_k⌉, zero beyond, summing to 1.

    Raises:
        ValueError: If a σ is not finite and > 0.
    """
    sigmas = sigmas.to(dtype)
    values = sigmas.detach()
    if not bool(torch.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"Gaussian blur sigmas must be finite and > 0, got {values.tolist()}")
    radii = torch.ceil(GAUSS_TRUNCATE * values)  # (K,)
    largest = int(radii.max())
    offsets = torch.arange(-largest, largest + 1, device=sigmas.device, dtype=dtype)
    taps = torch.exp(-0.5 * (offsets / sigmas[:, None]) ** 2) * (offsets.abs() <= radii[:, None])
    return taps / taps.sum(dim=1, keepdim=True)


def nearest_source_indices(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n_out,) int64: the input pixel PyTorch's `nearest` resize of n_in → n_out pixels reads.

    Read from `F.interpolate` itself, on the device and dtype being resized: the kernel computes
    the scale n_in / n_out in the data's precision (float64 data can map a pixel differently from
    float32), so this is exactly the mapping upstream's resizes use. Half-precision dtypes are
    probed in float32, since they cannot hold every index exactly.
    """
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    probe = torch.arange(n_in, dtype=dtype, device=device).view(1, 1, n_in, 1)
    return F.interpolate(probe, size=(n_out, 1))[0, 0, :, 0].round().long()


def blur_after_nearest_matrices(taps: torch.Tensor, source: torch.Tensor, n_in: int) -> torch.Tensor:
    """Per-head matrices of "nearest-resize, then blur with replicate padding" along one axis.

    Args:
        taps: (K, 2R + 1) from `gaussian_taps`.
        source: (n,) int64, the input pixel each of the n resized pixels reads.
        n_in: Number of input pixels.

    Returns:
        (K, n, n_in) M with (M[k] @ v)[i] = Σ_d taps[k, d] · v[source[clamp(i + d, 0, n − 1)]].
    """
    heads, length = taps.shape
    radius = (length - 1) // 2
    n = source.numel()
    offsets = torch.arange(-radius, radius + 1, device=source.device)
    padded = (torch.arange(n, device=source.device)[:, None] + offsets).clamp_(0, n - 1)  # replicate padding
    columns = source[padded].expand(heads, n, length)
    matrices = taps.new_zeros(heads, n, n_in)
    return matrices.scatter_add(2, columns, taps[:, None, :].expand(heads, n, length))


def finalize_heads(readouts: torch.Tensor, centerbias: torch.Tensor, finalizers: Sequence[Finalizer]) -> torch.Tensor:
    """Log densities of K heads, at half resolution.

    Args:
        readouts: (B, K, h, w) float, the fixation-selection outputs on the readout grid.
        centerbias: (B, H, W) log centre bias at image size, same dtype and device.
        finalizers: K `Finalizer`s, one per head.

    Returns:
        (B, K, ⌊H/2⌋, ⌊W/2⌋) maps whose `nearest` resize to H × W is each head's log density
        (logsumexp over H × W of the resized map is 0); pass them to `upsample_to` after mixing.
    """
    dtype, device = readouts.dtype, readouts.device
    half_bias = F.interpolate(centerbias[:, None], scale_factor=1 / SALIENCY_MAP_FACTOR, recompute_scale_factor=False)
    (height, width), (half_h, half_w), (h, w) = centerbias.shape[1:], half_bias.shape[2:], readouts.shape[2:]
    taps = gaussian_taps(torch.stack([f.gauss.sigma for f in finalizers]), dtype)
    rows = blur_after_nearest_matrices(taps, nearest_source_indices(h, half_h, dtype, device), h)  # (K, H₂, h)
    cols = blur_after_nearest_matrices(taps, nearest_source_indices(w, half_w, dtype, device), w)  # (K, W₂, w)
    weights = torch.cat([f.center_bias_weight for f in finalizers]).to(dtype)
    maps = rows @ readouts @ cols.transpose(1, 2) + weights[:, None, None] * half_bias  # (B, K, H₂, W₂)
    # How often the final H × W resize repeats each half-resolution row and column.
    row_repeats = torch.bincount(nearest_source_indices(half_h, height, dtype, device), minlength=half_h)
    col_repeats = torch.bincount(nearest_source_indices(half_w, width, dtype, device), minlength=half_w)
    log_repeats = row_repeats.to(dtype).log()[:, None] + col_repeats.to(dtype).log()[None, :]
    return maps - torch.logsumexp(maps + log_repeats, dim=(2, 3), keepdim=True)


def upsample_to(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H₂, W₂) → (B, C, H, W) by PyTorch `nearest`, the resize upstream ends with."""
    return F.interpolate(maps, size=tuple(size))
