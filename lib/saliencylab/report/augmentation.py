"""The augmentation-study section: Faster R-CNN fine-tuned on each training set, its mAP and its CAMs vs DeepGaze and the masks.

Variants are found by lineage: a `finetune` node's training set is the baseline when it is an
ingest, else the stage that changed it (erase, inpaint, augment). Its `evaluate` nodes read it as
`model`; its `cam` nodes run on `finetune:<its URI>` weights; their compares give Tables 1 and 2.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from saliencylab.report.detection import map_interval
from saliencylab.report.figures import training_curves, training_examples
from saliencylab.report.markup import Doc
from saliencylab.report.run import Node, RunContents
from saliencylab.report.sections import VOC_MASKED, Options, compare_table, marks_text, published_gate, target_kind, target_label, unique_labels
from saliencylab.report.tables import Table, number_cell, published_tables

VARIANT_OF = {"ingest": "baseline", "erase": "erase", "inpaint": "inpaint", "augment": "augment"}  # training set's stage -> row
ORDER = ("baseline", "erase", "inpaint", "augment")
PUBLISHED_KEY = {"deepgaze": ("augmentation_deepgaze", "Table 1"), "human": ("augmentation_human", "Table 2")}
AP = "coco_ap50"  # the paper's "mAP@0.5": COCO AP50 (evaluate's summary key)


def variants(contents: RunContents) -> dict[str, dict[str, Any]]:
    """Row label -> {"finetune", "evaluate" (or None), "deepgaze"/"human" compare nodes} for each fine-tuned model."""
    tunes = contents.of_stage("finetune")

    def name(node: Node) -> str:
        train = contents.source(node, "train")
        return VARIANT_OF.get(train.stage, node.path) if train else node.path

    found = {}
    for label, tune in unique_labels(tunes, name).items():
        entry: dict[str, Any] = {"finetune": tune, "evaluate": None}
        entry["evaluate"] = next((e for e in contents.of_stage("evaluate") if contents.source(e, "model") is tune), None)
        cams = [c for c in contents.of_stage("cam") if contents.weights_source(c) is tune]
        for compare in contents.of_stage("compare"):
            kind = target_kind(contents.source(compare, "target"))
            if any(contents.source(compare, "pred") is c for c in cams) and kind in ("deepgaze", "human"):
                entry.setdefault(kind, compare)
        found[label] = entry
    return dict(sorted(found.items(), key=lambda item: (ORDER.index(item[0]) if item[0] in ORDER else len(ORDER), item[0])))


def _map(entry: dict) -> float | None:
    return entry["evaluate"].summary.get("map", {}).get(AP) if entry["evaluate"] else None


def _map_cell(ap: float | None, interval: tuple[float, float] | None) -> str:
    if ap is None or interval is None:
        return number_cell(ap, 3)
    return f"{ap:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _accuracy_table(entries: dict[str, dict], intervals: dict[str, tuple[float, float] | None], resamples: int) -> Table:
    base = _map(entries["baseline"]) if "baseline" in entries else None
    rows = []
    for label, entry in entries.items():
        ev = entry["evaluate"].summary if entry["evaluate"] else {}
        ap = _map(entry)
        delta = number_cell(ap - base, 3) if ap is not None and base is not None else "–"
        maps = ev.get("map", {})
        rows.append((label, str(ev.get("images", 0)), _map_cell(ap, intervals.get(label)), delta,
                     number_cell(maps.get("voc07"), 3), number_cell(maps.get("voc2010"), 3)))  # fmt: skip
    header = ("training set", "n images", "mAP@0.5 (COCO AP50)", "Δ mAP vs baseline", "VOC07 mAP", "VOC2010+ mAP")
    interval = f"[bootstrap 95% CI over {resamples} image resamples]" if resamples else "(point values: report.map_bootstrap is 0)"
    caption = f"Detection accuracy of each fine-tuned model on the evaluation set; mAP@0.5 {interval}."
    return Table(header, tuple(rows), caption=caption)


def _per_class_table(entries: dict[str, dict]) -> Table | None:
    evaluated = {label: e["evaluate"].summary for label, e in entries.items() if e["evaluate"]}
    if not evaluated:
        return None
    per = {label: summary.get("per_class", {}).get(AP, {}) for label, summary in evaluated.items()}
    classes = list(next(iter(per.values())))
    rows = tuple((label, str(evaluated[label].get("images", 0)), *(number_cell(values.get(c), 2) for c in classes)) for label, values in per.items())
    return Table(("training set", "n images", *classes), rows, caption="Per-class AP@0.5 (COCO AP50); – where the class has no positives.")


def _study_table(doc: Doc, contents: RunContents, options: Options, kind: str, entries: dict[str, dict], intervals: dict) -> dict:
    compares = {label: e[kind] for label, e in entries.items() if kind in e}
    first = next(iter(compares.values()))
    key, number = PUBLISHED_KEY[kind]
    paper = published_tables()["tables"][key]
    show, hidden = published_gate(contents, first, options, VOC_MASKED)
    base = _map(entries["baseline"]) if "baseline" in entries else None
    maps = {label: _map(entries[label]) for label in compares}
    leading = (("mAP@0.5", {label: _map_cell(v, intervals.get(label)) for label, v in maps.items()}),
               ("Δ mAP", {label: number_cell(v - base, 3) for label, v in maps.items() if v is not None and base is not None}))  # fmt: skip
    trailing = ()
    if show:
        trailing = tuple((f"paper {title}", {label: number_cell(paper["rows"].get(label, {}).get(k), 4) for label in compares})
                         for k, title in (("map50", "mAP"), ("mae", "MAE"), ("iou_paper", "IoU")))  # fmt: skip
    target = target_label(kind, contents.source(first, "target"))
    caption = (f"{number}: Faster R-CNN fine-tuned on each training set, its EigenCAM vs {target}. Mean [bootstrap 95% CI] over the n "
               f"image pairs of each row; {marks_text(options)}." + (f" Published: {paper['caption']}." if show else ""))  # fmt: skip
    means = compare_table(doc, compares, options, label="training set", caption=caption, leading=leading, trailing=trailing)
    if show:
        doc.bullets(paper["notes"])
    else:
        doc.note(hidden)
    return {label: row | {"map50": maps[label]} for label, row in means.items()}


def _curves(entries: dict[str, dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    curves = {}
    for label, entry in entries.items():
        storage = entry["finetune"].artifact.storage
        name = entry["finetune"].summary.get("curves", {}).get("iterations", "curves.csv")
        if storage.exists(name):
            rows = list(csv.DictReader(io.StringIO(storage.read_bytes(name).decode())))
            curves[label] = (np.array([int(r["global_step"]) for r in rows]), np.array([float(r["loss"]) for r in rows]))
    return curves


def _first(node: Node, accept) -> dict | None:
    """The first sample of `node` (by shard order) that `accept(sample)` holds true for."""
    for record in node.artifact.manifest.shards:
        for sample in node.artifact.samples(record.name):
            if accept(sample):
                return sample
    return None


def _panel(title: str, sample: dict, mask: bool) -> dict:
    meta = sample["meta.json"]
    return {"title": f"{title}: {sample['__key__']}", "image": sample["image.png"], "boxes": meta.get("boxes", []),
            "labels": meta.get("labels", []), "mask": sample.get("erase_mask.png") if mask else None}  # fmt: skip


def examples(contents: RunContents) -> list[dict]:
    """One erased (mask outlined), one inpainted (same sample when possible) and one augmented training sample."""
    panels = []
    changed = None
    for node in contents.of_stage("erase")[:1]:
        sample = _first(node, lambda s: s["meta.json"].get("changed"))
        if sample:
            changed = sample["__key__"]
            panels.append(_panel("erased", sample, mask=True))
    for node in contents.of_stage("inpaint")[:1]:
        sample = _first(node, lambda s: s["__key__"] == changed) if changed else None
        sample = sample or _first(node, lambda s: s["meta.json"].get("changed"))
        if sample:
            panels.append(_panel("inpainted", sample, mask=True))
    for node in contents.of_stage("augment")[:1]:
        # a sample whose sub-policy changed something and left a visible picture (Cutout can blank a small image)
        shows = lambda s: any(op.get("applied") for op in s["meta.json"].get("augment", {}).get("ops", [])) and np.ptp(s["image.png"]) > 0  # noqa: E731
        sample = _first(node, shows) or _first(node, lambda s: True)
        if sample:
            ops = sample["meta.json"].get("augment", {}).get("sub_policy")
            panels.append(_panel("augmented" + (f" (sub-policy {ops})" if ops is not None else ""), sample, mask=False))
    return panels


def write(doc: Doc, contents: RunContents, options: Options) -> dict[str, Any] | None:
    """Tables 1 and 2, accuracy, per-class AP, training curves and examples; None without a finetune node."""
    entries = variants(contents)
    if not entries:
        return None
    doc.heading(2, "Augmentation study: fine-tuned Faster R-CNN per training set")
    summary: dict[str, Any] = {"variants": list(entries), "map50": {label: _map(e) for label, e in entries.items()}, "tables": {}}
    intervals = {label: map_interval(e["evaluate"], options.map_bootstrap, options.seed) for label, e in entries.items() if e["evaluate"]}
    summary["map50_ci"] = intervals
    doc.table(_accuracy_table(entries, intervals, options.map_bootstrap))
    per_class = _per_class_table(entries)
    if per_class:
        doc.table(per_class)
    for kind in ("deepgaze", "human"):
        if any(kind in e for e in entries.values()):
            summary["tables"][kind] = _study_table(doc, contents, options, kind, entries, intervals)
        else:
            doc.note(f"{PUBLISHED_KEY[kind][1]} skipped: no compare of a fine-tuned model's CAM against "
                     f"{'DeepGaze' if kind == 'deepgaze' else 'attention masks'}.")  # fmt: skip
    curves = _curves(entries)
    if curves:
        doc.heading(3, "Training curves")
        doc.figure("training_curves.png", training_curves(curves, "Fine-tuning loss per step"), "training curves")
    panels = examples(contents)
    if panels:
        doc.heading(3, "Training-set examples")
        doc.figure("training_examples.png", training_examples(panels, "Changed training samples, boxes drawn (cyan: erased pixels)"),
                   "training-set examples")  # fmt: skip
    return summary
