"""Stage `report`: one run of the empirical study -> report.md, a self-contained report.html and figures.

Input `run`: the run root. The stage finds every finished artifact under it (ingest, cam/<detector>,
deepgaze, compare/<detector>-<target>), and writes, next to its manifest:
    report.md          tables (with the paper's published numbers beside ours) and figure links
    report.html        the same, images embedded, opens stand-alone in a browser
    figures/*.png      overlay grids (best and worst samples per detector) and IoU histograms
The human-mask branch is reported as skipped when the image set has no human masks.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field as dc_field
from typing import Any

import numpy as np
import typer

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.config import field
from saliencylab.manifests import MANIFEST_KEY, canonical_json, sha256_hex
from saliencylab.report.figures import iou_histogram, overlay_grid
from saliencylab.report.tables import METRIC_COLUMNS, metric_table, published_tables, to_html, to_markdown
from saliencylab.runner import RunRequest, StageError
from saliencylab.stages import get_stage
from saliencylab.storage import Storage, join_uri, open_storage

from jobs.common import Job, Prepared, stage_command

TARGETS = {"deepgaze": "DeepGaze IIE predicted fixations", "human": "human attention masks"}
PUBLISHED_KEY = {"deepgaze": "voc_deepgaze", "human": "voc_human"}
PAPER_TIE_IOU = 0.1  # |other top set| / N when one map's top set collapses to the whole image


@dataclass(frozen=True)
class ReportConfig:
    """Parameters of the report stage."""

    title: str = field("Object-detector saliency vs human attention", "Title of the report.")
    examples: int = field(2, "Best and worst samples per detector shown in the overlay grids.")
    protocol: str = field("", "Name of the study configuration the run used (paper or corrected), for the header.")


@dataclass
class RunContents:
    """The finished artifacts of one run, by role."""

    ingest: Artifact | None = None
    deepgaze: Artifact | None = None
    cams: dict[str, Artifact] = dc_field(default_factory=dict)  # detector -> artifact
    compares: dict[tuple[str, str], Artifact] = dc_field(default_factory=dict)  # (detector, target) -> artifact


def discover(root: Storage) -> RunContents:
    """Find the finished artifacts under the run root (everything but the report itself)."""
    contents = RunContents()
    paths = [k[: -len(MANIFEST_KEY) - 1] for k in root.list() if k.endswith(f"/{MANIFEST_KEY}") and not k.startswith("report/")]
    by_uri: dict[str, Artifact] = {}
    for path in sorted(paths):
        artifact = open_artifact(join_uri(root.uri, path))
        by_uri[artifact.storage.uri] = artifact
    for artifact in by_uri.values():
        stage = artifact.manifest.stage
        if stage == "ingest":
            contents.ingest = artifact
        elif stage == "deepgaze":
            contents.deepgaze = artifact
        elif stage == "cam":
            contents.cams[artifact.manifest.params["detector"]] = artifact
    for artifact in by_uri.values():
        if artifact.manifest.stage != "compare":
            continue
        pred = by_uri.get(artifact.manifest.inputs["pred"]["uri"]) or open_artifact(artifact.manifest.inputs["pred"]["uri"])
        target = by_uri.get(artifact.manifest.inputs["target"]["uri"]) or open_artifact(artifact.manifest.inputs["target"]["uri"])
        if pred.manifest.stage == "cam":
            kind = "deepgaze" if target.manifest.stage == "deepgaze" else "human"
            contents.compares[(pred.manifest.params["detector"], kind)] = artifact
    return contents


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


def build_report(contents: RunContents, config: ReportConfig, root_uri: str) -> tuple[str, str, dict[str, bytes], dict]:
    """Render the report; returns (markdown, html, figures by file name, summary)."""
    if not contents.compares:
        raise StageError(f"{root_uri} holds no compare artifact of a CAM stage: nothing to report")
    published = published_tables()
    detectors = sorted({d for d, _ in contents.compares})
    warnings = sorted({w for a in [contents.ingest, contents.deepgaze, *contents.cams.values()] if a for w in a.manifest.warnings})
    figures: dict[str, bytes] = {}
    md = [f"# {config.title}", "", f"Run: `{root_uri}`" + (f" · configuration: **{config.protocol}**" if config.protocol else ""), ""]
    parts_html = [f"<h1>{html.escape(config.title)}</h1><p>Run: <code>{html.escape(root_uri)}</code>"
                  + (f" · configuration: <b>{html.escape(config.protocol)}</b>" if config.protocol else "") + "</p>"]  # fmt: skip
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
        n = min(config.examples, len(rows) // 2 or len(rows))
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
    page = HTML_PAGE.format(title=html.escape(config.title), body="\n".join(parts_html))
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


def prepare(inputs: dict[str, str], config: ReportConfig) -> Prepared:
    root = open_storage(inputs["run"])
    contents = discover(root)
    found = [a for a in [contents.ingest, contents.deepgaze, *contents.cams.values(), *contents.compares.values()] if a]
    digest = sha256_hex(canonical_json(sorted(a.digest for a in found)))
    warnings = tuple(sorted({w for a in found for w in a.manifest.warnings}))
    return Prepared({"run": {"uri": root.uri, "digest": digest}}, (), lambda task, policy: [], warnings)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    root_uri = request.inputs["run"]["uri"]
    markdown, page, figures, summary = build_report(discover(open_storage(root_uri)), ReportConfig(**request.params), root_uri)
    files = {f"figures/{name}": data for name, data in figures.items()}
    files["report.md"], files["report.html"] = markdown.encode(), page.encode()
    return summary, files


JOB = Job(spec=get_stage("report"), version="1", config_cls=ReportConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
