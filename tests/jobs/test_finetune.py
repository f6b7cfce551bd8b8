"""The finetune stage through the CLI on a tiny training set: outputs, summary, bad input."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.runner import RunRequest, plan_tasks, run_stage
from saliencylab.storage import LocalStorage
from saliencylab.training.model import build_finetune_model
from saliencylab.weights import load_finetuned

from jobs.cli import app

runner = CliRunner()
SMALL = ["--architecture", "fasterrcnn_tiny", "--min-size", "64", "--max-size", "64", "--device", "cpu"]


def _meta(boxes, labels, size=(48, 64)) -> dict:
    return {"size": list(size), "original_size": list(size), "boxes": boxes, "labels": labels, "difficult": [False] * len(labels)}


def write_training_set(path, metas: dict[str, dict]) -> str:
    """A training-set artifact (ingest's format) of textured images with the given meta.json."""
    rng = np.random.default_rng(0)
    images = {k: rng.integers(0, 256, (*m["size"], 3), dtype=np.uint8) for k, m in metas.items()}
    request = RunRequest("ingest", "1", {}, {}, plan_tasks(sorted(metas), 2))
    run_stage(LocalStorage(path), request, lambda t, p: [{"__key__": k, "image.png": images[k], "meta.json": metas[k]} for k in t.items])
    return str(path)


@pytest.fixture(scope="module")
def training_set(tmp_path_factory) -> str:
    metas = {
        "a": _meta([[4, 4, 40, 30]], ["cat"]),
        "b": _meta([[10, 2, 70, 40], [0, 0, 0, 10]], ["dog", "person"]),  # reaches past x=64; a zero-width box
        "c": _meta([], []),  # a negative
        "d": _meta([[1, 1, 20, 20]], ["unicorn"]),  # not a VOC class
        "e": _meta([[5, 6, 30, 44]], ["car"]),
    }
    return write_training_set(tmp_path_factory.mktemp("train"), metas)


def _finetune(train: str, out, *extra: str):
    return runner.invoke(app, ["finetune", "-i", train, "-o", str(out), *SMALL, *extra])


def test_finetune_writes_weights_curves_and_summary(training_set, tmp_path):
    result = _finetune(training_set, tmp_path / "ft", "--epochs", "2", "--batch-size", "2", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    artifact = open_artifact(str(tmp_path / "ft"))
    manifest, summary = artifact.manifest, artifact.manifest.summary
    assert [q.key for q in manifest.quarantine] == ["d"] and "unicorn" in manifest.quarantine[0].error
    assert any("RANDOM" in w for w in manifest.warnings)
    assert summary["num_classes"] == 21 and summary["classes"][1] == "aeroplane" and summary["classes"][20] == "tvmonitor"
    assert summary["data"]["images"] == 4 and summary["data"]["negatives"] == 1 and summary["data"]["excluded"] == ["d"]
    assert summary["data"]["boxes"] == {"given": 4, "clipped": 1, "outside_dropped": 0, "degenerate_dropped": 1, "difficult_dropped": 0, "kept": 3}
    assert summary["recipe"]["iterations_per_epoch"] == 2 and summary["recipe"]["warmup_iterations"] == 1
    assert sorted(summary["weights"]) == ["epoch-1", "epoch-2", "final"]
    rows = list(csv.DictReader(io.StringIO(artifact.storage.read_bytes("curves.csv").decode())))
    assert [(r["epoch"], r["iteration"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    assert float(rows[0]["lr"]) == pytest.approx(0.005 * 0.001) and float(rows[1]["lr"]) == pytest.approx(0.005)
    assert all(np.isfinite(float(r["loss"])) for r in rows) and manifest.num_samples == 4
    assert len(artifact.storage.read_bytes("epochs.csv").decode().splitlines()) == 3
    tuned = load_finetuned(str(tmp_path / "ft"))  # what evaluate and cam read
    assert tuned.num_classes == 21
    model = build_finetune_model("fasterrcnn_tiny", None, min_size=64, max_size=64)
    load_state_dict_strict(model, tuned.state_dict)
    assert artifact.storage.read_bytes("weights/final.safetensors") == artifact.storage.read_bytes("weights/epoch-2.safetensors")
    rerun = _finetune(training_set, tmp_path / "ft", "--epochs", "2", "--batch-size", "2", "--on-error", "skip")
    assert rerun.exit_code == 0 and open_artifact(str(tmp_path / "ft")).digest == artifact.digest


def test_a_class_outside_voc_stops_the_run_listing_the_valid_names(training_set, tmp_path):
    result = _finetune(training_set, tmp_path / "ft")
    assert result.exit_code == 2
    assert "'d'" in result.output and "unicorn" in result.output and "tvmonitor" in result.output
    assert not (tmp_path / "ft" / "_manifest.json").exists()


def test_an_empty_training_set_is_refused(tmp_path):
    empty = write_training_set(tmp_path / "empty", {})
    result = _finetune(empty, tmp_path / "ft")
    assert result.exit_code == 2 and "has no images" in result.output


def test_no_usable_image_is_refused(tmp_path):
    negatives = write_training_set(tmp_path / "neg", {"a": _meta([], []), "b": _meta([[3, 3, 3, 9]], ["cat"])})
    result = _finetune(negatives, tmp_path / "ft", "--empty-images", "skip")
    assert result.exit_code == 2 and "0 usable training image(s) among 2 samples (2 without boxes skipped" in result.output


def test_weights_of_another_architecture_name_the_mismatching_keys(training_set, tmp_path):
    weights = tmp_path / "other.safetensors"
    save_file({"backbone.features.0.weight": torch.zeros(8, 3, 3, 3)}, weights)
    result = _finetune(training_set, tmp_path / "ft", "--weights", str(weights), "--on-error", "skip")
    assert result.exit_code == 2
    assert "COCO layout" in result.output and "backbone.features.0.weight" in result.output and "missing keys" in result.output


def test_a_loss_that_becomes_nan_stops_naming_the_batch_and_keeps_the_checkpoint(training_set, tmp_path):
    out = tmp_path / "ft"
    result = _finetune(training_set, out, "--lr", "1e8", "--no-warmup", "--batch-size", "2", "--checkpoint-every", "1", "--on-error", "skip")
    assert result.exit_code == 2 and "loss is not finite at global iteration 1" in result.output
    assert "batch samples: [" in result.output and "intact" in result.output
    from saliencylab.training.checkpoint import load_checkpoint

    latest = load_checkpoint(LocalStorage(out), _run_of(out))
    assert latest.position.epoch == 0 and latest.position.iteration == 1  # the checkpoint after the last good step
    assert not (out / "_manifest.json").exists()


def _run_of(out) -> str:
    return json.loads((out / "checkpoints" / "latest.json").read_text())["run"]


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--processes", "2", "--batch-size", "3"], "divide batch_size"), (["--architecture", "yolo"], "valid: ['fasterrcnn_resnet50_fpn'")],
)
def test_bad_settings_are_refused_before_training(training_set, tmp_path, option, message):
    result = runner.invoke(app, ["finetune", "-i", training_set, "-o", str(tmp_path / "ft"), "--device", "cpu", *option])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.slow
def test_two_processes_under_torchrun_share_each_batch(training_set, tmp_path):
    """DistributedDataParallel on the CPU (Gloo): rank 0 writes the artifact, rank 1 trains in step and writes nothing."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "jobs.cli",
        "finetune", "-i", training_set, "-o", str(out), *SMALL, "--processes", "2", "--batch-size", "2", "--epochs", "1",
        "--on-error", "skip",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "this torchrun process is done; rank 0 writes the output" in result.stderr
    summary = open_artifact(str(out)).manifest.summary
    assert summary["recipe"]["processes"] == 2 and summary["recipe"]["iterations_per_epoch"] == 2
    rows = list(csv.DictReader(io.StringIO((out / "curves.csv").read_text())))
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)
    checkpoint = json.loads((out / "checkpoints" / "latest.json").read_text())
    from safetensors.torch import load_file

    rng = [k for k in load_file(out / checkpoint["tensors"]) if k.startswith("rng.cpu.")]
    assert sorted(rng) == ["rng.cpu.0", "rng.cpu.1"]  # both processes' sampling streams are saved
