"""The report document: header, warnings, weights, then each study's section that the run's artifacts support.

Sections (empirical study, augmentation study, HSI, XAI benchmark) appear only when their
artifacts exist. The title follows what was compared unless one is given. "Best" marks are left
out when any weights of the run are random. Markdown and HTML are written by one `Doc`.
"""

from __future__ import annotations

from typing import Any

from saliencylab.report import augmentation, empirical, hsi, xai
from saliencylab.report.markup import Doc
from saliencylab.report.run import RunContents
from saliencylab.report.sections import Options, synthetic_masks
from saliencylab.report.tables import Table
from saliencylab.runner import StageError

SECTIONS = (("empirical", empirical), ("augmentation", augmentation), ("hsi", hsi), ("xai", xai))


def auto_title(contents: RunContents, found: list[str]) -> str:
    """A title naming what was compared: human attention only when real human masks were scored."""
    parts = []
    masks = [n for n in contents.of_stage("ingest") if "masks" in n.artifact.manifest.inputs]
    targets = "DeepGaze IIE" + (" and human attention" if any(not synthetic_masks(n) for n in masks) else "")
    if "empirical" in found:
        parts.append(f"Object-detector saliency vs {targets}")
    if "augmentation" in found:
        parts.append(f"Augmentation study: fine-tuned Faster R-CNN, mAP and saliency vs {targets}")
    if "hsi" in found:
        parts.append("HSI human-saliency prediction")
    if "xai" in found:
        parts.append("explanation methods vs HSI maps")
    return "; ".join(parts)


def _weights(contents: RunContents) -> list[tuple[str, str]]:
    """(step, weights) of every model step; a fine-tuned model given as an input is named by its step."""
    rows = []
    for node in contents.nodes.values():
        if "model" in node.artifact.manifest.inputs:
            source = contents.source(node, "model")
            rows.append((node.path, f"model input: {source.path if source else node.artifact.manifest.inputs['model']['uri']}"))
        elif "weights" in node.params:
            rows.append((node.path, str(node.params["weights"])))
    return rows


def build_report(
    contents: RunContents, title: str, options: Options, protocol: str
) -> tuple[str, str, dict[str, bytes], dict[str, Any]]:
    """Render the report; returns (markdown, html, figures by file name, summary).

    Raises:
        StageError: the run holds no artifact any section can report.
    """
    body = Doc()
    found: dict[str, Any] = {}
    for name, module in SECTIONS:
        part = module.write(body, contents, options)
        if part is not None:
            found[name] = part
    if not found:
        raise StageError(
            f"{contents.root_uri} holds no compare or finetune artifact to report (found: "
            f"{sorted({n.stage for n in contents.nodes.values()}) or 'nothing'}); run the study's stages first"
        )
    title = title or auto_title(contents, list(found))
    doc = Doc()
    doc.heading(1, title)
    doc.para(f"Run: {contents.root_uri}" + (f" · configuration: {protocol}" if protocol else ""))
    warnings = contents.warnings()
    if warnings:
        doc.warning("WARNING — these numbers are not scientific results:", warnings)
    if not options.mark_best:
        where = ", ".join(contents.random_weights()) or "see the warnings"
        doc.note(f"No best values are marked: these weights are random ({where}).")
    doc.heading(2, "Weights used")
    doc.table(Table(("step", "weights"), tuple(_weights(contents))))
    doc.md += body.md
    doc.html += body.html
    doc.figures.update(body.figures)
    summary = {"title": title, "sections": list(found), **found.get("empirical", {"tables": {}, "skipped": []})}
    summary.update({name: part for name, part in found.items() if name != "empirical"})
    return doc.markdown(), doc.page(title), doc.figures, summary
