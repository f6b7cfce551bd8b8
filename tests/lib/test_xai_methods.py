"""Grad-CAM and guided back-propagation: batched maps equal pytorch-grad-cam's per-image ones on random-init ResNets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from saliencylab.xai import build_classifier, gbp_gradients, gbp_maps, gradcam_maps, normalise, top_classes


@pytest.fixture(scope="module")
def resnet():
    return build_classifier("resnet18", None, seed=0)


def images(batch: int, side: int, seed: int = 0) -> torch.Tensor:
    return normalise(torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed)))


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize(("arch", "side"), [("resnet18", 96), ("resnet50", 64)])
def test_gradcam_equals_pytorch_grad_cam(arch, side):
    model = build_classifier(arch, None, seed=0)
    x = images(3, side)
    targets = torch.tensor([0, 281, 999])
    before = x.clone()
    ours = gradcam_maps(model, model.layer4, x, targets)
    assert torch.equal(x, before) and hooks(model) == 0
    reference_model = copy.deepcopy(model)
    with GradCAM(reference_model, target_layers=[reference_model.layer4]) as cam:
        reference = np.stack([cam(x[i : i + 1], targets=[ClassifierOutputTarget(int(t))])[0] for i, t in enumerate(targets)])
    assert ours.shape == (3, side, side) and ours.dtype == torch.float32
    # grad-cam min-maxes with a 1e-7 guard before and after OpenCV's float32 resize: measured 2e-6 apart
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5)


def test_gbp_equals_pytorch_grad_cam_guided_backprop(resnet):
    x = images(2, 64, seed=1)
    targets = torch.tensor([7, 500])
    before = x.clone()
    gradients = gbp_gradients(resnet, x, targets)
    assert torch.equal(x, before) and hooks(resnet) == 0
    for i, target in enumerate(targets):
        library = GuidedBackpropReLUModel(copy.deepcopy(resnet), device="cpu")  # swaps the copy's ReLUs, one image at a time
        reference = library(x[i : i + 1].clone(), target_category=int(target))  # (H, W, 3) numpy
        np.testing.assert_allclose(gradients[i].permute(1, 2, 0).numpy(), reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    maps = gbp_maps(resnet, x, targets)
    reduced = gradients.abs().amax(dim=1)
    low, high = reduced.amin(dim=(1, 2), keepdim=True), reduced.amax(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(maps, (reduced - low) / (high - low))


def test_gbp_differs_from_the_plain_gradient(resnet):
    x, targets = images(1, 64, seed=2), torch.tensor([3])
    inputs = x.clone().requires_grad_(True)
    resnet(inputs)[0, 3].backward()
    guided = gbp_gradients(resnet, x, targets)
    assert not torch.allclose(guided, inputs.grad)
    resnet.zero_grad()


def test_maps_do_not_depend_on_the_batch(resnet):
    x = images(2, 64, seed=3)
    targets = top_classes(resnet, x)
    for method in (lambda x, t: gradcam_maps(resnet, resnet.layer4, x, t), lambda x, t: gbp_maps(resnet, x, t)):
        batched = method(x, targets)
        alone = method(x[1:], targets[1:])
        torch.testing.assert_close(batched[1], alone[0], rtol=0, atol=1e-5)
        assert float(batched.min()) == 0.0 and float(batched.max()) == 1.0


def test_a_model_without_relu_modules_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    with pytest.raises(ValueError, match="no nn.ReLU"):
        gbp_maps(model, torch.zeros(1, 3, 8, 8), torch.tensor([0]))
