"""The HSI section: each HSI prediction artifact scored against its target maps, by model configuration, with overlays.

One row per compare whose prediction is an `hsi-predict` artifact. The row states the
configuration the HSI paper's Tables 1-3 contrast: decoder features (full model with the text
score map, or the no-text baseline) and the weights (random, a trained file, a fine-tuned fold).
The HSI paper's own values are not shown: no available source gives them (data/published_hsi.json).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from saliencylab.report.figures import overlay_grid
from saliencylab.report.markup import Doc
from saliencylab.report.run import Node, RunContents
from saliencylab.report.sections import Options, compare_rows, compare_table, marks_text, target_kind, target_label, unique_labels
from saliencylab.metrics.summary import bootstrap_ci
from saliencylab.report.tables import SUITE, Table, ci_cell
from saliencylab.training.hsi_session import TRAINED_PREFIX
from saliencylab.weights import RANDOM

MAP_FIELDS = ("saliency.npy", "density.npy", "cam.npy", "mask.png")  # a sample's map, first found
TEXT_FEATURE = "a"  # the text score map among the decoder features: without it the model is the no-text baseline


def _map_of(sample: dict | None):
    return next((sample[f] for f in MAP_FIELDS if sample and f in sample), None)


def configuration(node: Node) -> tuple[str, str]:
    """(model, weights) of an hsi-predict node: "full" or "no-text baseline", and its weights reference."""
    features = node.params.get("features", ())
    model = "full" if TEXT_FEATURE in features else "no-text baseline"
    return f"{model} ({','.join(features)})", str(node.params.get("weights", "?"))


def training(contents: RunContents, node: Node) -> tuple[Node | None, str, str]:
    """(hsi-train node, weights name, description) of an hsi-predict node's `model` input or `hsi-train:<URI>#<name>` weights.

    The description says what the HSI paper's Tables 1 and 3 contrast: pre-trained only or
    fine-tuned on a fold, and a fine-tune's initialisation (the pre-trained model or CLIP with a
    fresh decoder). Without such weights the node is (None, "", "untrained" or "given weights").
    """
    weights, fold = str(node.params.get("weights", "")), int(node.params.get("fold", -1))
    if "model" in node.artifact.manifest.inputs:  # the model input: hsi-predict's fold-<k> weights with --fold k, else best
        model = node.artifact.manifest.inputs["model"]
        name, trained = "", contents.find(model["uri"], model.get("digest"))
    elif weights.startswith(TRAINED_PREFIX):
        uri, _, name = weights[len(TRAINED_PREFIX) :].partition("#")
        trained = contents.find(uri)
    else:
        return None, "", "untrained (random)" if weights == RANDOM else "given weights file"
    name = name or (f"fold-{fold}" if fold >= 0 else "best")
    if trained is None:
        return None, name, f"hsi-train {name} (artifact outside the run)"
    if trained.params.get("mode") == "pretrain":
        return trained, name, f"pre-trained only ({name})"
    init = "pre-trained init" if "init" in trained.artifact.manifest.inputs else "CLIP init, fresh decoder"
    return trained, name, f"fine-tuned {name}, {init}"


def _fold_table(contents: RunContents, compares: dict[str, Node], options: Options) -> Table | None:
    """Per k-fold hsi-train run: every held-out fold's pairs pooled, mean [bootstrap 95% CI] per metric."""
    groups: dict[str, list[Node]] = {}
    for compare in compares.values():
        trained, name, _ = training(contents, contents.source(compare, "pred"))
        if trained is not None and name.startswith("fold-"):
            groups.setdefault(trained.path, []).append(compare)
    rows = []
    for path, folds in groups.items():
        pooled = [row for compare in folds for row in compare_rows(compare)]
        cells = []
        for m in SUITE:
            values = np.array([r[m.key] for r in pooled], dtype=np.float64)
            cells.append(ci_cell(asdict(bootstrap_ci(values, n_resamples=options.bootstrap, seed=options.seed))) if values.size else "–")
        rows.append((path, str(len(folds)), str(len(pooled)), *cells))
    if not rows:
        return None
    caption = (f"Cross-validation: the pairs of every held-out fold pooled, mean [bootstrap 95% CI, {options.bootstrap} resamples] "
               "(each fold's own row is in the table above).")  # fmt: skip
    return Table(("hsi-train run", "folds", "n", *(m.title for m in SUITE)), tuple(rows), caption=caption)


def _target_name(target: Node | None) -> str:
    kind = target_kind(target)
    return target_label(kind, target) if kind else target.path if target else "?"


def hsi_compares(contents: RunContents) -> dict[str, Node]:
    compares = [c for c in contents.of_stage("compare") if (p := contents.source(c, "pred")) is not None and p.stage == "hsi-predict"]
    return unique_labels(compares, lambda c: contents.source(c, "pred").path)


def _overlays(contents: RunContents, compare: Node, examples: int) -> list[dict]:
    pred, target = contents.source(compare, "pred"), contents.source(compare, "target")
    images = contents.source(pred, "images")
    rows = sorted(compare_rows(compare), key=lambda r: r["cc"])[::-1][:examples]
    keys = [r["key"] for r in rows]
    looked = {name: (node.artifact.lookup(keys) if node else {}) for name, node in (("image", images), ("pred", pred), ("target", target))}
    result = []
    for r in rows:
        image = looked["image"].get(r["key"], {}).get("image.png")
        if image is not None:
            result.append({"label": f"{r['key']}\nCC {r['cc']:.2f} · MAE {r['mae']:.2f}", "image": image,
                           "HSI": _map_of(looked["pred"].get(r["key"])), "target": _map_of(looked["target"].get(r["key"]))})  # fmt: skip
    return result


def write(doc: Doc, contents: RunContents, options: Options) -> dict[str, Any] | None:
    """The HSI table and sample overlays; None without a compare of an hsi-predict artifact."""
    compares = hsi_compares(contents)
    if not compares:
        return None
    doc.heading(2, "HSI: predicted human saliency vs target maps")
    preds = {label: contents.source(c, "pred") for label, c in compares.items()}
    configs = {label: configuration(p) for label, p in preds.items()}
    targets = {label: _target_name(contents.source(c, "target")) for label, c in compares.items()}
    caption = (f"Each HSI prediction artifact vs its target, by configuration (the contrasts of the HSI paper's Tables 1-3: "
               f"fine-tuned or not, full model or no-text baseline, random or pre-trained initialisation). Mean [bootstrap 95% CI] "
               f"over the n pairs of each row; {marks_text(options)}.")  # fmt: skip
    trained = {label: training(contents, p)[2] for label, p in preds.items()}
    leading = (("model", {k: v[0] for k, v in configs.items()}), ("training", trained), ("weights", {k: v[1] for k, v in configs.items()}),
               ("target", targets))  # fmt: skip
    means = compare_table(doc, compares, options, label="prediction", caption=caption, leading=leading)
    folds = _fold_table(contents, compares, options)
    if folds:
        doc.table(folds)
    doc.note("The HSI paper's Tables 1-3 values are not shown: no source available to this project gives them.")
    for label, compare in compares.items():
        rows = _overlays(contents, compare, options.examples)
        if rows:
            name = f"hsi_overlays_{label.replace('/', '_')}.png"
            doc.figure(name, overlay_grid(rows, ["HSI", "target"], f"{label}: highest-CC samples"), f"HSI overlays {label}")
    return means
