"""The study end to end on the demo data, read the way a person reads it: the HTML report.

Two detectors keep it fast; every table, figure and warning must be there and no value NaN. The
demo's weights are random and its masks synthetic, so the report must say so: no best marks, no
published values (with the reason), no "human attention" in the title, n in every table.
A second run without human masks must say that branch was skipped.
"""

from __future__ import annotations

import html
import re
import shutil

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app

runner = CliRunner()
DETECTORS = ("faster_rcnn", "yolov5s")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["demo", "--workdir", str(workdir), "--detectors", ",".join(DETECTORS)])
    assert result.exit_code == 0, result.output
    assert "Demo finished" in result.output and "report.html" in result.output
    return workdir / "run"


def test_report_html_has_every_table_and_figure(demo_run):
    page = (demo_run / "report" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "src=\"http" not in page  # self-contained
    assert "WARNING" in page and "RANDOM weights" in page and "SYNTHETIC" in page
    assert page.count("<table>") == 3  # weights, vs DeepGaze, vs the masks
    for detector in DETECTORS:
        assert f"<h3>{detector}</h3>" in page
        assert f'id="overlays_{detector}.png" alt="overlays" src="data:image/png;base64,' in page
        assert f'id="iou_hist_{detector}.png" alt="IoU histogram" src="data:image/png;base64,' in page
    cells = re.findall(r"<td[^>]*>(?:<b>)?([^<]*)", page)
    assert cells and not any(re.search(r"\bnan\b", html.unescape(c), re.IGNORECASE) for c in cells)
    # honest report: random weights -> no best marks; synthetic masks -> no published values, no "human attention"
    assert 'class="best"' not in page and "★" not in page and "No best values are marked" in page
    assert "0.1700" not in page and "0.1145" not in page and "paper MAE" not in page
    assert page.count("Published values are hidden: they were measured on voc2012-masked") == 2
    assert "human attention" not in page.split("</h1>")[0] and "SYNTHETIC stand-in attention masks" in page
    assert page.count("<th>n</th>") == 2 and "Caution: fewer than 30 pairs" in page
    assert "The dashed line marks IoU 0.1" in page


def test_report_markdown_and_figures(demo_run):
    markdown = (demo_run / "report" / "report.md").read_text()
    assert "## Detectors vs DeepGaze IIE predicted fixations" in markdown
    assert "## Detectors vs SYNTHETIC stand-in attention masks (not human data)" in markdown
    assert not re.search(r"\bnan\b", markdown, re.IGNORECASE)
    for detector in DETECTORS:
        for figure in (f"overlays_{detector}.png", f"iou_hist_{detector}.png"):
            assert f"figures/{figure}" in markdown
            assert (demo_run / "report" / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = open_artifact(str(demo_run / "report")).manifest
    assert set(manifest.summary["tables"]) == {"deepgaze", "human"} and manifest.summary["skipped"] == []


def test_study_without_masks_skips_the_human_branch(demo_run, tmp_path):
    folder = tmp_path / "images"
    shutil.copytree(demo_run.parent / "data" / "VOC2012" / "JPEGImages", folder)
    result = runner.invoke(
        app,
        ["study", "--images", str(folder), "--output", str(tmp_path / "run"), "--detectors", "ssd300", "--preset", "paper",
         "--set", "ingest.format=folder", "--set", "ingest.size=128", "--set", "compare.bootstrap=50"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "Skipped: this run has no compare of a detector against human attention masks" in page
    assert "configuration: paper" in page and "Published values are hidden" in page
    assert page.count("<table>") == 2


def test_rerunning_the_demo_recomputes_nothing(demo_run):
    result = runner.invoke(app, ["demo", "--workdir", str(demo_run.parent), "--detectors", ",".join(DETECTORS)])
    assert result.exit_code == 0
    assert '"skipped": true' not in result.output  # complete artifacts are not even re-planned shard by shard
