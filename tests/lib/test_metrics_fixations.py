"""Fixation-based metrics (NSS, AUC-Judd, shuffled AUC, information gain): goldens, references, edges.

Golden inputs: the 2×3 map p of test_metrics with fixation map F and other images' map O

    p = [[0, .5, 1],     F = [[0, 0, 1],     O = [[1, 0, 0],
         [1, .5, 0]]          [0, 1, 0]]          [1, 0, 1]]
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench import reference_metrics as ref
from saliencylab.metrics import auc, auc_judd, auc_shuffled, information_gain, nss

from tests.lib.test_metrics import P, random_maps

F = torch.tensor([[[0, 0, 1], [0, 1, 0]]])
O = torch.tensor([[[1, 0, 0], [1, 0, 1]]])


def random_fixations(batch: int, seed: int, shape=(17, 23), share: float = 0.05) -> torch.Tensor:
    """Seeded fixation count maps with at least one fixated and one free pixel per map."""
    g = torch.Generator().manual_seed(seed)
    counts = (torch.rand(batch, *shape, generator=g) < share).to(torch.int64) * 2
    counts[:, 0, 0] = 1
    counts[:, -1, -1] = 0
    return counts


def test_golden_values_on_hand_computed_maps():
    # NSS: mean .5, std (ddof 1) = √(1/5); fixated values 1 and .5 -> z = √5/2 and 0 -> √5/4
    assert nss(P, F).item() == pytest.approx(math.sqrt(5) / 4, abs=1e-15)
    # AUC-Judd: positives {1, .5}, negatives {0, .5, 1, 0}. Thresholds 1 and .5 give
    # (fp, tp) = (1/4, 1/2) and (1/2, 1); trapezoids from (0,0) to (1,1): .0625 + .1875 + .5
    assert auc_judd(P, F).item() == pytest.approx(0.75, abs=1e-15)
    # sAUC: negatives {0, 1, 0}; pairs won: 1>0 twice, 1=1 half, .5>0 twice -> 4.5 / 6
    assert auc_shuffled(P, F, O).item() == pytest.approx(0.75, abs=1e-15)
    # IG over a uniform baseline: S = p/3 at fixations 1/3 and 1/6 vs 1/6 -> mean(1, 0) bits
    uniform = torch.ones(2, 3, dtype=torch.float64)
    assert information_gain(P, F, uniform).item() == pytest.approx(0.5, abs=1e-12)


def test_matches_numpy_reference_in_float64():
    s, f, o, base = random_maps(6, seed=1), random_fixations(6, seed=2), random_fixations(6, seed=3), random_maps(6, seed=4)
    cases = {
        "nss": (nss(s, f), [ref.nss(s[i].numpy(), f[i].numpy()) for i in range(6)]),
        "auc_judd": (auc_judd(s, f), [ref.auc_judd(s[i].numpy(), f[i].numpy()) for i in range(6)]),
        "auc_shuffled": (auc_shuffled(s, f, o), [ref.auc_shuffled(s[i].numpy(), f[i].numpy(), o[i].numpy()) for i in range(6)]),
        "information_gain": (
            information_gain(s, f, base),
            [ref.information_gain(s[i].numpy(), f[i].numpy(), base[i].numpy()) for i in range(6)],
        ),
    }
    for name, (ours, expected) in cases.items():
        np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-12, err_msg=name)


def test_auc_judd_equals_mit_formula_when_values_are_distinct():
    # MIT AUC_Judd.m without jitter: tp = i / Nfix and fp = (#S ≥ t − i) / (N − Nfix)
    g = torch.Generator().manual_seed(5)
    s = torch.rand(1, 20, 30, generator=g, dtype=torch.float64)
    f = random_fixations(1, seed=6, shape=(20, 30))
    flat, fixated = s.flatten().numpy(), f.flatten().numpy() > 0
    thresholds = np.sort(flat[fixated])[::-1]
    n_fix, n = len(thresholds), flat.size
    tp = [0.0] + [(i + 1) / n_fix for i in range(n_fix)] + [1.0]
    fp = [0.0] + [((flat >= t).sum() - (i + 1)) / (n - n_fix) for i, t in enumerate(thresholds)] + [1.0]
    mit = sum((fp[i + 1] - fp[i]) * (tp[i + 1] + tp[i]) / 2 for i in range(len(tp) - 1))
    assert auc_judd(s, f).item() == pytest.approx(mit, abs=1e-14)


def test_shuffled_auc_with_all_other_pixels_is_the_mann_whitney_statistic():
    s, f = random_maps(3, seed=7), random_fixations(3, seed=8)
    everyone = torch.ones_like(f)
    for i in range(3):
        pos = s[i][f[i] > 0].numpy()
        neg = s[i].flatten().numpy()
        expected = ((pos[:, None] > neg).mean() + 0.5 * (pos[:, None] == neg).mean())
        assert auc_shuffled(s[i : i + 1], f[i : i + 1], everyone[i : i + 1]).item() == pytest.approx(expected, abs=1e-14)


def test_constant_maps_are_at_chance():
    f, o = random_fixations(2, seed=9), random_fixations(2, seed=10)
    constant = torch.full((2, 17, 23), 0.7, dtype=torch.float64)
    assert torch.equal(nss(constant, f), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(auc_judd(constant, f), torch.full((2,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(auc_shuffled(constant, f, o), torch.full((2,), 0.5, dtype=torch.float64))
    # the same map as saliency and baseline gains nothing; a constant baseline is uniform
    uniform = torch.ones(17, 23, dtype=torch.float64)
    torch.testing.assert_close(information_gain(constant, f, uniform), torch.zeros(2, dtype=torch.float64))


def test_fixation_counts_and_bool_maps_are_equivalent():
    s, f = random_maps(3, seed=11), random_fixations(3, seed=12)
    for metric in (nss, auc_judd):
        torch.testing.assert_close(metric(s, f), metric(s, f > 0), rtol=0, atol=0)
        torch.testing.assert_close(metric(s, f), metric(s, (f > 0).double()), rtol=0, atol=0)


def test_batch_equals_singles_and_inputs_are_not_modified():
    s, f, o = random_maps(4, seed=13), random_fixations(4, seed=14), random_fixations(4, seed=15)
    base = random_maps(1, seed=16)[0]
    copies = [t.clone() for t in (s, f, o, base)]
    metrics = {
        "nss": lambda i: nss(s[i], f[i]),
        "auc_judd": lambda i: auc_judd(s[i], f[i]),
        "auc_shuffled": lambda i: auc_shuffled(s[i], f[i], o[i]),
        "information_gain": lambda i: information_gain(s[i], f[i], base),
    }
    for name, metric in metrics.items():
        singles = torch.cat([metric(slice(i, i + 1)) for i in range(4)])
        torch.testing.assert_close(metric(slice(None)), singles, rtol=0, atol=1e-14, msg=name)
    assert all(torch.equal(a, b) for a, b in zip((s, f, o, base), copies))


def test_better_maps_score_higher():
    # a map that peaks at the fixations beats its inverse on every fixation metric
    f = random_fixations(2, seed=17)
    good = f.double() + 0.1 * random_maps(2, seed=18)
    bad = -good
    o = random_fixations(2, seed=19)
    uniform = torch.ones(17, 23, dtype=torch.float64)
    assert (nss(good, f) > 1).all() and (nss(bad, f) < 0).all()
    assert (auc_judd(good, f) > 0.9).all() and (auc_judd(bad, f) < 0.5).all()
    assert (auc_shuffled(good, f, o) > auc_shuffled(bad, f, o)).all()
    assert (information_gain(good, f, uniform) > 0).all()


def test_float32_runs_in_float32():
    s, f, o = random_maps(2, seed=20), random_fixations(2, seed=21), random_fixations(2, seed=22)
    for metric, args in ((nss, (f,)), (auc_judd, (f,)), (auc_shuffled, (f, o)), (information_gain, (f, s.float()))):
        out = metric(s.float(), *args)
        assert out.dtype == torch.float32
        expected = metric(s, *(a.double() if a.is_floating_point() else a for a in args))
        torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)


def test_bad_fixation_maps_are_refused():
    s, f = random_maps(3, seed=23), random_fixations(3, seed=24)
    empty = f.clone()
    empty[2] = 0
    with pytest.raises(ValueError, match=r"fixations has no fixated pixel at batch indices \[2\]"):
        nss(s, empty)
    with pytest.raises(ValueError, match=r"other_fixations has no fixated pixel at batch indices \[2\]"):
        auc_shuffled(s, f, empty)
    full = f.clone()
    full[1] = 1
    with pytest.raises(ValueError, match=r"no non-fixated pixel.*\[1\]"):
        auc_judd(s, full)
    with pytest.raises(ValueError, match="non-negative"):
        nss(s, -f)
    with pytest.raises(ValueError, match="shape mismatch"):
        auc_judd(s, f[:, :-1])
    s[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"saliency holds NaN or infinite values at batch indices \[1\]"):
        nss(s, f)
    with pytest.raises(ValueError, match="shape mismatch"):
        information_gain(random_maps(3, seed=25), f, torch.ones(5, 5, dtype=torch.float64))


@pytest.mark.parametrize("maps_per_chunk", [1, 2, 5])
def test_aucs_do_not_depend_on_the_chunking(monkeypatch, maps_per_chunk):
    # the torch path (used off the CPU) sorts chunks of rows; the CPU kernels do not chunk
    s, f, o = random_maps(5, seed=7), random_fixations(5, seed=8), random_fixations(5, seed=9)
    whole = auc.auc_judd_torch(s, f), auc.auc_shuffled_torch(s, f, o)
    monkeypatch.setattr(auc, "CHUNK_PIXELS", maps_per_chunk * s[0].numel())
    chunked = auc.auc_judd_torch(s, f), auc.auc_shuffled_torch(s, f, o)
    assert torch.equal(chunked[0], whole[0]) and torch.equal(chunked[1], whole[1])
