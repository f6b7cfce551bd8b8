"""What the report's sections share: options, compare rows, what a compare's target is, which dataset a result is on.

Published values are shown only beside results measured on the dataset they were published for:
the dataset is recorded by the run's ingest (VOC's masked split with real human masks is the paper
A test set) or declared by the report's `dataset` parameter; otherwise a note says why they are hidden.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from saliencylab.report.markup import Doc
from saliencylab.report.run import Node, RunContents
from saliencylab.report.tables import SUITE, metric_table, small_n_caveat

VOC_MASKED = "voc2012-masked"  # PASCAL VOC 2012 ids with a human attention mask, the real masks (paper A's test set)
IMAGENET_VAL = "imagenet-val"  # ImageNet validation images (the HSI paper's Table 4)
IMAGE_INPUTS = ("pred", "target", "images")  # the inputs that carry the scored images down a lineage
SYNTHETIC = "SYNTHETIC"  # marker of the ingest warning for synthetic stand-in masks


@dataclass(frozen=True)
class Options:
    """Report-wide settings resolved from the stage config and the run."""

    examples: int  # best and worst samples per overlay grid
    dataset: str  # declared dataset name, or "" to use what ingest recorded
    mark_best: bool  # False when any weights of the run are random
    bootstrap: int  # resamples of the rank-stability bootstrap
    seed: int  # seed of the report's bootstraps
    map_bootstrap: int = 0  # image resamples of each fine-tuned model's mAP interval (0: point values only)


def compare_rows(node: Node) -> list[dict[str, Any]]:
    """The per-pair rows of a compare artifact's metrics.csv with status ok, metric values as floats."""
    rows = list(csv.DictReader(io.StringIO(node.artifact.storage.read_bytes("metrics.csv").decode())))
    ok = [r for r in rows if r["status"] == "ok"]
    for row in ok:
        for name, value in row.items():
            if name not in ("key", "status") and value not in ("", None):
                try:
                    row[name] = float(value)
                except ValueError:
                    pass
    return ok


def synthetic_masks(node: Node) -> bool:
    return any(SYNTHETIC in w for w in node.warnings)


def target_kind(target: Node | None) -> str | None:
    """What a compare's target is: deepgaze, human (attention masks), hsi (HSI maps); None otherwise."""
    if target is None:
        return None
    return {"deepgaze": "deepgaze", "ingest": "human", "hsi-predict": "hsi"}.get(target.stage)


def target_label(kind: str, target: Node) -> str:
    """Section wording of a target: real human data only when it is real."""
    if kind == "human":
        return "SYNTHETIC stand-in attention masks (not human data)" if synthetic_masks(target) else "human attention masks"
    return {"deepgaze": "DeepGaze IIE predicted fixations", "hsi": "HSI-predicted human saliency maps"}[kind]


def recorded_dataset(contents: RunContents, node: Node) -> str | None:
    """The dataset `node`'s results are measured on, as the ingest of its images recorded it, or None when unknown.

    Only image inputs are followed (compare's pred and target, a model stage's images), not the
    training set of a fine-tuned model.
    """
    for source in [node, *contents.ancestors(node, via=IMAGE_INPUTS)]:
        if source.stage != "ingest":
            continue
        p = source.params
        real_masks = "masks" in source.artifact.manifest.inputs and not synthetic_masks(source)
        if p.get("format") == "voc" and p.get("split") == "masked" and real_masks:
            return VOC_MASKED
    return None


def published_gate(contents: RunContents, node: Node, options: Options, wanted: str) -> tuple[bool, str]:
    """Whether published values measured on `wanted` may stand beside `node`'s results, and a note when not."""
    dataset = options.dataset or recorded_dataset(contents, node)
    if dataset == wanted:
        return True, ""
    where = f"declared as {dataset!r}" if options.dataset else "not recorded as that dataset by its ingest"
    return False, (
        f"Published values are hidden: they were measured on {wanted}, and this run's images are {where}. "
        f"Declare the dataset with `--set report.dataset={wanted}` only if the run really used it."
    )


def unique_labels(nodes: list[Node], name_of) -> dict[str, Node]:
    """Row labels for nodes: `name_of(node)` when it is unique among them, else the step path."""
    names = [name_of(n) for n in nodes]
    return {(name if names.count(name) == 1 else n.path): n for name, n in zip(names, nodes)}


def marks_text(options: Options) -> str:
    """How a table's caption describes its best marks."""
    return "best per column in bold (★)" if options.mark_best else "no best marks: some weights are random"


def compare_table(
    doc: Doc,
    compares: dict[str, Node],
    options: Options,
    *,
    label: str,
    caption: str,
    leading: tuple[tuple[str, dict[str, str]], ...] = (),
    trailing: tuple[tuple[str, dict[str, str]], ...] = (),
) -> dict[str, dict[str, Any]]:
    """Write the metric table of labelled compare nodes (n per row, a caveat for small n); return each row's means and n."""
    counts = {name: node.summary.get("pairs", 0) for name, node in compares.items()}
    metrics = {name: node.summary.get("metrics", {}) for name, node in compares.items()}
    doc.table(metric_table(metrics, counts, label=label, leading=leading, trailing=trailing, mark_best=options.mark_best, caption=caption))
    caveat = small_n_caveat(counts)
    if caveat:
        doc.caveat(caveat)
    return {name: {m.key: (metrics[name].get(m.key) or {}).get("mean") for m in SUITE} | {"n": counts[name]} for name in compares}
