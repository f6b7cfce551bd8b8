"""Guided back-propagation (Springenberg et al., ICLR-W 2015) of a classifier, batched, reduced to one map per image.

Guided back-propagation is the gradient of the target logit with respect to the input, where
every ReLU passes back only positive gradients at positive inputs: grad_in = grad_out ·
[x > 0] · [grad_out > 0]. We get it with a forward hook on each `nn.ReLU` module that routes the
ReLU's output through `_PositiveGradient` (identity forward, gradient clamped at 0 backward); the
ReLU's own backward supplies the [x > 0] factor. This equals pytorch-grad-cam's
`GuidedBackpropReLUModel` (and captum's `GuidedBackprop`, bit-identical to it, notes §7.1), but runs
a whole batch at once and leaves the model's modules in place (the library swaps them, and works
one image at a time).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from saliencylab.metrics import minmax_normalise
from saliencylab.xai.classifier import check_targets


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward keeps only the positive part of the incoming gradient."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()  # a new tensor, so later in-place ops never touch a view of the ReLU's output

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


def _guide(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    return _PositiveGradient.apply(output)


def gbp_gradients(model: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    """The signed guided-back-propagation gradient of each image's target logit.

    Args:
        model: classifier in eval mode taking normalised input and returning (B, classes) logits;
            its non-linearities must be `nn.ReLU` modules (torchvision ResNets: yes). Not modified
            (hooks live only during the call).
        x: (B, 3, H, W) float32 or float64, normalised RGB, on the model's device. Not modified.
        targets: (B,) int64 class index per image, on x's device.

    Returns:
        (B, 3, H, W) in x's dtype on x's device: ∂y_c/∂x under guided ReLUs, with respect to the
        *normalised* input (as captum and pytorch-grad-cam are used, on normalised tensors).

    Raises:
        TypeError, ValueError: bad targets (`check_targets`), or a model without `nn.ReLU` modules.
    """
    check_targets(targets, x)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"{type(model).__name__} has no nn.ReLU modules: guided back-propagation has nothing to guide")
    handles = [relu.register_forward_hook(_guide) for relu in relus]
    try:
        with torch.enable_grad():
            inputs = x.detach().requires_grad_(True)
            score = model(inputs).gather(1, targets[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return gradient


def gbp_maps(model: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    """Guided back-propagation maps: max over colour channels of |gradient|, min-max scaled per map.

    The channel reduction is the maximum absolute value (Simonyan et al.'s reduction for
    gradient saliency): a pixel is salient if any of its channels moves the logit, whatever the
    sign. Args as `gbp_gradients`.

    Returns:
        (B, H, W) in x's dtype on x's device, in [0, 1]; an all-zero gradient gives all zeros.
    """
    return minmax_normalise(gbp_gradients(model, x, targets).abs().amax(dim=1))
