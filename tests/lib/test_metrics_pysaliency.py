"""Cross-check against pysaliency where its conventions coincide with ours (skipped without it).

pysaliency (matthias-k/pysaliency) is an optional reference: it is not a dependency. The
conventions are aligned case by case: NSS with unique fixations and its ddof 0 converted to
our ddof 1; SIM on maps whose minimum is 0 (pysaliency does not min-max scale); AUC through
`general_roc` with our negatives (non-fixated pixels for Judd, other images' for shuffled).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliencylab.metrics import auc_judd, auc_shuffled, cc, kldiv, nss, sim

pysaliency = pytest.importorskip("pysaliency")
from pysaliency import metrics as pys_metrics  # noqa: E402


def _maps(seed: int):
    rng = np.random.default_rng(seed)
    s = rng.random((21, 26))
    g = rng.random((21, 26))
    s[0, 0] = g[0, 0] = 0.0  # minimum 0: min-max scaling then changes nothing for SIM
    fixated = rng.random((21, 26)) < 0.05
    fixated[3, 4] = True
    others = rng.random((21, 26)) < 0.08
    others[5, 6] = True
    return s, g, fixated, others


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float64))[None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_metrics_match_pysaliency(seed):
    s, g, _, _ = _maps(seed)
    assert cc(_t(s), _t(g)).item() == pytest.approx(pys_metrics.CC(s, g), abs=1e-10)
    assert sim(_t(s), _t(g)).item() == pytest.approx(pys_metrics.SIM(s, g), abs=1e-10)
    assert kldiv(_t(s), _t(g)).item() == pytest.approx(pys_metrics.MIT_KLDiv(s, g), abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nss_matches_pysaliency_up_to_ddof(seed):
    s, _, fixated, _ = _maps(seed)
    ys, xs = np.nonzero(fixated)  # row y, column x
    theirs = np.mean(pys_metrics.NSS(s, xs, ys))
    n = s.size
    assert nss(_t(s), _t(fixated)).item() == pytest.approx(theirs * np.sqrt((n - 1) / n), abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aucs_match_pysaliency_general_roc(seed, monkeypatch):
    from pysaliency.roc import general_roc

    # pysaliency 0.2.22 calls np.trapz, removed in NumPy 2.4: lend it np.trapezoid for this test
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    s, _, fixated, others = _maps(seed)
    judd = general_roc(s[fixated], s[~fixated], judd=1)[0]
    shuffled = general_roc(s[fixated], s[others], judd=0)[0]
    assert auc_judd(_t(s), _t(fixated)).item() == pytest.approx(judd, abs=1e-10)
    assert auc_shuffled(_t(s), _t(fixated), _t(others)).item() == pytest.approx(shuffled, abs=1e-10)
