"""Deep Image Prior: grouped nets equal separate nets, the pixel frame, and the batched engine vs one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliencylab.inpaint import (
    FitSettings,
    InpaintItem,
    NetSpec,
    build_net,
    composite,
    inpaint_images,
    known_from_erase_mask,
    padded_size,
    reflect_pad,
    stack_nets,
)
from saliencylab.inpaint.engine import _Plateau

CPU = torch.device("cpu")
TINY_RESNET = NetSpec("resnet", width=8, depth=2, input_channels=4)
TINY_SKIP = NetSpec("skip", width=8, depth=2, skip_channels=4, input_channels=4)
SPECS = [TINY_RESNET, TINY_SKIP, NetSpec("skip", width=6, depth=2, skip_channels=0, input_channels=3)]


def _item(key: str, h: int, w: int, dtype=torch.float32, seed: int = 0) -> InpaintItem:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    hole = (ys - h / 2) ** 2 + (xs - w / 3) ** 2 < (min(h, w) / 5) ** 2  # one round blob
    return InpaintItem(key, image.to(dtype), ~hole)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.kind}{s.skip_channels}")
def test_grouped_net_equals_separate_nets_forward_and_backward(spec):
    nets = []
    for i in range(3):
        torch.manual_seed(i)
        nets.append(build_net(spec, 1).double())
    state = torch.random.get_rng_state()
    grouped = stack_nets(spec, nets).double()
    assert torch.equal(torch.random.get_rng_state(), state)  # stacking draws nothing from the global RNG
    side = spec.min_side * 2
    x = torch.rand(3, spec.input_channels, side, side, dtype=torch.float64)
    separate = torch.cat([net(x[i : i + 1]) for i, net in enumerate(nets)], 1)
    together = grouped(x.reshape(1, -1, side, side))  # (1, G*C, H, W) group-major
    assert together.shape == (1, 9, side, side) and 0 < together.min() and together.max() < 1
    torch.testing.assert_close(together, separate, rtol=0, atol=1e-12)
    separate.square().sum().backward()
    together.square().sum().backward()
    for name, param in grouped.named_parameters():
        expected = torch.cat([dict(net.named_parameters())[name].grad for net in nets])
        torch.testing.assert_close(param.grad, expected, rtol=1e-9, atol=1e-11)


def test_net_sizes():
    assert (TINY_RESNET.multiple, TINY_RESNET.min_side) == (1, 2)
    assert (TINY_SKIP.multiple, TINY_SKIP.min_side) == (4, 8)
    assert (NetSpec("skip", depth=5).multiple, NetSpec("skip", depth=5).min_side) == (32, 64)
    assert padded_size((17, 33), 8, 16) == (24, 40)
    assert padded_size((5, 3), 8, 16) == (16, 16)
    assert padded_size((5, 3), 1, 2) == (5, 3)
    with pytest.raises(ValueError, match="network must be"):
        NetSpec("unet")


def test_reflect_pad_golden_and_repeated_mirroring():
    row = torch.tensor([[[1.0, 2.0, 3.0]]])  # (1, 1, 3)
    assert reflect_pad(row, (1, 9)).tolist() == [[[1, 2, 3, 2, 1, 2, 3, 2, 1]]]
    square = torch.arange(4.0).reshape(1, 2, 2)
    assert reflect_pad(square, (3, 3)).tolist() == [[[0, 1, 0], [2, 3, 2], [0, 1, 0]]]
    assert reflect_pad(torch.ones(1, 1, 1), (4, 4)).shape == (1, 4, 4)  # a 1-pixel side replicates


def test_known_mask_checks():
    mask = np.zeros((4, 5), np.uint8)
    mask[1, 2] = 255
    known = known_from_erase_mask(mask, (4, 5, 3))
    assert known.dtype == bool and known.sum() == 19 and not known[1, 2]
    with pytest.raises(ValueError, match="hides every pixel"):
        known_from_erase_mask(np.full((4, 5), 255, np.uint8), (4, 5, 3))
    with pytest.raises(ValueError, match="hides no pixel"):
        known_from_erase_mask(np.zeros((4, 5), np.uint8), (4, 5, 3))
    with pytest.raises(ValueError, match="only 0"):
        known_from_erase_mask(mask + 1, (4, 5, 3))
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        known_from_erase_mask(mask, (4, 6, 3))


def test_composite_keeps_known_pixels_bit_identical():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    known = rng.random((6, 7)) > 0.3
    fill = torch.rand(3, 6, 7)
    before = image.copy()
    out = composite(image, known, fill)
    assert np.array_equal(image, before)
    assert np.array_equal(out[known], image[known])
    expected = np.round(fill.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(out[~known].astype(int) - expected[~known]).max() <= 1  # float32 rounding at .5


def test_plateau_rule_golden():
    rule = _Plateau(window=2, eps=0.1)
    # t=4: best before (first 2) 1.0, best of last 2 0.8 -> 20 % better, go on; t=6: 0.8 -> 0.78, 2.5 % -> stop
    assert [rule.stop(v) for v in (1.0, 1.2, 0.8, 0.9, 0.79, 0.78)] == [False] * 5 + [True]
    assert not any(_Plateau(0, 0.1).stop(v) for v in (1.0, 1.0, 1.0, 1.0))


@pytest.mark.parametrize("spec", [TINY_RESNET, TINY_SKIP], ids=lambda s: s.kind)
def test_batched_engine_equals_one_at_a_time(spec):
    sizes = [(12, 14), (12, 14), (12, 13), (7, 5)]  # skip: three pad to 12x16, (7, 5) to 8x8
    settings = FitSettings(net=spec, iterations=6, lr=1e-2)
    # float64: the grouped kernels reproduce the separate ones to rounding
    items64 = [_item(f"k{i}", h, w, torch.float64, seed=i) for i, (h, w) in enumerate(sizes)]
    alone = inpaint_images(items64, settings, 3, batch_size=1, device=CPU)
    together = inpaint_images(items64, settings, 3, batch_size=4, device=CPU)
    for a, b, (h, w) in zip(alone, together, sizes):
        assert a.output.shape == (3, h, w) and a.padded == b.padded
        torch.testing.assert_close(b.output, a.output, rtol=0, atol=1e-9)
    # float32 (what the stage runs): Adam's normalised steps amplify summation-order differences,
    # so after 6 steps outputs agree to a few 1/255 levels
    items32 = [_item(f"k{i}", h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    alone = inpaint_images(items32, settings, 3, batch_size=1, device=CPU)
    together = inpaint_images(items32, settings, 3, batch_size=3, device=CPU)
    for a, b in zip(alone, together):
        assert (a.output - b.output).abs().max() < 0.03
        assert a.final_loss == pytest.approx(b.final_loss, rel=0.05)


def test_rerun_is_bit_identical_and_seed_matters():
    items = [_item("a", 16, 16), _item("b", 16, 16, seed=1)]
    settings = FitSettings(net=TINY_RESNET, iterations=5)
    first = inpaint_images(items, settings, 0, 2, CPU)
    again = inpaint_images(items, settings, 0, 2, CPU)
    other = inpaint_images(items, settings, 1, 2, CPU)
    assert all(torch.equal(a.output, b.output) for a, b in zip(first, again))
    assert not torch.equal(first[0].output, other[0].output)
    assert all(r.iterations == 5 for r in first)


def test_fitting_lowers_the_known_pixel_loss():
    items = [_item("a", 16, 16)]
    short = inpaint_images(items, FitSettings(net=TINY_RESNET, iterations=1, lr=1e-2), 0, 1, CPU)[0]
    long = inpaint_images(items, FitSettings(net=TINY_RESNET, iterations=40, lr=1e-2), 0, 1, CPU)[0]
    assert long.final_loss < 0.5 * short.final_loss


def test_early_stopping_stops_per_image_and_matches_alone():
    items = [_item("a", 12, 12), _item("b", 12, 12, seed=1)]
    settings = FitSettings(net=TINY_RESNET, iterations=100, lr=1e-2, early_stop_window=4, early_stop_eps=0.5)
    together = inpaint_images(items, settings, 0, 2, CPU)
    alone = inpaint_images(items, settings, 0, 1, CPU)
    assert all(8 <= r.iterations < 100 and r.iterations % 4 == 0 for r in together)
    assert [r.iterations for r in together] == [r.iterations for r in alone]


def test_bad_engine_input():
    with pytest.raises(ValueError, match="need image"):
        inpaint_images([InpaintItem("x", torch.rand(3, 4, 4), torch.ones(4, 5, dtype=torch.bool))], FitSettings(), 0, 1, CPU)
    with pytest.raises(ValueError, match="iterations >= 1"):
        FitSettings(iterations=0)
