"""`saliencylab outcome`, the exit handler of the cluster runs, on a real run: one finished step, one
step whose workers ran but whose merge did not, and Argo's failure list."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from jobs.cli import app

runner = CliRunner()
FAILURES = [
    {"displayName": "cam-faster-rcnn.worker(1:1/2)", "templateName": "worker", "phase": "Failed",
     "message": "OOMKilled (exit code 137)", "podName": "study-x-worker-123", "finishedAt": "2026-11-25T10:00:00Z"},
]  # fmt: skip


def _ingest(run, images, *extra):
    argv = ["ingest", "--input", f"images={images}", "--output", str(run / "ingest"), "--size", "32", "--shard-size", "2", *extra]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output


def test_outcome_records_status_failures_finished_and_unfinished_artifacts(demo_dataset, tmp_path):
    run = tmp_path / "run"
    _ingest(run, demo_dataset[0], "--on-error", "skip")
    unfinished = run / "ingest-half"
    result = runner.invoke(app, ["ingest", "--input", f"images={demo_dataset[0]}", "--output", str(unfinished), "--size", "32", "--shard-size", "2", "--shard", "0/2"])
    assert result.exit_code == 0, result.output  # one worker of two, and no merge: no manifest

    argv = ["outcome", "--run", str(run), "--workflow", "study-x", "--status", "Failed", "--failures", json.dumps(FAILURES)]
    result = runner.invoke(app, [*argv, "--duration", "812.5", "--numbers-dir", str(tmp_path / "numbers")])
    assert result.exit_code == 0, result.output

    outcome = json.loads((run / "_outcome" / "study-x.json").read_text())
    assert outcome["status"] == "Failed" and outcome["workflow"] == "study-x" and outcome["duration_s"] == 812.5
    assert outcome["failed_steps"] == [
        {"name": "cam-faster-rcnn.worker(1:1/2)", "template": "worker", "phase": "Failed", "message": "OOMKilled (exit code 137)", "pod": "study-x-worker-123"}
    ]
    (ingest,) = outcome["artifacts"]
    manifest = json.loads((run / "ingest" / "_manifest.json").read_text())
    assert ingest["uri"] == str(run / "ingest") and ingest["stage"] == "ingest"
    assert ingest["samples"] == manifest["num_samples"] and ingest["shards"] == len(manifest["shards"]) == 3
    assert ingest["quarantined"] == len(manifest["quarantine"]) and ingest["code_version"] == manifest["code_version"]
    assert outcome["unfinished"] == [str(unfinished)]
    assert outcome["totals"] == {"artifacts": 1, "shards": 3, "samples": manifest["num_samples"], "quarantined": len(manifest["quarantine"]), "failed-steps": 1}
    numbers = {p.name: p.read_text().strip() for p in (tmp_path / "numbers").iterdir()}
    assert numbers == {k: str(v) for k, v in outcome["totals"].items()}


def test_outcome_of_a_succeeded_stage_run_with_argo_placeholders_left_unresolved(demo_dataset, tmp_path):
    """A single stage's run root is its output; an exit handler of a run that did not fail gets no failure list."""
    run = tmp_path / "run"
    _ingest(run, demo_dataset[0])
    argv = ["outcome", "--run", str(run / "ingest"), "--workflow", "ingest-abc", "--status", "Succeeded"]
    result = runner.invoke(app, [*argv, "--failures", "{{workflow.failures}}", "--duration", "{{workflow.duration}}"])
    assert result.exit_code == 0, result.output
    outcome = json.loads((run / "ingest" / "_outcome" / "ingest-abc.json").read_text())
    assert outcome["failed_steps"] == [] and outcome["duration_s"] is None
    assert [a["uri"] for a in outcome["artifacts"]] == [str(run / "ingest")] and outcome["unfinished"] == []
    # the record inside the artifact does not disturb it: the stage still finds its run complete
    _ingest(run, demo_dataset[0])


def test_outcome_refuses_a_bad_failure_list_or_workflow_name_clearly(tmp_path):
    base = ["outcome", "--run", str(tmp_path), "--status", "Failed"]
    result = runner.invoke(app, [*base, "--workflow", "x", "--failures", "{not json"])
    assert result.exit_code == 2 and "--failures is not the JSON list" in result.output
    result = runner.invoke(app, [*base, "--workflow", "../x"])
    assert result.exit_code == 2 and "cannot name a file" in result.output
