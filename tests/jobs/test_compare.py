"""The compare stage: join by key, resample to one grid, per-sample metrics, summary with CIs, no silent drops."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.runner import RunRequest, plan_tasks, run_stage
from saliencylab.storage import LocalStorage

from jobs.cli import app

runner = CliRunner()


def _map_artifact(path, maps: dict[str, np.ndarray], stage="cam", field="cam.npy"):
    """A finished artifact holding one map per key, as a stage would write it."""
    items = sorted(maps)
    request = RunRequest(stage, "1", {"detector": "toy"}, {}, plan_tasks(items, 2))
    return run_stage(LocalStorage(path), request, lambda task, policy: [{"__key__": k, field: maps[k]} for k in task.items])


@pytest.fixture
def ingested(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    out = tmp_path / "ingest"
    assert runner.invoke(app, ["ingest", "-i", str(voc), "-i", str(masks), "-o", str(out), "--size", "64"]).exit_code == 0
    return out


def test_identical_maps_score_perfectly_and_missing_pairs_are_listed(ingested, tmp_path):
    masks = {k: s["mask.png"] for k, s in open_artifact(str(ingested)).lookup(["demo_000001", "demo_000002", "demo_000003"]).items()}
    cams = {k: (m.astype(np.float32) / 255).astype(np.float16) for k, m in masks.items()}
    cams["demo_000009"] = np.ones((64, 64), np.float16)  # a key the target does not have
    cams["demo_000005"] = np.random.default_rng(0).random((32, 32)).astype(np.float16)  # target has no mask; other grid
    _map_artifact(tmp_path / "cam", cams)
    result = runner.invoke(app, ["compare", "-i", f"pred={tmp_path / 'cam'}", "-i", f"target={ingested}", "-o", str(tmp_path / "cmp"), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    summary = open_artifact(str(tmp_path / "cmp")).manifest.summary
    assert summary["pairs"] == 3
    assert summary["missing_target"] == ["demo_000005", "demo_000009"]
    assert summary["missing_pred"] == ["demo_000004"]
    cc = summary["metrics"]["cc"]
    assert cc["mean"] == pytest.approx(1.0, abs=1e-3) and cc["ci_low"] <= cc["mean"] <= cc["ci_high"]
    assert summary["metrics"]["mae"]["mean"] < 1e-3 and summary["metrics"]["iou_exact"]["mean"] == pytest.approx(1.0, abs=1e-2)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "cmp" / "metrics.csv").read_text())))
    assert [r["status"] for r in rows].count("ok") == 3 and len(rows) == 5


def test_constant_maps_are_counted_not_averaged(ingested, tmp_path):
    _map_artifact(tmp_path / "cam", {"demo_000001": np.zeros((64, 64), np.float16), "demo_000002": np.eye(64, dtype=np.float16)})
    result = runner.invoke(app, ["compare", "-i", str(tmp_path / "cam"), "-i", str(ingested), "-o", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    summary = open_artifact(str(tmp_path / "cmp")).manifest.summary
    assert summary["status_counts"] == {"constant_pred": 1, "ok": 1}
    assert summary["pairs"] == 1


def test_grid_policy_resamples_to_the_target(ingested, tmp_path):
    big = {k: np.kron(s["mask.png"], np.ones((2, 2), np.uint8)).astype(np.float32) / 255 for k, s in open_artifact(str(ingested)).lookup(["demo_000002"]).items()}
    _map_artifact(tmp_path / "cam", big)
    assert runner.invoke(app, ["compare", "-i", str(tmp_path / "cam"), "-i", str(ingested), "-o", str(tmp_path / "cmp")]).exit_code == 0
    assert open_artifact(str(tmp_path / "cmp")).manifest.summary["metrics"]["cc"]["mean"] > 0.99


def test_unknown_map_field_is_a_clear_error(ingested, tmp_path):
    _map_artifact(tmp_path / "x", {"demo_000001": np.ones((4, 4), np.float16)}, stage="other", field="x.npy")
    result = runner.invoke(app, ["compare", "-i", str(tmp_path / "x"), "-i", str(ingested), "-o", str(tmp_path / "cmp")])
    assert result.exit_code == 2 and "no default map field for stage 'other'" in result.output
