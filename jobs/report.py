"""Stage `report`: the finished artifacts of one run -> report.md, a self-contained report.html and figures.

Input `run`: the run root. The stage finds every finished artifact under it by its manifest
(`saliencylab.report.run`: step paths and lineage, not folder names) and writes, next to its manifest:
    report.md          the sections the artifacts support (empirical study, augmentation study Tables 1
                       and 2, HSI, XAI Table 4), with published values only beside results on their dataset
    report.html        the same, images embedded, opens stand-alone in a browser
    figures/*.png      overlay grids, IoU histograms, training curves, training-set examples
The document itself is built by saliencylab.report.document; this module only wires inputs, config
and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer

from saliencylab.config import field
from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.report.run import discover
from saliencylab.report.sections import Options
from saliencylab.runner import RunRequest
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP
from saliencylab.stages import get_stage
from saliencylab.storage import Storage, open_storage

from jobs.common import Job, Prepared, stage_command


@dataclass(frozen=True)
class ReportConfig:
    """Parameters of the report stage."""

    title: str = field("", "Title of the report; empty: named after what the run compared.")
    examples: int = field(2, "Best and worst samples per detector shown in the overlay grids.")
    protocol: str = field("", "Name of the study configuration the run used (paper or corrected), for the header.")
    dataset: str = field(
        "",
        "The dataset the run's images are, when ingest cannot record it (voc2012-masked, imagenet-val); "
        "published values are shown only beside results on their dataset. Empty: what ingest recorded.",
    )
    bootstrap: int = field(1000, "Paired bootstrap resamples of the XAI ranking's stability.")
    map_bootstrap: int = field(200, "Image resamples of each fine-tuned model's mAP@0.5 interval (0: point values only).")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


def prepare(inputs: dict[str, str], config: ReportConfig) -> Prepared:
    root = open_storage(inputs["run"])
    contents = discover(root)
    digest = sha256_hex(canonical_json(contents.digest_list()))
    warnings = tuple(contents.warnings())
    return Prepared({"run": {"uri": root.uri, "digest": digest}}, (), lambda task, policy: [], warnings)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    from saliencylab.report.document import build_report  # deferred: its figures and statistics import torch

    root_uri = request.inputs["run"]["uri"]
    config = ReportConfig(**request.params)
    contents = discover(open_storage(root_uri))
    options = Options(
        examples=config.examples, dataset=config.dataset, mark_best=not contents.any_random(),
        bootstrap=config.bootstrap, seed=config.seed, map_bootstrap=config.map_bootstrap,
    )  # fmt: skip
    markdown, page, figures, summary = build_report(contents, config.title, options, config.protocol)
    files = {f"figures/{name}": data for name, data in figures.items()}
    files["report.md"], files["report.html"] = markdown.encode(), page.encode()
    return summary, files


JOB = Job(spec=get_stage("report"), version="2", config_cls=ReportConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
