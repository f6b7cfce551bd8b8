"""Map metrics (MAE, CC, KL, SIM) and the shared helpers: golden values, properties, edge cases.

Golden maps, 2×3, values chosen so every metric can be worked out by hand:

    p = [[0, .5, 1],      y = [[0, 0, 1],
         [1, .5, 0]]           [1, 0, 0]]
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench import reference_metrics as ref
from saliencylab.metrics import (
    KL_EPS,
    cc,
    is_constant,
    kldiv,
    mae,
    minmax_normalise,
    sim,
    sum_normalise,
)

P = torch.tensor([[[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]], dtype=torch.float64)
Y = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
MAP_METRICS = {"mae": mae, "cc": cc, "kldiv": kldiv, "sim": sim}


def random_maps(batch: int, seed: int, shape=(17, 23), dtype=torch.float64) -> torch.Tensor:
    """Seeded non-negative maps, some with ties (quantised) so tie paths are exercised."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(batch, *shape, generator=g, dtype=torch.float64)
    maps[::3] = torch.round(maps[::3] * 4) / 4
    return maps.to(dtype)


def test_golden_values_on_hand_computed_maps():
    # MAE: |p − y| = [0, .5, 0, 0, .5, 0] -> 1/6
    assert mae(P, Y).item() == pytest.approx(1 / 6, abs=1e-15)
    # CC: p − p̄ = ±.5 or 0, y − ȳ = −1/3 or 2/3: Σ = 1, Σ(p − p̄)² = 1, Σ(y − ȳ)² = 4/3 -> √3/2
    assert cc(P, Y).item() == pytest.approx(math.sqrt(3) / 2, abs=1e-15)
    # KL: P = p/3, G = y/2; G is 1/2 at two pixels where P = 1/3 -> 2 · ½ · ln(1.5)
    assert kldiv(P, Y).item() == pytest.approx(math.log(1.5), abs=1e-12)
    # SIM: both maps already span [0, 1]; Σ min(P, G) = 1/3 + 1/3
    assert sim(P, Y).item() == pytest.approx(2 / 3, abs=1e-15)


def test_identical_maps_score_perfectly():
    x = random_maps(4, seed=1)
    assert torch.equal(mae(x, x), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(cc(x, x), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(kldiv(x, x), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(sim(x, x), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-12)


def test_cc_is_invariant_to_affine_rescaling_and_flips_sign_with_it():
    p, y = random_maps(3, seed=2), random_maps(3, seed=3)
    base = cc(p, y)
    torch.testing.assert_close(cc(3.5 * p - 7.0, y), base, rtol=0, atol=1e-12)
    torch.testing.assert_close(cc(p, 0.01 * y + 2.0), base, rtol=0, atol=1e-12)
    torch.testing.assert_close(cc(-p, y), -base, rtol=0, atol=1e-12)
    torch.testing.assert_close(cc(y, p), base, rtol=0, atol=1e-12)


def test_sim_is_invariant_to_affine_rescaling_of_either_map():
    p, y = random_maps(3, seed=4), random_maps(3, seed=5)
    torch.testing.assert_close(sim(2.0 * p + 1.0, y), sim(p, y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MAP_METRICS))
def test_batch_equals_single_maps(name):
    metric = MAP_METRICS[name]
    p, y = random_maps(5, seed=6), random_maps(5, seed=7)
    batched = metric(p, y)
    singles = torch.cat([metric(p[i : i + 1], y[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", sorted(MAP_METRICS))
def test_matches_numpy_reference_in_float64(name):
    p, y = random_maps(6, seed=8), random_maps(6, seed=9)
    ours = MAP_METRICS[name](p, y)
    reference = [getattr(ref, name)(p[i].numpy(), y[i].numpy()) for i in range(6)]
    np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MAP_METRICS))
def test_float32_runs_in_float32_and_agrees_with_float64(name):
    p, y = random_maps(3, seed=10), random_maps(3, seed=11)
    single = MAP_METRICS[name](p.float(), y.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), MAP_METRICS[name](p, y), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MAP_METRICS))
def test_inputs_are_not_modified(name):
    p, y = random_maps(2, seed=12), random_maps(2, seed=13)
    p_copy, y_copy = p.clone(), y.clone()
    MAP_METRICS[name](p, y)
    assert torch.equal(p, p_copy) and torch.equal(y, y_copy)


def test_constant_maps_give_defined_values():
    y = random_maps(1, seed=14)
    constant = torch.full_like(y, 0.3)
    assert cc(constant, y).item() == 0.0
    assert cc(y, constant).item() == 0.0
    assert cc(constant, constant).item() == 0.0
    # SIM: a constant map counts as uniform
    expected = np.minimum(1 / y.numel(), ref.to_density(ref.minmax(y[0].numpy()))).sum()
    assert sim(constant, y).item() == pytest.approx(expected, abs=1e-14)
    assert sim(constant, constant).item() == pytest.approx(1.0, abs=1e-14)
    assert math.isfinite(kldiv(constant, y).item())


def test_all_zero_maps_count_as_uniform_densities():
    y = random_maps(1, seed=15)
    zero = torch.zeros_like(y)
    torch.testing.assert_close(sum_normalise(zero), torch.full_like(y, 1 / y.numel()))
    torch.testing.assert_close(kldiv(zero, y), kldiv(torch.ones_like(y), y))
    assert kldiv(y, zero).item() == pytest.approx(kldiv(y, torch.ones_like(y)).item())


def test_minmax_normalise_per_map_and_constant_maps_become_zero():
    x = torch.stack([torch.tensor([[2.0, 4.0], [6.0, 10.0]]), torch.full((2, 2), 5.0)]).double()
    out = minmax_normalise(x)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]], dtype=torch.float64))
    assert torch.equal(out[1], torch.zeros(2, 2, dtype=torch.float64))
    assert torch.equal(is_constant(x), torch.tensor([False, True]))


def test_sum_normalise_sums_to_one_per_map_and_refuses_negative_values():
    x = random_maps(3, seed=16)
    torch.testing.assert_close(sum_normalise(x).sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    x[1, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"non-negative.*\[1\]"):
        sum_normalise(x)
    with pytest.raises(ValueError, match=r"non-negative.*\[1\]"):
        kldiv(x, x.abs())


def test_kl_uses_the_mit_eps():
    # a zero in the prediction where the target has mass costs log(eps + G/eps)
    p = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    y = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    assert kldiv(p, y).item() == pytest.approx(math.log(KL_EPS + 1.0 / KL_EPS), rel=1e-12)


@pytest.mark.parametrize("name", sorted(MAP_METRICS))
def test_nan_is_refused_with_the_batch_indices(name):
    p, y = random_maps(5, seed=17), random_maps(5, seed=18)
    p[1, 2, 3] = float("nan")
    p[3, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"p holds NaN or infinite values at batch indices \[1, 3\]"):
        MAP_METRICS[name](p, y)


@pytest.mark.parametrize("name", sorted(MAP_METRICS))
def test_mismatched_inputs_are_refused(name):
    metric = MAP_METRICS[name]
    p = random_maps(2, seed=19)
    with pytest.raises(ValueError, match="shape mismatch"):
        metric(p, random_maps(2, seed=20, shape=(17, 22)))
    with pytest.raises(TypeError, match="dtype mismatch"):
        metric(p, p.float())
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        metric(p[0], p[0])
    with pytest.raises(TypeError, match="float32 or float64"):
        metric(p.to(torch.int64), p.to(torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        metric(p.numpy(), p)


def test_outputs_follow_the_input_device_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    p, y = random_maps(3, seed=21), random_maps(3, seed=22)
    for name, metric in MAP_METRICS.items():
        out = metric(p.cuda(), y.cuda())
        assert out.device.type == "cuda", name
        torch.testing.assert_close(out.cpu(), metric(p, y), rtol=1e-10, atol=1e-12)
