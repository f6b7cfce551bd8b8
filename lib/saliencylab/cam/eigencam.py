"""Batched EigenCAM: run a detector only up to its target layer and project on the first principal component.

EigenCAM (Muhammad & Yeasin 2020, arXiv 2008.00299): reshape the activation A (C, h, w) to
R (h·w, C), centre its columns, project on the first right singular vector v1, ReLU, min-max.
This is pytorch-grad-cam's `EigenCAM` (get_2d_projection + BaseCAM scaling) computed in torch
for a whole batch, with v1's sign fixed (`pin_sign`) instead of left to the SVD routine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from saliencylab.cam.detectors import DetectorSpec
from saliencylab.cam.inputs import image_batch
from saliencylab.cam.layers import capture_activation, is_submodule, resolve_layer

SCALE_EPS = 1e-7  # grad-cam's scale_cam_image: (x - min) / (1e-7 + max(x - min))
TIE_CORRELATION = 1e-4  # |corr(p, channel-mean map)| at or below this is a tie for pin_sign


def pin_sign(projections: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Flip each projection so that it correlates positively with the channel-mean activation map.

    The first principal direction is defined only up to sign, and since the ReLU comes after
    the projection, the two signs select complementary regions (grad-cam issue #315). Our rule:
    keep the sign for which the Pearson correlation of p with mean_c(A) over pixels is > 0.
    As p has zero mean, that is the sign of Σ_pixels p · mean_c(A) = λ1 · Σ_c v1[c] / C: the
    principal direction must point towards more activation summed over channels. When the
    correlation is within ±TIE_CORRELATION (no usable information, e.g. rounding noise),
    upstream's Seg-Eigen-CAM rule decides instead: flip when |min p| > |max p|.

    Args:
        projections: (B, N) float, one projection per image over N = h·w pixels, zero mean.
        activations: (B, C, h, w) float, the activations the projections come from.

    Returns:
        (B, N), same dtype and device; a new tensor (inputs are not modified).
    """
    mean_map = activations.mean(dim=1).flatten(1).to(projections.dtype)
    mean_map = mean_map - mean_map.mean(dim=1, keepdim=True)
    score = (projections * mean_map).sum(dim=1)
    scale = projections.norm(dim=1) * mean_map.norm(dim=1)
    tie = score.abs() <= TIE_CORRELATION * scale
    tie_flip = projections.amin(dim=1).abs() > projections.amax(dim=1).abs()
    flip = torch.where(tie, tie_flip, score < 0)
    return torch.where(flip[:, None], -projections, projections)


def _first_component_projection(rows: torch.Tensor) -> torch.Tensor:
    """(B, N, C) centred rows -> (B, N) projections R·v1, sign arbitrary; eigh on the smaller Gram matrix."""
    n, c = rows.shape[-2:]
    if n <= c:
        values, vectors = torch.linalg.eigh(rows @ rows.mT)  # (B, N, N), eigenvalues ascending
        # R v1 = σ1 u1, with u1 the top eigenvector of R Rᵀ and σ1² its eigenvalue
        return vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()
    values, vectors = torch.linalg.eigh(rows.mT @ rows)  # (B, C, C)
    return (rows @ vectors[..., -1:]).squeeze(-1)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per row of (B, N): grad-cam's (x - min) / (1e-7 + max(x - min))."""
    x = x - x.amin(dim=1, keepdim=True)
    return x / (SCALE_EPS + x.amax(dim=1, keepdim=True))


def eigencam_from_activations(activations: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """EigenCAM maps at the activations' resolution: centred first-PC projection, sign pinned, ReLU, min-max.

    Args:
        activations: (B, C, h, w) float, finite; any device. Not modified.
        dtype: precision of the centring, Gram matrix and eigendecomposition. float64 (default)
            keeps the top eigenvector accurate when the two largest eigenvalues are close;
            float32 is faster on GPUs with slow float64.

    Returns:
        (B, h, w) float32 on the activations' device, each map min-max scaled to [0, 1] as in
        grad-cam (max 1 unless the map is constant; typically about half the pixels are 0).

    Raises:
        ValueError: If `activations` is not 4-D or holds NaN or infinity.
    """
    if activations.ndim != 4:
        raise ValueError(f"activations must be (B, C, h, w); got shape {tuple(activations.shape)}")
    if not torch.isfinite(activations).all():
        raise ValueError("activations hold NaN or infinity; check the model's weights and inputs")
    b, _, h, w = activations.shape
    rows = activations.to(dtype).flatten(2).mT  # (B, C, h·w) -> (B, h·w, C): one row per pixel
    rows = rows - rows.mean(dim=1, keepdim=True)  # centre every channel over the pixels
    projections = pin_sign(_first_component_projection(rows), activations)
    return _minmax(projections.clamp_min(0)).view(b, h, w).float()


def crop_padded_maps(maps: torch.Tensor, size: tuple[int, int], valid: tuple[float, float]) -> torch.Tensor:
    """Maps over a padded model input -> maps over the image: padding cropped, resized to H×W, min-max again.

    R-CNN-type transforms resize an image and pad the batch at the bottom and right to a multiple
    of 32, so a feature map covers image plus padding. This crops the map to the resized
    image's extent (the top-left `valid` fraction of each side) and resizes that part to H×W:
    the map is resized bilinearly (`align_corners=False`, as cv2 `INTER_LINEAR` upsamples) to the
    canvas round(H / valid_h) × round(W / valid_w), whose top-left H×W is the image, and cut
    there. Without padding (`valid` = (1, 1)) this is a plain resize. The final min-max is
    grad-cam's (BaseCAM.aggregate_multi_layers rescales the resized map).

    `eigencam_maps` applies it to every map. To compare grad-cam's maps with ours on padded
    inputs, apply it to grad-cam's map before grad-cam's own resize
    (`gradcam_reference.gradcam_detector_maps(..., resize=False)`), not to its H×W output.

    Args:
        maps: (B, h, w) float, e.g. EigenCAM maps at the feature-grid resolution, covering the
            whole padded model input; any device. Not modified.
        size: (H, W) of the original image, the output size.
        valid: (fraction of rows, fraction of columns) of the padded input that the resized
            image covers, each in (0, 1]; `ModelInput.valid` from the detector's adapter.

    Returns:
        (B, H, W) float32 on the maps' device, each map min-max scaled to [0, 1] (max 1 unless
        constant) as (x - min) / (1e-7 + max(x - min)).

    Raises:
        ValueError: If `maps` is not 3-D or a `valid` fraction is outside (0, 1].
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, h, w); got shape {tuple(maps.shape)}")
    if not all(0 < v <= 1 for v in valid):
        raise ValueError(f"valid fractions must lie in (0, 1]; got {tuple(valid)}")
    height, width = size
    canvas = (round(height / valid[0]), round(width / valid[1]))
    resized = F.interpolate(maps[:, None].float(), size=canvas, mode="bilinear", align_corners=False)
    return _minmax(resized[:, 0, :height, :width].flatten(1)).view(-1, height, width)


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _layer_activations(
    spec: DetectorSpec, model: nn.Module, layer: nn.Module, images: torch.Tensor, forward_batch: int | None
) -> tuple[torch.Tensor, tuple[float, float]]:
    """(B, C, h, w) output of `layer` for RGB [0, 1] `images`, and the valid fraction of the model input."""
    with torch.inference_mode():
        model_input = spec.adapter.model_input(model, spec.preprocess(images), spec.internal_resize)
        # NHWC lets oneDNN (CPU) and cuDNN (GPU) pick their faster convolution kernels; same values.
        x = model_input.tensor.contiguous(memory_format=torch.channels_last)
        step = forward_batch or len(x)
        chunks = [
            capture_activation(layer, lambda: spec.adapter.run(model, x[i : i + step])) for i in range(0, len(x), step)
        ]
        activations = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return activations, model_input.valid


def eigencam_maps(
    spec: DetectorSpec,
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    target_layer: str | None = None,
    output_size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float64,
    forward_batch: int | None = None,
) -> torch.Tensor:
    """EigenCAM maps of a batch, running `model` only as far as the target layer.

    Steps: `spec.preprocess`; the model's own transform when `spec.internal_resize` (else
    normalisation only); the feature path up to the layer, where a hook stops the forward pass;
    `eigencam_from_activations` for the whole batch; bilinear resize to the output size; min-max
    again. The forward runs under `torch.inference_mode()` in channels-last layout; no
    activation outlives the call and the hook is always removed.

    Args:
        spec: the detector's registry entry (`get_detector(name)`), possibly `replace`d.
        model: the detector `build_detector(spec)` returned, on any device, in eval mode.
        images: (B, 3, H, W) float RGB in [0, 1] (not ImageNet-normalised: `spec.preprocess`
            does what the model needs), or a sequence of (3, H, W) of one size. Moved to the
            model's device for the forward pass; not modified.
        target_layer: dotted module path; None uses `spec.target_layer`.
        output_size: (H_out, W_out) of the maps; None gives the input's H×W.
        dtype: precision of the eigendecomposition (see `eigencam_from_activations`).
        forward_batch: images per forward pass (the eigendecomposition still takes the whole
            batch at once); None runs the batch in one pass, best on a GPU. On a CPU, 1 or 2 is
            faster per image for 800-px ResNet-50 inputs (docs/cam.md).

    Returns:
        (B, H_out, W_out) float32 in [0, 1] on the images' device, one map per image, each
        min-max scaled (max 1 unless constant). Maps of a batch equal those of single images.

    Raises:
        ValueError: For bad images (see `image_batch`), an unknown layer (the message lists
            candidates), a layer outside the part of the model the adapter runs, a layer whose
            output is not (B, C, h, w), or `forward_batch` < 1.
        torch.OutOfMemoryError: Re-raised with the batch size and a smaller one to try.
    """
    batch = image_batch(images, spec.size_multiple)
    if forward_batch is not None and forward_batch < 1:
        raise ValueError(f"forward_batch must be None or >= 1, got {forward_batch}")
    layer_path = spec.target_layer if target_layer is None else target_layer
    layer = resolve_layer(model, layer_path)
    root = resolve_layer(model, spec.adapter.feature_root) if spec.adapter.feature_root else model
    if not is_submodule(root, layer):
        raise ValueError(f"layer {layer_path!r} is outside {spec.adapter.feature_root!r}, the part of "
                         f"{spec.name} the engine runs; pick a layer under it")
    size = tuple(output_size) if output_size is not None else tuple(batch.shape[-2:])
    device = _model_device(model)
    try:
        activations, valid = _layer_activations(spec, model, layer, batch.to(device), forward_batch)
        if activations.ndim != 4 or activations.shape[0] != batch.shape[0]:
            raise ValueError(f"layer {layer_path!r} gave shape {tuple(activations.shape)}, expected "
                             f"({batch.shape[0]}, C, h, w); pick a convolutional layer")
        with torch.no_grad():  # outside inference mode, so the result is an ordinary tensor
            maps = crop_padded_maps(eigencam_from_activations(activations, dtype), size, valid)
    except torch.OutOfMemoryError as error:
        raise torch.OutOfMemoryError(
            f"out of memory computing EigenCAM for a batch of {batch.shape[0]} images of "
            f"{batch.shape[-2]}×{batch.shape[-1]} with {spec.name} on {device}; "
            f"try a smaller batch, e.g. {max(1, batch.shape[0] // 2)}, or forward_batch"
        ) from error
    return maps.to(batch.device)
