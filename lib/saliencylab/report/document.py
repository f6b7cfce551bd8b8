"""The study report as a document: markdown and a self-contained HTML page with embedded figures."""

from __future__ import annotations

import base64
import csv
import html
import io
from typing import Any

import numpy as np

from saliencylab.artifacts import Artifact
from saliencylab.report.figures import iou_histogram, overlay_grid
from saliencylab.report.run import RunContents
from saliencylab.report.tables import METRIC_COLUMNS, metric_table, published_tables, to_html, to_markdown
from saliencylab.runner import StageError

TARGETS = {"deepgaze": "DeepGaze IIE predicted fixations", "human": "human attention masks"}
PUBLISHED_KEY = {"deepgaze": "voc_deepgaze", "human": "voc_human"}
PAPER_TIE_IOU = 0.1  # |other top set| / N when one map's top set collapses to the whole image


def _rows(compare: Artifact) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(compare.storage.read_bytes("metrics.csv").decode())))


def _overlay_rows(contents: RunContents, detector: str, keys: list[tuple[str, str]]) -> list[dict]:
    """Rows for an overlay grid: (label, key) pairs -> image plus CAM, DeepGaze and human-mask maps."""
    wanted = [k for _, k in keys]
    images = contents.ingest.lookup(wanted) if contents.ingest else {}
    cams = contents.cams[detector].lookup(wanted) if detector in contents.cams else {}
    gazes = contents.deepgaze.lookup(wanted) if contents.deepgaze else {}
    rows = []
    for label, key in keys:
        if key not in images:
            continue
        rows.append(
            {
                "label": f"{label}\n{key}",
                "image": images[key]["image.png"],
                "CAM": cams.get(key, {}).get("cam.npy"),
                "DeepGaze": gazes.get(key, {}).get("density.npy"),
                "human mask": images[key].get("mask.png"),
            }
        )
    return rows


def build_report(contents: RunContents, title: str, examples: int, protocol: str, root_uri: str) -> tuple[str, str, dict[str, bytes], dict]:
    """Render the report; returns (markdown, html, figures by file name, summary)."""
    if not contents.compares:
        raise StageError(f"{root_uri} holds no compare artifact of a CAM stage: nothing to report")
    published = published_tables()
    detectors = sorted({d for d, _ in contents.compares})
    warnings = sorted({w for a in [contents.ingest, contents.deepgaze, *contents.cams.values()] if a for w in a.manifest.warnings})
    figures: dict[str, bytes] = {}
    md = [f"# {title}", "", f"Run: `{root_uri}`" + (f" · configuration: **{protocol}**" if protocol else ""), ""]
    parts_html = [f"<h1>{html.escape(title)}</h1><p>Run: <code>{html.escape(root_uri)}</code>"
                  + (f" · configuration: <b>{html.escape(protocol)}</b>" if protocol else "") + "</p>"]  # fmt: skip
    if warnings:
        md += ["> **WARNING — these numbers are not scientific results:**", *[f"> - {w}" for w in warnings], ""]
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        parts_html.append(f'<div class="warning"><b>WARNING — these numbers are not scientific results:</b><ul>{items}</ul></div>')

    md += ["## Weights used", "", "| stage | weights |", "|---|---|"]
    weight_rows = [(f"cam/{d}", str(a.manifest.params.get("weights", "?"))) for d, a in sorted(contents.cams.items())]
    if contents.deepgaze:
        weight_rows.append(("deepgaze", str(contents.deepgaze.manifest.params.get("weights", "?"))))
    md += [f"| {s} | `{w}` |" for s, w in weight_rows] + [""]
    parts_html.append("<h2>Weights used</h2><table><tr><th>stage</th><th>weights</th></tr>"
                      + "".join(f"<tr><td>{html.escape(s)}</td><td><code>{html.escape(w)}</code></td></tr>" for s, w in weight_rows)
                      + "</table>")  # fmt: skip

    summary: dict[str, Any] = {"tables": {}, "skipped": []}
    for kind, label in TARGETS.items():
        results = {d: contents.compares[(d, kind)].manifest.summary.get("metrics", {}) for d in detectors if (d, kind) in contents.compares}
        md += [f"## Detectors vs {label}", ""]
        parts_html.append(f"<h2>Detectors vs {html.escape(label)}</h2>")
        if not results:
            note = f"Skipped: this image set has no {label} (no compare artifact against them)."
            summary["skipped"].append(kind)
            md += [note, ""]
            parts_html.append(f"<p><i>{html.escape(note)}</i></p>")
            continue
        paper = published["tables"][PUBLISHED_KEY[kind]]
        table = metric_table(results, paper["rows"])
        counts = {d: contents.compares[(d, kind)].manifest.summary for d in results}
        caption = (f"Mean [bootstrap 95% CI] over image pairs; best per column in bold (★). "
                   f"Published: {paper['caption']}.")  # fmt: skip
        pair_note = "; ".join(f"{d}: {c['pairs']} pairs, {len(c['missing_target'])} missing target, "
                              f"{c['degenerate']['target_degenerate']} tie-collapsed targets" for d, c in counts.items())  # fmt: skip
        md += [caption, "", to_markdown(table), f"Pairs: {pair_note}.", ""]
        parts_html += [f"<p>{html.escape(caption)}</p>", to_html(table), f"<p class='small'>Pairs: {html.escape(pair_note)}.</p>"]
        summary["tables"][kind] = {d: {m: results[d].get(m, {}).get("mean") for m, _, _ in METRIC_COLUMNS} for d in results}
    md += ["Published numbers are copied as printed; see notes:", *[f"- {n}" for n in published["notes"]], ""]
    parts_html.append("<ul class='small'>" + "".join(f"<li>{html.escape(n)}</li>" for n in published["notes"]) + "</ul>")

    md += ["## Per detector", ""]
    parts_html.append("<h2>Per detector</h2>")
    ok_rows = {pair: [r for r in _rows(a) if r["status"] == "ok"] for pair, a in contents.compares.items()}
    for detector in detectors:
        kind = "deepgaze" if (detector, "deepgaze") in contents.compares else "human"
        rows = list(ok_rows[(detector, kind)])
        rows.sort(key=lambda r: float(r["iou_exact"]))
        n = min(examples, len(rows) // 2 or len(rows))
        picks = [("best", r["key"]) for r in rows[::-1][:n]] + [("worst", r["key"]) for r in rows[:n]]
        grid_name, hist_name = f"overlays_{detector}.png", f"iou_hist_{detector}.png"
        figures[grid_name] = overlay_grid(_overlay_rows(contents, detector, picks), ["CAM", "DeepGaze", "human mask"],
                                          f"{detector}: best and worst by exact IoU vs {TARGETS[kind]}")  # fmt: skip
        series = {}
        for k in TARGETS:
            if (detector, k) in contents.compares:
                ok = ok_rows[(detector, k)]
                series[f"{k} paper"] = np.array([float(r["iou_paper"]) for r in ok])
                series[f"{k} exact"] = np.array([float(r["iou_exact"]) for r in ok])
        figures[hist_name] = iou_histogram(series, f"{detector}: per-image IoU of the top 10%", tie_value=PAPER_TIE_IOU)
        md += [f"### {detector}", "", f"![overlays](figures/{grid_name})", "", f"![IoU histogram](figures/{hist_name})", ""]
        parts_html.append(f"<h3>{html.escape(detector)}</h3>" + "".join(
            f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(figures[name]).decode()}">' for name in (grid_name, hist_name)))  # fmt: skip
    md += ["The dashed line marks IoU 0.1: with the paper's threshold a map whose top 10% ties collapses to the whole "
           "image, and its IoU becomes the other map's top-set share. Exact mode breaks ties and removes that pile-up.", ""]  # fmt: skip
    page = HTML_PAGE.format(title=html.escape(title), body="\n".join(parts_html))
    return "\n".join(md), page, figures, summary


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
td.best {{ background: #e6f4e6; }}
.warning {{ background: #fde8e8; border: 2px solid #c00; padding: 0.5em 1em; margin: 1em 0; }}
.small {{ font-size: 0.85em; color: #555; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
</style></head><body>
{body}
</body></html>
"""
