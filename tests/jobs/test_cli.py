"""The command line: every registered stage has a --help, sharded runs merge, the demo runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.stages import STAGES

from jobs.cli import DETECTORS_HELP, app
from jobs.common import Prepared, own_warnings

runner = CliRunner()


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_every_stage_has_a_help_with_the_contract(stage):
    result = runner.invoke(app, [stage, "--help"])
    assert result.exit_code == 0
    for option in ("--input", "--output", "--shard", "--config", "--set", "--force", "--on-error"):
        assert option in result.output


def test_sharded_workers_then_merge(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    out = str(tmp_path / "out")
    for i in range(2):
        result = runner.invoke(app, ["ingest", "-i", str(voc), "-o", out, "--size", "32", "--shard-size", "1", "--shard", f"{i}/2"])
        assert result.exit_code == 0 and "saliencylab merge" in result.output
    assert not (tmp_path / "out" / "_manifest.json").exists()
    result = runner.invoke(app, ["merge", "-o", out])
    assert result.exit_code == 0, result.output
    assert open_artifact(out).manifest.num_samples == 5


def test_merge_before_workers_finish_is_refused(demo_dataset, tmp_path):
    out = str(tmp_path / "out")
    runner.invoke(app, ["ingest", "-i", str(demo_dataset[0]), "-o", out, "--size", "32", "--shard-size", "1", "--shard", "0/2"])
    result = runner.invoke(app, ["merge", "-o", out])
    assert result.exit_code == 2 and "not finished yet" in result.output


def test_progress_lines_in_a_log_and_resumed_shards_announced_once(demo_dataset, tmp_path):
    out = tmp_path / "out"
    args = ["ingest", "-i", str(demo_dataset[0]), "-o", str(out), "--size", "32", "--shard-size", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines[-1]["done"] == lines[-1]["total"] == 5 and lines[-1]["shards_done"] == lines[-1]["shards_total"] == 3
    assert all({"time", "stage", "shard", "rate", "eta_s"} <= set(line) for line in lines)
    (out / "_manifest.json").unlink()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("skipping 3 finished shards") == 1


@pytest.mark.parametrize("command", ["study", "augmentation-study", "xai-benchmark"])
def test_every_pipeline_command_has_the_common_options(command):
    help_text = runner.invoke(app, [command, "--help"]).output
    for option in ("--images", "--output", "--preset", "--set", "--force"):
        assert option in help_text, (command, option)


def test_demo_refuses_an_unknown_study_and_detectors_for_the_augmentation_study(tmp_path):
    result = runner.invoke(app, ["demo", "--study", "hsi", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "valid studies are 'empirical' and 'augmentation'" in result.output
    result = runner.invoke(app, ["demo", "--study", "augmentation", "--detectors", "detr", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "--detectors applies to the empirical study" in result.output
    assert list(tmp_path.iterdir()) == []


STUDY_MISTAKES = [
    (["--detectors", "faster_rcnn,yolov5", "--masks", "{masks}"], "unknown detector 'yolov5'; did you mean 'yolov5s'?"),
    (["--deepgaze-weights", "{tmp}/deepgaze2e.pth"], "step deepgaze: deepgaze.weights: weights {tmp}/deepgaze2e.pth: no such file"),
    (["--cam-weights", "ssd300={tmp}/ssd.pth"], "step cam/ssd300: cam.weights: weights {tmp}/ssd.pth: no such file"),
    (["--set", "ingset.size=256"], "--set ingset.size=256: unknown stage 'ingset'; did you mean 'ingest'?"),
    (["--set", "size=256"], "--set size=256: expected <stage>.<key>=<value>"),
    (["--set", "report.titel=x"], "step report: unknown report parameter 'titel'; did you mean 'title'?"),
    (["--set", "cam.batch_size=many"], "step cam/ssd300 (cam): batch_size must be int, got 'many'"),
    (["--images", "{tmp}/no-such-voc"], "--images {tmp}/no-such-voc: no such folder"),
]


@pytest.mark.parametrize(("args", "message"), STUDY_MISTAKES, ids=["detector", "deepgaze-weights", "cam-weights", "set-stage", "set-no-stage", "set-key", "set-value", "images"])
def test_study_mistakes_fail_before_anything_runs(demo_dataset, tmp_path, args, message):
    voc, masks = demo_dataset
    fill = {"tmp": str(tmp_path), "masks": str(masks)}
    base = {"--images": str(voc), "--detectors": "ssd300"}
    args = [a.format(**fill) for a in args]
    for option, value in base.items():
        if option not in args:
            args += [option, value]
    result = runner.invoke(app, ["study", "--output", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    assert message.format(**fill) in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_stage_help_shows_types_flags_choices_and_one_default_style():
    cam = _help("cam")
    assert "--batch-size" in cam and "INTEGER" in cam and "[faster_rcnn|mask_rcnn|retinanet|ssd300|ssdlite|yolov5s|detr]" in cam
    assert "[engine" not in cam and "[fast|grad-cam]" in cam and "[default: random]" in cam
    assert "--preset" not in cam and "<str>" not in cam and "(default: )" not in cam and "[default: ]" not in cam
    inpaint = _help("inpaint")
    assert "--amp" in inpaint and "--no-amp" in inpaint and "[paper|skip]" in inpaint
    assert "FLOAT" in _help("compare") or "FLOAT" in inpaint


def _help_in_a_fresh_process(*args: str) -> tuple[str, list[str]]:
    """The help text of `saliencylab *args --help` and the heavy modules (torch, job modules) it imported."""
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['saliencylab', *{list(args)!r}, '--help']\n"
        "try:\n    runpy.run_module('jobs.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "from saliencylab.stages import STAGES\n"
        "print('HEAVY', sorted(m for m in sys.modules if m == 'torch' or m in {s.module for s in STAGES}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, check=True)
    *text, heavy = result.stdout.splitlines()
    return "\n".join(text), json.loads(heavy.removeprefix("HEAVY ").replace("'", '"'))


def test_top_level_help_lists_every_stage_without_importing_torch():
    """`saliencylab --help` must stay fast: no job module and no torch imported just to list the stages."""
    text, heavy = _help_in_a_fresh_process()
    assert heavy == []
    for spec in STAGES:
        assert spec.name in text


@pytest.mark.parametrize("spec", STAGES, ids=lambda spec: spec.name)
def test_stage_help_does_not_import_torch(spec):
    """`<stage> --help` imports the stage's job module (and any it borrows from), never torch: that waits for the command's body."""
    text, heavy = _help_in_a_fresh_process(spec.name)
    assert "--output" in text and spec.module in heavy and "torch" not in heavy


def test_a_warning_is_printed_once_by_the_stage_that_raised_it(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    out = tmp_path / "ingest"
    result = runner.invoke(app, ["ingest", "-i", str(voc), "-i", str(masks), "-o", str(out), "--size", "32"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("WARNING [ingest]: the attention masks are SYNTHETIC") == 1
    synthetic = open_artifact(str(out)).manifest.warnings[0]
    new = "cam: faster_rcnn ran with RANDOM weights; its maps carry no learned signal"
    prepared = Prepared({"images": {"uri": str(out), "digest": "d"}}, (), lambda task, policy: [], (synthetic, new, new))
    assert own_warnings(prepared) == [new]  # the inherited SYNTHETIC warning stays in the manifest, unprinted


def test_study_help_lists_every_registered_detector():
    from saliencylab.cam import DETECTOR_NAMES

    listed = DETECTORS_HELP.split(" of ", 1)[1].split(";")[0].split(", ")
    assert listed == list(DETECTOR_NAMES)
    assert "--detectors" in _help("study") and "ssdlite" in _help("study")
