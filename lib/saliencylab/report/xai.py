"""The XAI-benchmark section (Table 4 of the HSI study): explanation methods vs HSI maps, with rank stability.

Rows are the compares whose prediction is an `xai` artifact (one per method, its `method`
parameter names the row). Means and 95% intervals come from each compare's summary; the ranking's
stability is a paired bootstrap over the samples every method was scored on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from saliencylab.report.markup import Doc
from saliencylab.report.run import Node, RunContents
from saliencylab.report.sections import IMAGENET_VAL, Options, compare_rows, compare_table, marks_text, published_gate, target_kind, target_label, unique_labels
from saliencylab.report.tables import SUITE, number_cell, published_tables
from saliencylab.seeding import numpy_generator

RANK_METRIC = SUITE[0]  # MAE, the paper's metric for Table 4


def ranks(means: np.ndarray, better: str) -> np.ndarray:
    """Rank (1 = best) of each of M means; ties broken by order (stable sort). (M,) float -> (M,) int."""
    order = np.argsort(means if better == "low" else -means, kind="stable")
    result = np.empty(len(means), dtype=np.int64)
    result[order] = np.arange(1, len(means) + 1)
    return result


def rank_stability(values: np.ndarray, better: str, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each method's rank by mean and how often it keeps that rank over paired bootstrap resamples.

    A resample draws N sample indices with replacement (one draw shared by all methods, so the
    comparison stays paired) from `numpy_generator(seed, "report", "rank-stability")`.

    Args:
        values: (M, N) float, method m's value on shared sample n; finite.
        better: "low" or "high".
        n_resamples: number of bootstrap resamples, >= 1.
        seed: the report's seed.

    Returns:
        (ranks (M,) int64, 1 = best, of the means over all N; stability (M,) float64 in [0, 1], the
        share of resamples in which the method has that same rank).

    Raises:
        ValueError: values is not a finite (M, N) array with N >= 1, or n_resamples < 1.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] == 0 or not np.all(np.isfinite(data)):
        raise ValueError(f"values must be a finite (methods, samples) array with at least one sample, got shape {data.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    reference = ranks(data.mean(axis=1), better)
    rng = numpy_generator(seed, "report", "rank-stability")
    kept = np.zeros(data.shape[0], dtype=np.int64)
    for _ in range(n_resamples):
        pick = rng.integers(0, data.shape[1], size=data.shape[1])
        kept += ranks(data[:, pick].mean(axis=1), better) == reference
    return reference, kept / n_resamples


def method_compares(contents: RunContents) -> dict[str, Node]:
    """Row label (the method) -> compare node, for compares of an xai artifact against HSI maps or other targets."""
    compares = [c for c in contents.of_stage("compare") if (p := contents.source(c, "pred")) is not None and p.stage == "xai"]
    return unique_labels(compares, lambda c: str(contents.source(c, "pred").params.get("method", c.path)))


def write(doc: Doc, contents: RunContents, options: Options) -> dict[str, Any] | None:
    """Table 4 with CIs, ranks and rank stability beside the published MAEs; None without an xai compare."""
    compares = method_compares(contents)
    if not compares:
        return None
    first = next(iter(compares.values()))
    target = contents.source(first, "target")
    kind = target_kind(target)
    doc.heading(2, f"Explanation methods vs {target_label(kind, target) if kind else target.path if target else 'their targets'}")
    per_sample = {label: {r["key"]: r[RANK_METRIC.key] for r in compare_rows(c)} for label, c in compares.items()}
    shared = sorted(set.intersection(*(set(v) for v in per_sample.values())))
    labels = list(compares)
    rank_cells: dict[str, str] = {}
    stability_cells: dict[str, str] = {}
    summary: dict[str, Any] = {"shared_samples": len(shared)}
    if shared:
        values = np.array([[per_sample[label][k] for k in shared] for label in labels])
        order, stable = rank_stability(values, RANK_METRIC.better, options.bootstrap, options.seed)
        rank_cells = {label: str(int(r)) for label, r in zip(labels, order)}
        stability_cells = {label: f"{s:.2f}" for label, s in zip(labels, stable)}
        summary["rank"] = dict(zip(labels, order.tolist()))
        summary["rank_stability"] = dict(zip(labels, stable.tolist()))
    paper = published_tables("published_hsi.json")["tables"]["xai_mae"]
    show, hidden = published_gate(contents, first, options, IMAGENET_VAL)
    trailing = (("rank by MAE", rank_cells), ("rank stability", stability_cells))
    if show:
        trailing += (("paper MAE", {label: number_cell(paper["rows"].get(label, {}).get("mae"), 2) for label in labels}),)
    caption = (f"Table 4: mean [bootstrap 95% CI] over the n samples of each row; {marks_text(options)}. Rank stability: share of "
               f"{options.bootstrap} paired bootstrap resamples of the {len(shared)} samples every method was scored on in which "
               f"the method keeps its rank by MAE." + (f" Published: {paper['caption']}." if show else ""))  # fmt: skip
    summary["rows"] = compare_table(doc, compares, options, label="method", caption=caption, trailing=trailing)
    if show:
        doc.bullets(published_tables("published_hsi.json")["notes"])
    else:
        doc.note(hidden)
    return summary
