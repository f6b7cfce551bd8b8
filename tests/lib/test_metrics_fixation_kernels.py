"""The numba fixation kernels against the torch path (the CUDA implementation, run on CPU): ties, dtypes, edges, memory.

`auc_judd`, `auc_shuffled`, `nss` and `information_gain` run the kernels of
`saliencylab.metrics.fixation_kernels` on CPU tensors; the `*_torch` functions are the batched
torch implementations used on other devices. Both must agree to rounding on every input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from bench import reference_metrics as ref
from saliencylab.metrics import auc_judd, auc_shuffled, fixation_kernels, information_gain, nss
from saliencylab.metrics.auc import auc_judd_torch, auc_shuffled_torch
from saliencylab.metrics.fixations import information_gain_torch, nss_torch

SHAPE = (19, 27)


def maps(kind: str, batch: int, seed: int, shape=SHAPE) -> torch.Tensor:
    """Seeded float64 saliency maps of one kind: distinct values, heavy ties, or constant."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *shape, generator=g, dtype=torch.float64)
    if kind == "quantised":  # few distinct values: every threshold is a large tie block
        return torch.round(x * 3) / 3
    if kind == "constant":
        return torch.full_like(x, 0.375)
    if kind == "crowded":  # thresholds 1 ulp apart in one table cell, far from the outliers
        steps = torch.randint(0, 6, x.shape, generator=g).double()
        crowded = 0.5 + steps * torch.finfo(torch.float64).eps
        crowded[:, 0, :3] = torch.tensor([-1e3, 1e3, 0.5 + 2.5 * torch.finfo(torch.float64).eps])
        return crowded
    return x


def fixation_counts(batch: int, seed: int, share: float, shape=SHAPE) -> torch.Tensor:
    """Seeded fixation count maps (0, 1 or 3 per pixel) with a fixated and a free pixel per map."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, *shape, generator=g)
    counts = (u < share).long() + 2 * (u < share / 3).long()
    counts[:, 0, 0] = 1
    counts[:, -1, -1] = 0
    return counts


def all_four(s: torch.Tensor, f: torch.Tensor, o: torch.Tensor, base: torch.Tensor) -> tuple[dict, dict]:
    """Kernel and torch results of the four metrics on the same inputs."""
    kernels = {
        "auc_judd": auc_judd(s, f),
        "auc_shuffled": auc_shuffled(s, f, o),
        "nss": nss(s, f),
        "information_gain": information_gain(s, f, base),
    }
    torch_path = {
        "auc_judd": auc_judd_torch(s, f),
        "auc_shuffled": auc_shuffled_torch(s, f, o),
        "nss": nss_torch(s, f),
        "information_gain": information_gain_torch(s, f, base),
    }
    return kernels, torch_path


@pytest.mark.parametrize("kind", ["distinct", "quantised", "constant", "crowded"])
@pytest.mark.parametrize("share", [0.02, 0.3])
def test_kernels_equal_the_torch_path_in_float64(kind, share):
    s = maps(kind, 5, seed=1)
    f, o = fixation_counts(5, seed=2, share=share), fixation_counts(5, seed=3, share=0.1)
    base = maps("quantised" if kind == "distinct" else "distinct", 1, seed=4)[0]
    ours, theirs = all_four(s, f, o, base)
    for name in ours:
        assert ours[name].dtype == torch.float64
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-12, msg=name)


def test_auc_judd_with_one_negative_and_many_thresholds():
    # every pixel but one fixated: k ~ n distinct thresholds (a table far above MIN_CELLS) and
    # n − 1 positives; the single negative is placed at the top, the bottom and in a tie
    g = torch.Generator().manual_seed(5)
    s = torch.rand(3, 48, 64, generator=g, dtype=torch.float64)
    s[2] = torch.round(s[2] * 50) / 50
    f = torch.ones(3, 48, 64, dtype=torch.bool)
    f[0, 3, 4] = f[1, 10, 10] = f[2, 20, 30] = False
    s[0, 3, 4], s[1, 10, 10] = 2.0, -1.0
    assert fixation_kernels.cells_for(48 * 64) == fixation_kernels.MAX_CELLS
    torch.testing.assert_close(auc_judd(s, f), auc_judd_torch(s, f), rtol=0, atol=1e-12)
    # negative above every positive: one trapezoid from (0, 0) to (1, 1/P); below every positive: 1
    scores = auc_judd(s, f)
    assert scores[0].item() == pytest.approx(1 / (2 * (48 * 64 - 1)), rel=1e-12) and scores[1].item() == 1.0


def test_kernels_match_the_numpy_reference_on_large_tie_blocks():
    s = maps("quantised", 4, seed=6, shape=(40, 50))
    f, o = fixation_counts(4, seed=7, share=0.05, shape=(40, 50)), fixation_counts(4, seed=8, share=0.2, shape=(40, 50))
    base = maps("distinct", 4, seed=9, shape=(40, 50))
    expected = {
        "auc_judd": [ref.auc_judd(s[i].numpy(), f[i].numpy()) for i in range(4)],
        "auc_shuffled": [ref.auc_shuffled(s[i].numpy(), f[i].numpy(), o[i].numpy()) for i in range(4)],
        "nss": [ref.nss(s[i].numpy(), f[i].numpy()) for i in range(4)],
        "information_gain": [ref.information_gain(s[i].numpy(), f[i].numpy(), base[i].numpy()) for i in range(4)],
    }
    ours, _ = all_four(s, f, o, base)
    for name, values in expected.items():
        np.testing.assert_allclose(ours[name].numpy(), values, rtol=0, atol=1e-12, err_msg=name)


def test_float32_input_gives_float32_output_close_to_float64():
    s = maps("distinct", 4, seed=10)
    f, o = fixation_counts(4, seed=11, share=0.05), fixation_counts(4, seed=12, share=0.1)
    base = maps("distinct", 1, seed=13)[0]
    ours32, torch32 = all_four(s.float(), f, o, base.float())
    ours64, _ = all_four(s.float().double(), f, o, base.float().double())
    for name in ours32:
        assert ours32[name].dtype == torch.float32 and torch32[name].dtype == torch.float32, name
        # the kernels accumulate in float64: equal to the float64 result of the same float32 values
        torch.testing.assert_close(ours32[name].double(), ours64[name], rtol=1e-7, atol=1e-7, msg=name)
        torch.testing.assert_close(ours32[name], torch32[name], rtol=1e-5, atol=1e-5, msg=name)


def test_large_offsets_do_not_cancel():
    # NSS is shift invariant and IG min-max scales first, so the maps shifted by 1e6 must score
    # as the exactly unshifted values (shifted − 1e6 is exact): a one-pass Σx² − (Σx)²/n, or
    # sums of the raw values (the torch path: ~1e-9 here), would lose digits to the offset
    s = maps("distinct", 3, seed=14, shape=(64, 64))
    f = fixation_counts(3, seed=15, share=0.05, shape=(64, 64))
    base = maps("distinct", 1, seed=16, shape=(64, 64))[0]
    shifted = s + 1e6
    unshifted = shifted - 1e6
    torch.testing.assert_close(nss(shifted, f), nss_torch(unshifted, f), rtol=0, atol=1e-12)
    torch.testing.assert_close(nss(shifted, f), nss_torch(shifted, f), rtol=0, atol=1e-8)
    expected = information_gain_torch(unshifted, f, base + 1e6 - 1e6)
    torch.testing.assert_close(information_gain(shifted, f, base + 1e6), expected, rtol=0, atol=1e-12)


def test_shared_baseline_equals_the_per_map_baseline():
    s, f = maps("distinct", 4, seed=16), fixation_counts(4, seed=17, share=0.05)
    base = maps("quantised", 1, seed=18)[0]
    per_map = base.expand(4, -1, -1).contiguous()
    for gain in (information_gain, information_gain_torch):
        assert torch.equal(gain(s, f, base), gain(s, f, per_map)), gain.__name__


def test_torch_information_gain_does_not_copy_a_shared_baseline():
    # the torch path allocates two baseline-sized tensors (scaled map, log): (B, H, W) for a
    # per-map baseline, (1, H, W) for a shared one, i.e. at least 2 (B − 1) maps less
    batch, shape = 12, (64, 64)
    s, f = maps("distinct", batch, seed=19, shape=shape), fixation_counts(batch, seed=20, share=0.05, shape=shape)
    base = maps("distinct", 1, seed=21, shape=shape)[0]

    def allocated(baseline: torch.Tensor) -> int:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            information_gain_torch(s, f, baseline)
        return sum(event.self_cpu_memory_usage for event in prof.events() if event.self_cpu_memory_usage > 0)

    per_map = allocated(base.expand(batch, -1, -1).contiguous())
    shared = allocated(base)
    assert per_map - shared >= 2 * (batch - 1) * base.numel() * base.element_size()


def test_kernel_path_refuses_non_finite_values_naming_the_batch_indices():
    s, f, o = maps("distinct", 4, seed=22), fixation_counts(4, seed=23, share=0.05), fixation_counts(4, seed=24, share=0.1)
    base = maps("distinct", 1, seed=25)[0]
    bad = s.clone()
    bad[1, 2, 3] = float("nan")  # not at a fixated pixel: only the full-map check can see it
    bad[3, 0, 1] = float("-inf")
    f[1, 2, 3] = f[3, 0, 1] = 0
    o[1, 2, 3] = o[3, 0, 1] = 0
    bad[2, 0, 0] = float("nan")  # a fixated pixel (a threshold of AUC-Judd)
    message = r"saliency holds NaN or infinite values at batch indices \[1, 2, 3\]"
    for call in (
        lambda: auc_judd(bad, f),
        lambda: auc_shuffled(bad, f, o),
        lambda: nss(bad, f),
        lambda: information_gain(bad, f, base),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    bad_base = base.clone()
    bad_base[4, 4] = float("inf")
    for gain in (information_gain, information_gain_torch):  # a shared baseline: every map is affected
        with pytest.raises(ValueError, match=r"baseline holds NaN or infinite values at batch indices \[0, 1, 2, 3\]"):
            gain(s, f, bad_base)


def test_empty_batch_gives_empty_results():
    s, f = maps("distinct", 0, seed=26), fixation_counts(0, seed=27, share=0.05)
    base = torch.ones(SHAPE, dtype=torch.float64)
    for result in (auc_judd(s, f), auc_shuffled(s, f, f), nss(s, f), information_gain(s, f, base)):
        assert result.shape == (0,) and result.dtype == torch.float64
