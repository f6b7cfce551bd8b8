"""Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2) of a classifier, batched: layer gradients, ReLU, bilinear up-sampling, min-max."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliencylab.metrics import minmax_normalise
from saliencylab.xai.classifier import check_targets


def gradcam_maps(model: nn.Module, layer: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    """Grad-CAM maps of the target classes, one backward pass for the whole batch.

    With A (B, K, h, w) the activations of `layer` and y_c the raw logit (pre-softmax) of each
    image's target class: weights α_k = mean over h×w of ∂y_c/∂A_k (eq. 1), map =
    ReLU(Σ_k α_k A_k) (eq. 2), up-sampled to H×W bilinearly (align_corners=False, pixel centres
    at half-integers, as OpenCV's resize) and min-max scaled per map. This is what
    pytorch-grad-cam's `GradCAM` returns (notes §7.1), computed for all images at once: in eval
    mode the images of a batch do not interact, so the summed logit's gradient is each image's own.

    Args:
        model: classifier in eval mode taking normalised input and returning (B, classes) logits.
            Its parameters need not require grad. Not modified (a forward hook on `layer` lives
            only during the call).
        layer: the target module inside `model` (ResNet: `model.layer4`).
        x: (B, 3, H, W) float32 or float64, normalised RGB, on the model's device. Not modified.
        targets: (B,) int64 class index per image, on x's device.

    Returns:
        (B, H, W) in x's dtype on x's device, in [0, 1]; a map whose ReLU'd CAM is constant (e.g.
        all gradients negative) is all zeros.

    Raises:
        TypeError, ValueError: bad targets (`check_targets`), or `layer` never ran in the forward pass.
    """
    check_targets(targets, x)
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(True))
            if len(captured) != 1:
                raise ValueError(f"the target layer ran {len(captured)} times in one forward pass; Grad-CAM needs exactly one")
            activations = captured[0]
            score = logits.gather(1, targets[:, None]).sum()
            (gradients,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activations.detach()).sum(dim=1))
    # interpolate wants (B, C, h, w): each map is one channel
    up = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalise(up)
