"""Faults mid-run on real files and a real S3 server: SIGKILL, the S3 server going away, a fanned-out run.

Each ends the same way: rerunning the same command (or merging the workers) completes the
artifact, byte-identical to an uninterrupted run, with no shard lost or duplicated. The model
stages run with seeded random weights at 64x64, so their reruns are byte-identical too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.storage import open_storage

from jobs.cli import app
from tests.voc_fixtures import make_voc

IMAGES = 48
REPO = Path(__file__).resolve().parents[2]
MODEL_STAGES = {
    # stage: (images in the input artifact, one per shard; extra arguments)
    "cam": (4, ["--detector", "ssdlite", "--batch-size", "1"]),
    "deepgaze": (2, ["--batch-size", "1"]),
}


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"), IMAGES, side=480)


def _command(voc: Path, output: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "ingest", "-i", str(voc), "-o", output, "--size", "512", "--shard-size", "1"]


def _start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_parts(storage, count: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(storage.list("_parts")) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("the run made no progress")


def _shard_bytes(uri: str) -> dict[str, bytes]:
    artifact = open_artifact(uri)
    return {"_manifest.json": artifact.storage.read_bytes("_manifest.json")} | {
        s.name: artifact.storage.read_bytes(s.name) for s in artifact.manifest.shards
    }


def _kill_then_rerun(command: list[str], out: Path, parts: int, total: int) -> None:
    """Start `command`, SIGKILL it after `parts` part records, check nothing is complete, rerun it to the end."""
    process = _start(command)
    _wait_for_parts(open_storage(str(out)), parts, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "_manifest.json").exists()
    done_before = len(open_storage(str(out)).list("_parts"))
    assert parts <= done_before < total
    rerun = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert rerun.returncode == 0, rerun.stderr
    skipped = re.search(r": skipping (\d+) finished shards? ", rerun.stderr)  # announced once
    assert skipped and int(skipped.group(1)) >= done_before - 1  # the last part may have been cut mid-write
    assert not [p.name for p in out.rglob(".*.partial")]  # the kill's temporary files are gone


@pytest.fixture(scope="module")
def reference(voc, tmp_path_factory) -> dict[str, bytes]:
    out = str(tmp_path_factory.mktemp("reference"))
    subprocess.run(_command(voc, out), check=True, capture_output=True, cwd=REPO)
    return _shard_bytes(out)


def test_sigkill_then_rerun_is_byte_identical(voc, reference, tmp_path):
    out = tmp_path / "out"
    _kill_then_rerun(_command(voc, str(out)), out, 5, IMAGES)
    assert _shard_bytes(str(out)) == reference
    assert sorted(open_artifact(str(out)).key_index()) == [f"img_{i:04d}" for i in range(IMAGES)]


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory) -> dict[str, Path]:
    """Per model stage, an ingested artifact of a few 64x64 images, one image per shard."""
    voc = make_voc(tmp_path_factory.mktemp("tiny-voc"), max(n for n, _ in MODEL_STAGES.values()), side=64)
    artifacts = {}
    for stage, (count, _) in MODEL_STAGES.items():
        out = tmp_path_factory.mktemp(f"tiny-{stage}")
        args = ["ingest", "-i", str(voc), "-o", str(out), "--size", "64", "--shard-size", "1", "--limit", str(count)]
        assert CliRunner().invoke(app, args).exit_code == 0
        artifacts[stage] = out
    return artifacts


def _model_args(stage: str, images: Path, out: Path) -> list[str]:
    return [stage, "-i", str(images), "-o", str(out), *MODEL_STAGES[stage][1]]


@pytest.fixture(scope="module")
def uninterrupted(tiny_images, tmp_path_factory):
    """The bytes of an uninterrupted run of a model stage (in this process), computed once per stage."""
    done: dict[str, dict[str, bytes]] = {}

    def run(stage: str) -> dict[str, bytes]:
        if stage not in done:
            out = tmp_path_factory.mktemp(f"uninterrupted-{stage}")
            result = CliRunner().invoke(app, _model_args(stage, tiny_images[stage], out))
            assert result.exit_code == 0, result.output
            assert any("RANDOM weights" in w for w in open_artifact(str(out)).manifest.warnings)
            done[stage] = _shard_bytes(str(out))
        return done[stage]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(MODEL_STAGES))
def test_model_stage_with_random_weights_killed_and_rerun_is_byte_identical(stage, tiny_images, uninterrupted, tmp_path):
    """Regression: `--weights random` drew a new model per process, so a resumed run mixed two models."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "jobs.cli", *_model_args(stage, tiny_images[stage], out)]
    _kill_then_rerun(command, out, 1, MODEL_STAGES[stage][0])
    assert _shard_bytes(str(out)) == uninterrupted(stage)  # other processes, the same model


@pytest.mark.slow
def test_fanned_out_cam_run_then_merge_is_byte_identical(tiny_images, uninterrupted, tmp_path):
    runner = CliRunner()
    fanned = tmp_path / "fanned"
    for i in range(2):
        result = runner.invoke(app, [*_model_args("cam", tiny_images["cam"], fanned), "--shard", f"{i}/2"])
        assert result.exit_code == 0 and "run `saliencylab merge" in result.output, result.output
        assert not (fanned / "_manifest.json").exists()
    result = runner.invoke(app, ["merge", "--output", str(fanned)])
    assert result.exit_code == 0, result.output
    assert _shard_bytes(str(fanned)) == uninterrupted("cam")


@pytest.mark.s3
def test_s3_server_stops_mid_run_then_rerun_completes(voc, reference, s3_env):
    from saliencylab.storage import reset_s3_client

    server = s3_env
    uri = f"s3://{server.bucket}/runs/stop-test/ingest"
    process = _start(_command(voc, uri), server.env())
    _wait_for_parts(open_storage(uri), 3, process)
    server.stop()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "error: S3" in stderr and "runs/stop-test/ingest" in stderr and "reachable" in stderr
    server.start()
    reset_s3_client()
    assert not open_storage(uri).exists("_manifest.json")
    rerun = _start(_command(voc, uri), server.env())
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert _shard_bytes(uri) == reference  # same bytes as the local, uninterrupted run
    assert sorted(open_artifact(uri).key_index()) == [f"img_{i:04d}" for i in range(IMAGES)]
