"""finetune killed with SIGKILL mid-run, then rerun: it continues from its last checkpoint and ends
with the same weights, curves and manifest, byte for byte, as an uninterrupted run (CPU, 6 images
of 64 px, 2 epochs of 3 iterations, a checkpoint every 2 iterations, the tiny test detector: the
checkpoint logic does not depend on the architecture, and tests/lib/test_finetune_training.py
trains the torchvision ones)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app
from tests.voc_fixtures import make_voc

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [
    "--architecture", "fasterrcnn_tiny", "--min-size", "64", "--max-size", "64", "--device", "cpu",
    "--epochs", "2", "--batch-size", "2", "--checkpoint-every", "2", "--shuffle-buffer", "4", "--seed", "11",
]  # fmt: skip


@pytest.fixture(scope="module")
def train(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("resume")
    voc = make_voc(root / "voc", 6, side=64)
    result = CliRunner().invoke(app, ["ingest", "-i", str(voc), "-o", str(root / "train"), "--resize", "none", "--shard-size", "2"])
    assert result.exit_code == 0, result.output
    return str(root / "train")


def _files(out: Path) -> dict[str, bytes]:
    artifact = open_artifact(str(out))
    names = ["_manifest.json", "curves.csv", "epochs.csv", *artifact.manifest.summary["weights"].values(), *(s.name for s in artifact.manifest.shards)]
    return {name: artifact.storage.read_bytes(name) for name in names}


def _wait_for_checkpoint(out: Path, process: subprocess.Popen, timeout: float = 300) -> dict:
    latest = out / "checkpoints" / "latest.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if latest.exists():
            return json.loads(latest.read_text())
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.01)
    pytest.fail("no checkpoint appeared")


def test_sigkill_then_rerun_ends_with_the_same_weights(train, tmp_path):
    reference = CliRunner().invoke(app, ["finetune", "-i", train, "-o", str(tmp_path / "reference"), *SETTINGS])
    assert reference.exit_code == 0, reference.output

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "jobs.cli", "finetune", "-i", train, "-o", str(out), *SETTINGS]
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = _wait_for_checkpoint(out, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first["position"]["epoch"] == 0 and first["position"]["iteration"] == 2  # mid-epoch: after 2 of 3 steps
    assert not (out / "_manifest.json").exists()
    stopped_at = json.loads((out / "checkpoints" / "latest.json").read_text())["position"]
    assert stopped_at["global_step"] < 6  # killed before the end

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _files(out) == _files(tmp_path / "reference")


def _torchrun(train: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "jobs.cli",
        "finetune", "-i", train, "-o", str(out), *SETTINGS, "--processes", "2",
    ]  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """Child processes of `pid`, recursively (torchrun starts its workers in their own sessions)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [d for c in children for d in (c, *_descendants(c))]


@pytest.mark.slow
def test_two_process_run_killed_after_an_epoch_then_rerun_matches(train, tmp_path):
    """Rank 0 skips the finished epoch through the runner's resume; rank 1 reads it back without collectives."""
    reference = subprocess.run(_torchrun(train, tmp_path / "reference"), cwd=REPO, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen(_torchrun(train, out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = out / "_parts" / "shard-000000.json"
    deadline = time.monotonic() + 300
    while not part.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert part.exists() and process.poll() is None, "the run ended or stalled before epoch 1 was recorded"
    for pid in [*_descendants(process.pid), process.pid]:  # both training processes, then torchrun
        os.kill(pid, signal.SIGKILL)
    process.wait()
    assert not (out / "_manifest.json").exists()

    rerun = subprocess.run(_torchrun(train, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "finetune: skipping " in rerun.stderr  # epoch 1 was not trained again (reused shards are announced once)
    assert _files(out) == _files(tmp_path / "reference")
