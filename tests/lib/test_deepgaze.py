"""DeepGaze IIE: checkpoint layout, strict loading, normalised output, batching, input guards, centre bias."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from saliencylab.checkpoints import load_state_dict_strict, state_dict_layout
from saliencylab.deepgaze import build_deepgaze_iie, centerbias_from_template, check_image_range, uniform_centerbias
from saliencylab.deepgaze.efficientnet import static_same_padding
from saliencylab.deepgaze.inputs import check_image
from saliencylab.deepgaze.finalizer import (
    Finalizer,
    blur_after_nearest_matrices,
    finalize_heads,
    gaussian_taps,
    upsample_to,
)
from saliencylab.deepgaze.heads import fixation_selection_heads, saliency_heads
from saliencylab.deepgaze.readout import LayerNorm, build_fixation_selection_network, build_saliency_network

KEYS_FILE = Path(__file__).resolve().parents[1] / "data" / "deepgaze2e_keys.json"


def _make_nontrivial(model: nn.Module, seed: int) -> None:
    """Random init leaves EfficientNet's features near 1e-10, below the LayerNorm eps, so every
    map would just be the centre bias. Calibrate BatchNorm statistics on noise and perturb the
    readout parameters so that the comparisons below exercise every tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for member in model.models:
            norms = {m: m.momentum for m in member.features.modules() if isinstance(m, nn.BatchNorm2d)}
            for bn in norms:
                bn.weight.mul_(1 + 0.2 * torch.randn(bn.weight.shape, generator=g))
                bn.reset_running_stats()
                bn.momentum = None  # running statistics = plain average over the calibration batch
                bn.train()
            member.features(torch.rand(2, 3, 96, 128, generator=g) * 255)
            for bn, momentum in norms.items():
                bn.momentum = momentum
                bn.eval()
            for net in member.fixation_selection_networks:
                net.conv2.weight.mul_(8)
        for name, p in model.named_parameters():
            if ".features." in name:
                continue
            if name.endswith("gauss.sigma"):
                p.copy_(2 + 4 * torch.rand((), generator=g))
            elif name.endswith("center_bias_weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif ".conv" not in name:  # LayerNorm and Bias parameters
                p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def model():
    m = build_deepgaze_iie(seed=0)
    _make_nontrivial(m, seed=0)
    return m


def _images(batch, height, width, seed=0, dtype=torch.float32):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 255


def _gaussian_template(n=1024):
    axis = torch.linspace(-1, 1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return (-(xx**2 + 2 * yy**2) * 4).numpy()


# --- checkpoint layout and loading -----------------------------------------------------------


def test_state_dict_equals_the_checkpoint_layout(model):
    committed = json.loads(KEYS_FILE.read_text())
    expected = [(name, tuple(shape), dtype) for name, shape, dtype in committed["keys"]]
    assert committed["n_keys"] == len(expected) == 5461
    assert state_dict_layout(model) == expected  # names, order, shapes, dtypes
    assert len(list(model.parameters())) == committed["n_parameter_keys"]
    normaliser_buffers = [n for n, _ in model.named_buffers() if ".features.features.0." in n]
    assert len(normaliser_buffers) == 8  # ImageNet mean and std of 4 normalisers: non-persistent
    assert not any(".features.features.0." in name for name, _, _ in expected)


def test_strict_load_round_trip_through_a_file(model, tmp_path):
    path = tmp_path / "deepgaze2e.pth"
    torch.save(model.state_dict(), path)
    other = build_deepgaze_iie(seed=1)
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    load_state_dict_strict(other, torch.load(path, weights_only=True))
    images, bias = _images(1, 64, 96), uniform_centerbias((64, 96))[None]
    with torch.inference_mode():
        torch.testing.assert_close(other(images, bias), model(images, bias), rtol=0, atol=0)


def test_mismatched_state_dict_lists_keys_and_shapes(model):
    state = dict(model.state_dict())
    before = state["models.3.finalizers.29.gauss.sigma"].clone()
    del state["models.0.finalizers.7.center_bias_weight"]
    state["models.0.finalizers.7.extra"] = torch.zeros(1)
    state["models.1.saliency_networks.0.conv0.weight"] = torch.zeros(8, 2048, 1, 1)
    state["models.3.finalizers.29.gauss.sigma"] = torch.tensor(99.0)
    with pytest.raises(ValueError) as info:
        load_state_dict_strict(model, state)
    message = str(info.value)
    assert "missing keys (1)" in message and "models.0.finalizers.7.center_bias_weight" in message
    assert "unexpected keys (1)" in message and "models.0.finalizers.7.extra" in message
    assert "shape mismatches (1)" in message
    assert "models.1.saliency_networks.0.conv0.weight: checkpoint (8, 2048, 1, 1), model (8, 2416, 1, 1)" in message
    assert torch.equal(model.state_dict()["models.3.finalizers.29.gauss.sigma"], before)  # nothing loaded


def test_mismatch_report_is_truncated_with_counts(model):
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing keys \(5461\)[\s\S]*and 5451 more[\s\S]*'module.'"):
        load_state_dict_strict(model, state)


# --- forward pass ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 64), (70, 90)])
def test_output_is_a_normalised_log_density(model, size):
    images = _images(2, *size)
    bias = centerbias_from_template(_gaussian_template(), size).float().expand(2, *size)
    with torch.inference_mode():
        out = model(images, bias)
    assert out.shape == (2, 1, *size) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.logsumexp(dim=(2, 3)), torch.zeros(2, 1), rtol=0, atol=1e-5)


def test_batch_of_three_equals_three_single_runs(model):
    images = _images(3, 96, 128, seed=3, dtype=torch.float64)
    template = _gaussian_template()
    bias = torch.stack([centerbias_from_template(template * s, (96, 128)) for s in (0.5, 1.0, 2.0)])
    original = images.clone()
    model64 = copy.deepcopy(model).double()  # the copy's hooks must write into the copy
    with torch.inference_mode():
        batched = model64(images, bias)
        single = torch.cat([model64(images[i : i + 1], bias[i : i + 1]) for i in range(3)])
    assert torch.equal(images, original)  # input not modified
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-10)
    assert (batched[0] - batched[1]).abs().max() > 1e-2  # the items really differ
    assert all(not member.features._captured for member in model64.models)  # no features kept


def test_train_mode_keeps_backbones_frozen(model):
    model.train()
    try:
        assert all(not m.training for m in model.models[0].features.modules())
        assert model.models[0].saliency_networks.training
        assert not any(p.requires_grad for p in model.models[2].features.parameters())
    finally:
        model.eval()


# --- input guards ------------------------------------------------------------------------------


def test_image_range_guard():
    check_image_range(_images(2, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]-scaled.*\[1\].*0-255 RGB"):
        check_image_range(torch.stack([_images(1, 8, 8)[0], torch.rand(3, 8, 8)]))
    for bad in (_images(1, 8, 8) - 10, _images(1, 8, 8) + 10):
        with pytest.raises(ValueError, match=r"RGB in \[0, 255\]"):
            check_image_range(bad)
    with pytest.raises(ValueError, match="NaN"):
        check_image_range(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="floating-point"):
        check_image_range(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_single_image_guard_names_no_batch_index():
    check_image(_images(1, 64, 64)[0])
    with pytest.raises(ValueError, match=r"^image is black or \[0, 1\]-scaled: its maximum is 0 <= 1.001"):
        check_image(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match=r"shape \(3, H, W\), got \(1, 3, 64, 64\)"):
        check_image(_images(1, 64, 64))
    with pytest.raises(ValueError, match="at least 64x64"):
        check_image(_images(1, 32, 64)[0])
    with pytest.raises(ValueError, match="NaN"):
        check_image(torch.full((3, 64, 64), float("inf")))


def test_forward_refuses_bad_images_and_centre_bias(model):
    bias = uniform_centerbias((64, 64))[None]
    with pytest.raises(ValueError, match="0-255 RGB"):
        model(torch.rand(1, 3, 64, 64), bias)
    with pytest.raises(ValueError, match="at least 64x64"):
        model(_images(1, 32, 64), uniform_centerbias((32, 64))[None])
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        model(_images(1, 64, 64)[0], bias)
    with pytest.raises(ValueError, match="centre bias of shape \\(1, 64, 64\\) is required"):
        model(_images(1, 64, 64))
    with pytest.raises(ValueError, match=r"must have shape \(B, H, W\) = \(1, 64, 64\).*\(64, 64\)"):
        model(_images(1, 64, 64), bias[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        model(_images(1, 64, 64), torch.full((1, 64, 64), float("nan")))


# --- centre bias -------------------------------------------------------------------------------


def test_template_resize_golden_and_normalised():
    template = np.arange(9, dtype=np.float64).reshape(3, 3)
    out = centerbias_from_template(template, (5, 2))
    rows, cols = [0, 1, 1, 2, 2], [0, 2]  # ⌊o·(n_in−1)/(n_out−1) + ½⌋, corners aligned
    expected = torch.from_numpy(template[np.ix_(rows, cols)])
    torch.testing.assert_close(out, expected - expected.logsumexp(dim=(0, 1)))
    assert out.dtype == torch.float64
    assert centerbias_from_template(torch.from_numpy(template).float(), (4, 4)).dtype == torch.float32


@pytest.mark.parametrize("size", [(70, 90), (512, 512), (333, 1500), (1, 7)])
def test_template_resize_matches_the_scipy_recipe(size):
    ndimage = pytest.importorskip("scipy.ndimage")
    template = np.random.default_rng(0).normal(size=(1024, 1024))
    reference = ndimage.zoom(template, (size[0] / 1024, size[1] / 1024), order=0, mode="nearest")
    reference = reference - np.log(np.exp(reference).sum())
    np.testing.assert_allclose(centerbias_from_template(template, size).numpy(), reference, rtol=0, atol=1e-12)


def test_template_and_size_errors():
    with pytest.raises(ValueError, match=r"2-D \(h, w\).*\(1, 4, 4\)"):
        centerbias_from_template(np.zeros((1, 4, 4)), (8, 8))
    with pytest.raises(ValueError, match="NaN or inf"):
        centerbias_from_template(np.array([[0.0, np.inf]]), (8, 8))
    with pytest.raises(ValueError, match="two positive ints"):
        centerbias_from_template(np.zeros((4, 4)), (0, 8))
    with pytest.raises(TypeError, match="numpy array or torch.Tensor"):
        centerbias_from_template([[0.0]], (8, 8))


def test_uniform_centerbias():
    bias = uniform_centerbias((6, 7), dtype=torch.float64)
    assert bias.shape == (6, 7) and bool((bias == bias[0, 0]).all())
    assert abs(float(bias.logsumexp(dim=(0, 1)))) < 1e-12


# --- building blocks against their definitions --------------------------------------------------


def test_static_same_padding_for_a_456_input():
    assert static_same_padding(3, 1) == (1, 1, 1, 1)
    assert static_same_padding(5, 1) == (2, 2, 2, 2)
    assert static_same_padding(3, 2) == (0, 1, 0, 1)
    assert static_same_padding(5, 2) == (1, 2, 1, 2)
    assert static_same_padding(1, 1) == (0, 0, 0, 0)


def test_layernorm_matches_the_upstream_definition():
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    norm = LayerNorm(5).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    weight = norm.weight[:, None, None].expand(5, 3, 4)
    bias = norm.bias[:, None, None].expand(5, 3, 4)
    reference = F.layer_norm(x, (5, 3, 4), weight, bias, 1e-12)
    torch.testing.assert_close(norm(x), reference, rtol=0, atol=1e-12)


def test_gaussian_taps_golden_and_zero_padded():
    taps = gaussian_taps(torch.tensor([1.3, 0.4]), torch.float64)
    assert taps.shape == (2, 2 * 4 + 1)  # radii ⌈3.9⌉ = 4 and ⌈1.2⌉ = 2
    d = torch.arange(-4, 5, dtype=torch.float64)
    expected = torch.exp(-0.5 * (d / 1.3) ** 2)
    torch.testing.assert_close(taps[0], expected / expected.sum())
    assert bool((taps[1, :2] == 0).all() and (taps[1, -2:] == 0).all())
    torch.testing.assert_close(taps.sum(dim=1), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigmas"):
        gaussian_taps(torch.tensor([1.0, 0.0]), torch.float32)


def test_blur_matrix_of_an_impulse_is_the_taps_and_keeps_constants():
    taps = gaussian_taps(torch.tensor([1.3]), torch.float64)
    matrix = blur_after_nearest_matrices(taps, torch.arange(21), 21)[0]  # no resize
    torch.testing.assert_close(matrix[6:15, 10], taps[0])  # column = blurred impulse at pixel 10
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(21, dtype=torch.float64))  # replicate padding


def _reference_finalizer(readout, centerbias, sigma, weight):
    """Upstream's per-head finalizer, step by step (see finalizer.py), for one (B, 1, h, w) map."""
    half = F.interpolate(centerbias[:, None], scale_factor=0.5, recompute_scale_factor=False)[:, 0]
    out = F.interpolate(readout, size=half.shape[1:])
    radius = math.ceil(3 * sigma)
    d = torch.arange(-radius, radius + 1, dtype=out.dtype)
    taps = torch.exp(-0.5 * (d / sigma) ** 2)
    taps = taps / taps.sum()
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    out = out[:, 0] + weight * half
    out = F.interpolate(out[:, None], size=centerbias.shape[1:])[:, 0]
    return out - out.logsumexp(dim=(1, 2), keepdim=True)


@pytest.mark.parametrize("size", [(64, 64), (99, 131)])
def test_finalize_heads_matches_the_per_head_reference(size):
    g = torch.Generator().manual_seed(1)
    grid = (math.ceil(size[0] / 32), math.ceil(size[1] / 32))
    readouts = torch.randn(2, 3, *grid, generator=g, dtype=torch.float64) * 3
    centerbias = torch.randn(2, *size, generator=g, dtype=torch.float64)
    finalizers = [Finalizer().double() for _ in range(3)]
    for finalizer, sigma, weight in zip(finalizers, (0.7, 3.2, 9.5), (0.5, 1.0, 1.4)):
        with torch.no_grad():
            finalizer.gauss.sigma.fill_(sigma)
            finalizer.center_bias_weight.fill_(weight)
    half = finalize_heads(readouts, centerbias, finalizers)
    out = upsample_to(half, size)
    for k, (sigma, weight) in enumerate(zip((0.7, 3.2, 9.5), (0.5, 1.0, 1.4))):
        reference = _reference_finalizer(readouts[:, k : k + 1], centerbias, sigma, weight)
        torch.testing.assert_close(out[:, k], reference, rtol=0, atol=1e-12)


def test_stacked_heads_match_the_per_head_networks():
    g = torch.Generator().manual_seed(2)
    saliency_nets = [build_saliency_network(12).double() for _ in range(3)]
    fixation_nets = [build_fixation_selection_network().double() for _ in range(3)]
    with torch.no_grad():
        for p in [p for net in (*saliency_nets, *fixation_nets) for p in net.parameters()]:
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    features = torch.randn(2, 12, 3, 4, generator=g, dtype=torch.float64)
    saliency = saliency_heads(features, saliency_nets)
    torch.testing.assert_close(saliency, torch.cat([net(features) for net in saliency_nets], dim=1))
    expected = torch.cat([net(saliency[:, k : k + 1]) for k, net in enumerate(fixation_nets)], dim=1)
    torch.testing.assert_close(fixation_selection_heads(saliency, fixation_nets), expected)
