"""The empirical-study section: detectors' CAMs (pre-trained, not fine-tuned) vs DeepGaze and the attention masks."""

from __future__ import annotations

from typing import Any

import numpy as np

from saliencylab.report.figures import iou_histogram, overlay_grid
from saliencylab.report.markup import Doc
from saliencylab.report.run import Node, RunContents
from saliencylab.report.sections import VOC_MASKED, Options, compare_rows, compare_table, marks_text, published_gate, target_kind, target_label, unique_labels
from saliencylab.report.tables import number_cell, published_tables
from saliencylab.weights import FINETUNE_PREFIX

PUBLISHED_KEY = {"deepgaze": "voc_deepgaze", "human": "voc_human"}
PAPER_TIE_IOU = 0.1  # |other top set| / N when one map's top set collapses to the whole image
TIE_NOTE = (
    "The dashed line marks IoU 0.1: with the paper's threshold a map whose top 10% ties collapses to the whole "
    "image, and its IoU becomes the other map's top-set share. Exact mode breaks ties and removes that pile-up."
)


def detector_compares(contents: RunContents) -> dict[str, dict[str, Node]]:
    """Row label -> {"cam": cam node, "deepgaze"/"human": its compare node} for CAMs of weights not fine-tuned here."""
    found: dict[str, dict[str, Node]] = {}
    cams = [n for n in contents.of_stage("cam")
            if "model" not in n.artifact.manifest.inputs and not str(n.params.get("weights", "")).startswith(FINETUNE_PREFIX)]  # fmt: skip
    for label, cam in unique_labels(cams, lambda n: str(n.params.get("detector", n.path))).items():
        entry: dict[str, Node] = {"cam": cam}
        for compare in contents.of_stage("compare"):
            kind = target_kind(contents.source(compare, "target"))
            if contents.source(compare, "pred") is cam and kind in ("deepgaze", "human"):
                entry.setdefault(kind, compare)
        if len(entry) > 1:
            found[label] = entry
    return found


def _metric_section(doc: Doc, contents: RunContents, options: Options, kind: str, entries: dict[str, dict[str, Node]]) -> tuple[dict, bool]:
    """The table of one target kind; returns the means per row and whether published values were shown."""
    compares = {label: e[kind] for label, e in entries.items() if kind in e}
    first = next(iter(compares.values()))
    target = contents.source(first, "target")
    doc.heading(2, f"Detectors vs {target_label(kind, target)}")
    show, hidden_note = published_gate(contents, first, options, VOC_MASKED)
    paper = published_tables()["tables"][PUBLISHED_KEY[kind]]
    trailing = ()
    if show:
        detector = {label: str(entries[label]["cam"].params.get("detector")) for label in compares}
        trailing = tuple(
            (f"paper {name}", {label: number_cell(paper["rows"].get(detector[label], {}).get(key)) for label in compares})
            for key, name in (("mae", "MAE"), ("iou_paper", "IoU"))
        )
    caption = f"Mean [bootstrap 95% CI] over the n image pairs of each row; {marks_text(options)}." + (f" Published: {paper['caption']}." if show else "")
    means = compare_table(doc, compares, options, label="detector", caption=caption, trailing=trailing)
    if not show:
        doc.note(hidden_note)
    pairs = "; ".join(f"{label}: {len(c.summary.get('missing_target', []))} missing target, "
                      f"{c.summary.get('degenerate', {}).get('target_degenerate', 0)} tie-collapsed targets" for label, c in compares.items())  # fmt: skip
    doc.para(f"Pairs: {pairs}.", "small")
    return means, show


def _overlay_rows(contents: RunContents, entry: dict[str, Node], picks: list[tuple[str, dict]]) -> list[dict]:
    """Rows of an overlay grid: image plus CAM, DeepGaze and mask maps, labelled with the pair's scores."""
    wanted = [row["key"] for _, row in picks]
    ingest = contents.source(entry["cam"], "images")
    gaze = contents.source(entry["deepgaze"], "target") if "deepgaze" in entry else None
    images = ingest.artifact.lookup(wanted) if ingest else {}
    cams = entry["cam"].artifact.lookup(wanted)
    gazes = gaze.artifact.lookup(wanted) if gaze else {}
    rows = []
    for label, row in picks:
        key = row["key"]
        if key in images:
            score = f"IoU exact {row['iou_exact']:.2f} · MAE {row['mae']:.2f}"
            rows.append({"label": f"{label}: {key}\n{score}", "image": images[key]["image.png"], "CAM": cams.get(key, {}).get("cam.npy"),
                         "DeepGaze": gazes.get(key, {}).get("density.npy"), "mask": images[key].get("mask.png")})  # fmt: skip
    return rows


def write(doc: Doc, contents: RunContents, options: Options) -> dict[str, Any] | None:
    """The empirical study's tables and per-detector figures; None when the run holds no such compare."""
    entries = detector_compares(contents)
    if not entries:
        return None
    summary: dict[str, Any] = {"tables": {}, "skipped": [], "published_shown": False}
    for kind in ("deepgaze", "human"):
        if any(kind in e for e in entries.values()):
            summary["tables"][kind], shown = _metric_section(doc, contents, options, kind, entries)
            summary["published_shown"] |= shown
        else:
            summary["skipped"].append(kind)
            name = "DeepGaze IIE predictions" if kind == "deepgaze" else "human attention masks"
            doc.heading(2, f"Detectors vs {name}")
            doc.note(f"Skipped: this run has no compare of a detector against {name}.")
    if summary["published_shown"]:
        doc.para("Published numbers are copied as printed; see notes:")
        doc.bullets(published_tables()["notes"])
    doc.heading(2, "Per detector")
    for label, entry in entries.items():
        kind = "deepgaze" if "deepgaze" in entry else "human"
        rows = sorted(compare_rows(entry[kind]), key=lambda r: r["iou_exact"])
        n = min(options.examples, len(rows) // 2 or len(rows))
        picks = [("best", r) for r in rows[::-1][:n]] + [("worst", r) for r in rows[:n]]
        doc.heading(3, label)
        safe = label.replace("/", "_")
        doc.figure(f"overlays_{safe}.png", overlay_grid(_overlay_rows(contents, entry, picks), ["CAM", "DeepGaze", "mask"],
                   f"{label}: best and worst by exact IoU vs {target_label(kind, contents.source(entry[kind], 'target'))}"), "overlays")  # fmt: skip
        series = {}
        for k in ("deepgaze", "human"):
            if k in entry:
                ok = compare_rows(entry[k])
                series[f"vs {k}, paper IoU"] = np.array([r["iou_paper"] for r in ok])
                series[f"vs {k}, exact IoU"] = np.array([r["iou_exact"] for r in ok])
        doc.figure(f"iou_hist_{safe}.png", iou_histogram(series, f"{label}: per-image IoU of the top 10%", tie_value=PAPER_TIE_IOU),
                   "IoU histogram")  # fmt: skip
        doc.para(TIE_NOTE, "small")
    return summary
