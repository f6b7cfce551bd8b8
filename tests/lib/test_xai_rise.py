"""RISE: upstream's masks (skimage), batched maps equal to a per-image float64 reference, a toy model's region found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.transform import resize as skimage_resize
from torch import nn

from saliencylab.seeding import seeded_init, torch_generator
from saliencylab.xai import build_classifier, check_rise_memory, normalise, rise_mask_bank, rise_maps, rise_memory_bytes
from saliencylab.xai.rise import upsampling_matrix


def upstream_masks(bank) -> np.ndarray:
    """eclique/RISE `generate_masks` given our grids and shifts: skimage order-1 'reflect' resize, then crop. (N, H, W) float64."""
    (height, width), cells = bank.size, bank.grid.shape[1]
    cell = np.ceil(np.array(bank.size) / cells).astype(int)
    up_size = (cells + 1) * cell
    out = np.empty((len(bank), height, width))
    for i, (grid, (dy, dx)) in enumerate(zip(bank.grid.numpy().astype("float32"), bank.shifts.numpy())):
        up = skimage_resize(grid, up_size, order=1, mode="reflect", anti_aliasing=False)
        out[i] = up[dy : dy + height, dx : dx + width]
    return out


def reference_rise(model: nn.Module, image: torch.Tensor, target: int, masks: np.ndarray, p1: float, gpu_batch: int = 50) -> torch.Tensor:
    """Upstream's `RISE.forward` for one image, in float64: the whole masked stack, softmax of all
    classes, saliency of every class = p^T masks / N / p1; returns the target's (H, W) map."""
    n, height, width = masks.shape
    m = torch.from_numpy(masks)[:, None]  # (N, 1, H, W)
    stack = m * image.double()[None]
    with torch.no_grad():
        p = torch.cat([torch.softmax(model(stack[i : i + gpu_batch]), dim=1) for i in range(0, n, gpu_batch)])
    saliency = (p.T @ m.view(n, height * width)).view(-1, height, width) / n / p1
    return saliency[target]


def test_upsampling_matrix_is_skimage_reflect_resize():
    rng = np.random.default_rng(0)
    for cells, size in [(7, 224), (8, 232), (5, 18), (3, 8)]:
        grid = rng.random((cells, cells))
        weights = upsampling_matrix(cells, size).numpy()
        expected = skimage_resize(grid, (size, size), order=1, mode="reflect", anti_aliasing=False)
        np.testing.assert_allclose(weights @ grid @ weights.T, expected, atol=1e-12)
        np.testing.assert_allclose(weights.sum(1), 1.0)


@pytest.mark.parametrize("size", [(40, 40), (36, 52)])
def test_masks_equal_upstream_construction(size):
    bank = rise_mask_bank(24, 6, 0.5, size, torch_generator(0, "rise"))
    masks = bank.expand(0, len(bank), dtype=torch.float64).numpy()
    np.testing.assert_allclose(masks, upstream_masks(bank), atol=1e-6)  # skimage works in float32
    assert masks.min() >= 0 and masks.max() <= 1
    cell = np.ceil(np.array(size) / 6)
    assert (bank.shifts.numpy() < cell).all() and (bank.shifts.numpy() >= 0).all()
    np.testing.assert_array_equal(bank.expand(5, 9), torch.from_numpy(masks[5:9]).float())  # any range expands alike


def tiny_classifier() -> nn.Module:
    """A random-init 10-class CNN with BatchNorm and ReLU, small enough for a float64 reference on 2 cores."""
    with seeded_init(0, "test", "tiny"):
        layers = [nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def test_batched_rise_equals_per_image_reference():
    model = tiny_classifier()
    x = normalise(torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(0)))
    targets = torch.tensor([3, 0, 9])
    bank = rise_mask_bank(200, 5, 0.5, (32, 40), torch_generator(0, "rise"))
    masks = upstream_masks(bank)
    ours = rise_maps(model, x, targets, bank, chunk=64)  # float32, chunks of 64 masks x 3 images per pass (the last 8)
    reference = torch.stack([reference_rise(model.double(), x[i], int(targets[i]), masks, bank.p1) for i in range(3)])
    model.float()
    assert ours.dtype == torch.float32 and ours.shape == (3, 32, 40)
    np.testing.assert_allclose(ours.double().numpy(), reference.numpy(), atol=1e-6)
    ours64 = rise_maps(model.double(), x.double(), targets, bank, chunk=200)
    np.testing.assert_allclose(ours64.numpy(), reference.numpy(), atol=1e-12)


class RegionLogit(nn.Module):
    """Two-class toy: logit 0 = 8 x (the mean of channel 0 over rows 8..23, columns 24..39, minus 0.5); logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, 0, 8:24, 24:40].mean(dim=(1, 2))
        return torch.stack([8 * (region - 0.5), torch.zeros_like(region)], dim=1)


def test_toy_model_map_concentrates_on_its_region():
    x = torch.ones(1, 3, 48, 48)
    bank = rise_mask_bank(512, 6, 0.5, (48, 48), torch_generator(3, "rise"))
    saliency = rise_maps(RegionLogit(), x, torch.tensor([0]), bank, chunk=128)[0]
    inside = torch.zeros(48, 48, dtype=torch.bool)
    inside[8:24, 24:40] = True
    top = saliency.flatten().topk(int(inside.sum())).indices
    assert inside.flatten()[top].float().mean() > 0.8  # the most salient pixels are the region's
    assert saliency[inside].mean() > saliency[~inside].mean() + 0.1
    assert saliency[inside].min() > saliency[~inside].mean()


def test_seeded_bank_and_chunking_give_the_same_maps():
    model = build_classifier("resnet18", None, seed=0)  # a real ResNet at 32 px: its layer4 is 1x1
    x = normalise(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    targets = torch.tensor([1, 2])
    first = rise_mask_bank(24, 5, 0.3, (32, 32), torch_generator(7, "rise"))
    again = rise_mask_bank(24, 5, 0.3, (32, 32), torch_generator(7, "rise"))
    other = rise_mask_bank(24, 5, 0.3, (32, 32), torch_generator(8, "rise"))
    assert torch.equal(first.grid, again.grid) and torch.equal(first.shifts, again.shifts)
    assert not torch.equal(first.grid, other.grid)
    one_pass, many = rise_maps(model, x, targets, first, chunk=24), rise_maps(model, x, targets, again, chunk=7)
    torch.testing.assert_close(one_pass, many, rtol=0, atol=1e-6)
    single = rise_maps(model, x[1:], targets[1:], first, chunk=24)  # an image alone gets the map it gets in a batch
    torch.testing.assert_close(single[0], one_pass[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("masks", "cells", "p1", "message"),
    [(0, 7, 0.5, "at least 1 mask"), (10, 1, 0.5, "grid size s"), (10, 33, 0.5, "shorter side 32"), (10, 7, 0.0, "p1"), (10, 7, 1.5, "p1")],
)
def test_out_of_range_settings_are_refused(masks, cells, p1, message):
    with pytest.raises(ValueError, match=message):
        rise_mask_bank(masks, cells, p1, (32, 40), torch_generator(0, "rise"))


def test_memory_estimate_and_the_advised_chunk():
    size = (224, 224)
    assert rise_memory_bytes(2, 20, size, 32) > rise_memory_bytes(2, 10, size, 32) > rise_memory_bytes(1, 10, size, 32)
    budget = rise_memory_bytes(4, 50, size, 32) + 10
    check_rise_memory(4, 50, size, 32, budget)  # fits
    with pytest.raises(ValueError, match=r"use --rise-chunk 50 or less") as error:
        check_rise_memory(4, 400, size, 32, budget)
    assert "GiB" in str(error.value)
    with pytest.raises(ValueError, match="lower --batch-size"):
        check_rise_memory(4000, 1, size, 32, budget)


def test_bad_calls_are_refused():
    model, bank = RegionLogit(), rise_mask_bank(8, 4, 0.5, (48, 48), torch_generator(0, "rise"))
    with pytest.raises(ValueError, match="resize the images"):
        rise_maps(model, torch.ones(1, 3, 40, 48), torch.tensor([0]), bank, chunk=4)
    with pytest.raises(ValueError, match="chunk"):
        rise_maps(model, torch.ones(1, 3, 48, 48), torch.tensor([0]), bank, chunk=0)
    with pytest.raises(ValueError, match="outside the classifier's"):
        rise_maps(model, torch.ones(1, 3, 48, 48), torch.tensor([1000]), bank, chunk=4)
