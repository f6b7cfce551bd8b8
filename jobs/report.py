"""Stage `report`: one run of the empirical study -> report.md, a self-contained report.html and figures.

Input `run`: the run root. The stage finds every finished artifact under it (ingest, cam/<detector>,
deepgaze, compare/<detector>-<target>), and writes, next to its manifest:
    report.md          tables (with the paper's published numbers beside ours) and figure links
    report.html        the same, images embedded, opens stand-alone in a browser
    figures/*.png      overlay grids (best and worst samples per detector) and IoU histograms
The human-mask branch is reported as skipped when the image set has no human masks. The document
itself is built by saliencylab.report.document; this module only wires inputs, config and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer

from saliencylab.config import field
from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.report.document import build_report
from saliencylab.report.run import discover
from saliencylab.runner import RunRequest
from saliencylab.stages import get_stage
from saliencylab.storage import Storage, open_storage

from jobs.common import Job, Prepared, stage_command


@dataclass(frozen=True)
class ReportConfig:
    """Parameters of the report stage."""

    title: str = field("Object-detector saliency vs human attention", "Title of the report.")
    examples: int = field(2, "Best and worst samples per detector shown in the overlay grids.")
    protocol: str = field("", "Name of the study configuration the run used (paper or corrected), for the header.")


def prepare(inputs: dict[str, str], config: ReportConfig) -> Prepared:
    root = open_storage(inputs["run"])
    contents = discover(root)
    found = [a for a in [contents.ingest, contents.deepgaze, *contents.cams.values(), *contents.compares.values()] if a]
    digest = sha256_hex(canonical_json(sorted(a.digest for a in found)))
    warnings = tuple(sorted({w for a in found for w in a.manifest.warnings}))
    return Prepared({"run": {"uri": root.uri, "digest": digest}}, (), lambda task, policy: [], warnings)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    root_uri = request.inputs["run"]["uri"]
    config = ReportConfig(**request.params)
    markdown, page, figures, summary = build_report(discover(open_storage(root_uri)), config.title, config.examples, config.protocol, root_uri)
    files = {f"figures/{name}": data for name, data in figures.items()}
    files["report.md"], files["report.html"] = markdown.encode(), page.encode()
    return summary, files


JOB = Job(spec=get_stage("report"), version="1", config_cls=ReportConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
