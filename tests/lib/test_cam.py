"""EigenCAM engine: golden maps, the sign rule, a float64 SVD reference, grad-cam equivalence, contracts, errors."""

from __future__ import annotations

import gc
import math
import weakref
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from saliencylab.cam import (
    build_detector,
    crop_padded_maps,
    eigencam_from_activations,
    eigencam_maps,
    get_detector,
    pin_sign,
)
from saliencylab.cam import eigencam as eigencam_module
from saliencylab.cam.gradcam_reference import gradcam_detector_maps, gradcam_eigencam_maps
from saliencylab.cam.layers import resolve_layer

# Golden: rows (3,1), (1,3), (0,0), (0,0); centred RᵀR = [[6,2],[2,6]], v1 = ±(1,1)/√2,
# p = ±√2·(1, 1, -1, -1). The channel-mean map (2, 2, 0, 0) picks +, so the top row lights up.
GOLDEN_ACTS = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]], [[1.0, 3.0], [0.0, 0.0]]]])
GOLDEN_MAP = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
# Tie: equal centred channel norms and v1 = (1,-1)/√2 make corr(p, channel mean) = 0 exactly,
# so upstream's |min| > |max| rule decides: p ∝ (3+√3, -1-√3, -1-√3, √3-1) keeps its sign.
_R3 = math.sqrt(3.0)
TIE_ACTS = torch.tensor([[[[4.0, 0.0], [0.0, 0.0]], [[1 - _R3, 1 + _R3], [1 + _R3, 1 - _R3]]]], dtype=torch.float64)
TIE_MAP = torch.tensor([[[1.0, 0.0], [0.0, (_R3 - 1) / (3 + _R3)]]])


def _reference_maps(acts: torch.Tensor) -> torch.Tensor:
    """Float64 NumPy full SVD per image (grad-cam's get_2d_projection), pin_sign, ReLU, min-max."""
    out = []
    for a in acts.double().numpy():
        rows = a.reshape(a.shape[0], -1).T
        rows = rows - rows.mean(axis=0)
        _, _, vt = np.linalg.svd(rows, full_matrices=True)
        p = pin_sign(torch.from_numpy(rows @ vt[0])[None], torch.from_numpy(a)[None])[0].clamp_min(0)
        p = p - p.min()
        out.append((p / (1e-7 + p.max())).view(a.shape[1:]))
    return torch.stack(out).float()


def _negated_eigh(monkeypatch):
    real = torch.linalg.eigh

    def flipped(*args, **kwargs):
        values, vectors = real(*args, **kwargs)
        return values, -vectors

    monkeypatch.setattr(torch.linalg, "eigh", flipped)


def _calibrate_batchnorm(module: nn.Module, x: torch.Tensor) -> None:
    """Random init leaves MobileNetV3/YOLOv5 activations near 1e-9..1e-16, where grad-cam's absolute
    1e-7 in the min-max dominates; set BatchNorm statistics from one noise batch so maps are O(1)."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        module(x)
        for bn in norms:
            bn.eval()


@pytest.fixture(scope="module")
def detector():
    """Models built once per module: detector(name, **builder_kwargs), seeded, BatchNorm calibrated."""
    cache: dict = {}

    def get(name: str, **kwargs) -> nn.Module:
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            torch.manual_seed(0)
            model = build_detector(name, **kwargs)
            if name == "ssdlite":
                _calibrate_batchnorm(model.backbone, torch.rand(2, 3, 128, 128) * 2 - 1)
            elif name == "yolov5s":
                _calibrate_batchnorm(model, torch.rand(2, 3, 128, 128))
            cache[key] = model
        return cache[key]

    return get


# --- the projection and the sign rule ------------------------------------------------------------

def test_golden_map():
    maps = eigencam_from_activations(GOLDEN_ACTS)
    assert maps.dtype == torch.float32 and maps.shape == (1, 2, 2)
    torch.testing.assert_close(maps, GOLDEN_MAP, atol=1e-6, rtol=0)


def test_golden_tie_uses_upstream_rule():
    torch.testing.assert_close(eigencam_from_activations(TIE_ACTS), TIE_MAP, atol=1e-6, rtol=0)


@pytest.mark.parametrize("acts", [GOLDEN_ACTS, TIE_ACTS, torch.rand(3, 64, 5, 7), torch.rand(2, 8, 6, 6)])
def test_map_does_not_depend_on_the_eigenvector_sign(acts, monkeypatch):
    before = eigencam_from_activations(acts)
    _negated_eigh(monkeypatch)
    torch.testing.assert_close(eigencam_from_activations(acts), before, atol=1e-6, rtol=0)


def test_pin_sign_is_invariant_to_flipping_the_projection():
    acts = torch.rand(4, 16, 5, 5, generator=torch.Generator().manual_seed(1))
    rows = acts.flatten(2).mT - acts.flatten(2).mT.mean(dim=1, keepdim=True)
    p = torch.linalg.svd(rows, full_matrices=False).U[..., 0]
    torch.testing.assert_close(pin_sign(p, acts), pin_sign(-p, acts))
    corr = (pin_sign(p, acts) * (acts.mean(1).flatten(1) - acts.mean((1, 2, 3))[:, None])).sum(1)
    assert (corr > 0).all()


@pytest.mark.parametrize("shape", [(3, 64, 5, 7), (2, 8, 6, 6)], ids=["hw<C", "hw>C"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_float64_svd_reference(shape, dtype):
    g = torch.Generator().manual_seed(2)
    # A dominant direction keeps v1 well defined, so float32 agrees too.
    acts = torch.relu(torch.randn(shape, generator=g) + 3 * torch.randn(shape[0], 1, *shape[2:], generator=g))
    ours = eigencam_from_activations(acts, dtype=dtype)
    torch.testing.assert_close(ours, _reference_maps(acts), atol=1e-5 if dtype == torch.float64 else 1e-3, rtol=0)


def test_batch_equals_single_and_inputs_untouched():
    acts = torch.rand(3, 32, 6, 5, generator=torch.Generator().manual_seed(3))
    copy = acts.clone()
    batch = eigencam_from_activations(acts)
    singles = torch.cat([eigencam_from_activations(a[None]) for a in acts])
    torch.testing.assert_close(batch, singles)
    assert torch.equal(acts, copy)


def test_bad_activations():
    with pytest.raises(ValueError, match=r"\(B, C, h, w\).*\(2, 3\)"):
        eigencam_from_activations(torch.rand(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        eigencam_from_activations(torch.full((1, 2, 2, 2), float("nan")))


def test_padding_is_cropped_before_the_final_scaling():
    maps = torch.zeros(1, 4, 4)
    maps[0, :, 3] = 1.0  # the right quarter is padding, and bright
    maps[0, 1, 1] = 0.5
    copy = maps.clone()
    uncropped = crop_padded_maps(maps, (6, 8), (1.0, 1.0))
    cropped = crop_padded_maps(maps, (6, 6), (1.0, 0.75))
    assert cropped.shape == (1, 6, 6) and torch.equal(maps, copy)
    torch.testing.assert_close(cropped, eigencam_module._minmax(uncropped[:, :, :6].flatten(1)).view(1, 6, 6))
    assert uncropped[0, :, -1].amax() == pytest.approx(1.0, abs=1e-5)
    assert cropped.amax() == pytest.approx(1.0, abs=1e-5) and cropped[0, :, -1].amax() < 0.9


def test_crop_of_padding_at_the_bottom_golden():
    # 2×1 grid over a canvas whose lower half is padding: the image sees only the top cell
    maps = torch.tensor([[[0.25], [1.0]]])
    cropped = crop_padded_maps(maps, (2, 1), (0.5, 1.0))
    # canvas 4×1 from bilinear (align_corners=False): 0.25, 0.4375, 0.8125, 1.0; keep the top 2, min-max
    torch.testing.assert_close(cropped, torch.tensor([[[0.0], [1.0]]]), atol=1e-6, rtol=0)
    assert crop_padded_maps(maps, (4, 1), (1.0, 1.0))[0, :, 0].tolist() == pytest.approx([0, 0.25, 0.75, 1], abs=1e-6)


@pytest.mark.parametrize("maps,valid,match", [
    (torch.rand(1, 1, 4, 4), (1.0, 1.0), r"\(B, h, w\).*\(1, 1, 4, 4\)"),
    (torch.rand(1, 4, 4), (0.0, 1.0), r"\(0, 1\]"),
    (torch.rand(1, 4, 4), (1.0, 1.5), r"\(0, 1\]"),
])
def test_crop_padded_maps_errors(maps, valid, match):
    with pytest.raises(ValueError, match=match):
        crop_padded_maps(maps, (8, 8), valid)


# --- equivalence with pytorch-grad-cam 1.5.7 -----------------------------------------------------

EQUIVALENCE = [  # (name, spec overrides, builder kwargs, batch size)
    ("faster_rcnn", {"internal_resize": False}, {}, 2),
    ("faster_rcnn", {}, {"min_size": 160, "max_size": 160}, 2),  # torchvision's resize included
    ("mask_rcnn", {"internal_resize": False}, {}, 2),
    ("retinanet", {"internal_resize": False}, {}, 2),
    ("ssd300", {}, {}, 1),  # resizes to 300 itself (grad-cam runs every extra block, which need that size)
    ("ssdlite", {}, {}, 2),
    ("yolov5s", {}, {}, 2),
    ("detr", {}, {}, 2),
]


EQUIVALENCE_IDS = [f"{e[0]}{'-resize' * bool(e[2])}" for e in EQUIVALENCE]


@pytest.mark.parametrize("name,overrides,kwargs,batch", EQUIVALENCE, ids=EQUIVALENCE_IDS)
def test_equals_gradcam_eigencam(detector, name, overrides, kwargs, batch):
    spec = replace(get_detector(name), **overrides)
    model = detector(name, **kwargs)
    images = torch.rand(batch, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    ours = eigencam_maps(spec, model, images)
    reference = gradcam_eigencam_maps(spec, model, images)
    assert ours.shape == reference.shape == (batch, 128, 128)
    assert (ours - reference).abs().max().item() <= 1e-4
    assert ours.amax(dim=(1, 2)).min() > 0.99  # non-trivial maps: each reaches 1


@pytest.mark.parametrize("name,grid", [("ssdlite", (10, 10)), ("yolov5s", (4, 4))])  # ssdlite resizes to 320
def test_gradcam_on_the_full_detector_equals_ours(detector, name, grid):
    spec, model = get_detector(name), detector(name)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    reference = gradcam_detector_maps(spec, model, images)
    assert reference.shape == (2, 128, 128) and reference.amax(dim=(1, 2)).min() > 0.99  # BatchNorm calibrated
    assert (eigencam_maps(spec, model, images) - reference).abs().max().item() <= 1e-4
    assert gradcam_detector_maps(spec, model, images[:1], resize=False).shape == (1, *grid)  # stride 32


def test_gradcam_on_the_full_detector_refuses_internal_resize_off(detector):
    spec = replace(get_detector("faster_rcnn"), internal_resize=False)
    with pytest.raises(ValueError, match="always runs its own resize"):
        gradcam_detector_maps(spec, detector("faster_rcnn"), torch.rand(1, 3, 64, 64))


# --- engine contract -----------------------------------------------------------------------------

def test_engine_contract(detector):
    spec = replace(get_detector("faster_rcnn"), internal_resize=False)
    model = detector("faster_rcnn")
    images = torch.rand(3, 3, 96, 128, generator=torch.Generator().manual_seed(5))
    copy = images.clone()
    maps = eigencam_maps(spec, model, images)
    assert maps.shape == (3, 96, 128) and maps.dtype == torch.float32 and maps.device == images.device
    assert maps.min() >= 0 and maps.max() <= 1 and not maps.is_inference()
    assert torch.equal(images, copy)
    assert not resolve_layer(model, spec.target_layer)._forward_hooks
    singles = torch.cat([eigencam_maps(spec, model, list(images[i : i + 1])) for i in range(3)])
    torch.testing.assert_close(maps, singles, atol=1e-5, rtol=0)
    torch.testing.assert_close(eigencam_maps(spec, model, images, forward_batch=2), maps, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="forward_batch"):
        eigencam_maps(spec, model, images, forward_batch=0)
    assert eigencam_maps(spec, model, images[:1], output_size=(20, 30)).shape == (1, 20, 30)
    other = eigencam_maps(spec, model, images[:1], target_layer="backbone.body.layer3")
    assert other.shape == (1, 96, 128) and not torch.allclose(other, maps[:1])


def test_no_activation_outlives_the_call(detector):
    spec, model = get_detector("yolov5s"), detector("yolov5s")
    seen = []
    handle = resolve_layer(model, spec.target_layer).register_forward_hook(lambda m, a, out: seen.append(weakref.ref(out)))
    try:
        eigencam_maps(spec, model, torch.rand(2, 3, 64, 64))
    finally:
        handle.remove()
    gc.collect()
    assert len(seen) == 1 and seen[0]() is None


def test_internal_resize_with_padding_gives_input_size(detector):
    spec = get_detector("faster_rcnn")
    model = detector("faster_rcnn", min_size=100, max_size=200)  # 72×120 -> 100×167, padded to 128×192
    maps = eigencam_maps(spec, model, torch.rand(1, 3, 72, 120))
    assert maps.shape == (1, 72, 120) and maps.max() == pytest.approx(1.0, abs=1e-5)


def test_hook_released_after_an_error(detector):
    spec, model = get_detector("yolov5s"), detector("yolov5s")

    def broken_run(self, model, x):
        raise RuntimeError("boom")

    broken = replace(spec, adapter=type("Broken", (type(spec.adapter),), {"run": broken_run})())
    with pytest.raises(RuntimeError, match="boom"):
        eigencam_maps(broken, model, torch.rand(1, 3, 64, 64))
    assert not resolve_layer(model, spec.target_layer)._forward_hooks


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "images,match",
    [
        ([torch.rand(3, 64, 64), torch.rand(3, 64, 96)], r"share one size.*\(3, 64, 64\).*\(3, 64, 96\)"),
        (torch.rand(2, 1, 64, 64), r"\(B, 3, H, W\).*\(2, 1, 64, 64\).*grayscale"),
        (torch.rand(2, 64, 64, 3), r"\(2, 64, 64, 3\).*HWC"),
        (torch.rand(3, 64, 64), r"\(3, 64, 64\)"),
        ((torch.rand(1, 3, 64, 64) * 255).to(torch.uint8), "uint8.*255"),
        (torch.rand(1, 3, 64, 64) * 255, r"\[0, 1\].*divide by 255"),
    ],
    ids=["mixed-sizes", "grayscale", "hwc", "no-batch", "uint8", "0-255"],
)
def test_bad_images(detector, images, match):
    with pytest.raises(ValueError, match=match):
        eigencam_maps(get_detector("yolov5s"), detector("yolov5s"), images)


def test_yolov5_needs_stride_multiple(detector):
    with pytest.raises(ValueError, match=r"100×64 is not a multiple of 32.*96×64"):
        eigencam_maps(get_detector("yolov5s"), detector("yolov5s"), torch.rand(1, 3, 100, 64))


def test_unknown_layer_lists_candidates(detector):
    model = detector("faster_rcnn")
    with pytest.raises(ValueError, match=r"backbone\.body has no child 'layer5'.*layer4.*Closest.*backbone\.body\.layer"):
        eigencam_maps(get_detector("faster_rcnn"), model, torch.rand(1, 3, 64, 64), target_layer="backbone.body.layer5")


def test_layer_outside_the_feature_path(detector):
    with pytest.raises(ValueError, match=r"'rpn\.head\.conv' is outside 'backbone'"):
        eigencam_maps(get_detector("faster_rcnn"), detector("faster_rcnn"), torch.rand(1, 3, 64, 64),
                      target_layer="rpn.head.conv")


def test_non_convolutional_layer(detector):
    with pytest.raises(ValueError, match="not a tensor|expected"):
        eigencam_maps(get_detector("detr"), detector("detr"), torch.rand(1, 3, 64, 64),
                      target_layer="model.encoder.layers.0")


def test_out_of_memory_names_the_batch(detector, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(eigencam_module, "eigencam_from_activations", oom)
    with pytest.raises(torch.OutOfMemoryError, match="batch of 4 .*smaller batch, e.g. 2"):
        eigencam_maps(get_detector("yolov5s"), detector("yolov5s"), torch.rand(4, 3, 64, 64))
