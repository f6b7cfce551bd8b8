"""The command line: every registered stage has a --help, sharded runs merge, the demo runs."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.progress import Progress
from saliencylab.stages import STAGES

from jobs.cli import app

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


def test_progress_writes_json_lines_off_a_terminal():
    stream = io.StringIO()
    progress = Progress("ingest", total=2, stream=stream, interactive=False)
    progress.advance("shard-000000.tar", samples=3)
    progress.advance("shard-000001.tar", skipped=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {"stage": "ingest", "shard": "shard-000000.tar", "done": 1, "total": 2, "samples": 3}
    assert lines[1]["skipped"] is True
