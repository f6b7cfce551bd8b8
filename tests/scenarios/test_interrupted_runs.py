"""Faults mid-run on real files and a real S3 server: SIGKILL, then the S3 server going away.

Both end the same way: rerunning the same command completes the artifact, byte-identical to an
uninterrupted run, with no shard lost or duplicated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saliencylab.artifacts import open_artifact
from saliencylab.storage import open_storage

from tests.voc_fixtures import make_voc

IMAGES = 48


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"), IMAGES, side=480)


def _command(voc: Path, output: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "ingest", "-i", str(voc), "-o", output, "--size", "512", "--shard-size", "1"]


def _start(voc: Path, output: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    repo = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        _command(voc, output), cwd=repo, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_parts(storage, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
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


@pytest.fixture(scope="module")
def reference(voc, tmp_path_factory) -> dict[str, bytes]:
    out = str(tmp_path_factory.mktemp("reference"))
    subprocess.run(_command(voc, out), check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2])
    return _shard_bytes(out)


def test_sigkill_then_rerun_is_byte_identical(voc, reference, tmp_path):
    out = str(tmp_path / "out")
    process = _start(voc, out)
    _wait_for_parts(open_storage(out), 5, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "out" / "_manifest.json").exists()
    done_before = len(open_storage(out).list("_parts"))
    assert 5 <= done_before < IMAGES
    rerun = subprocess.run(_command(voc, out), capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count('"skipped": true') >= done_before - 1  # the last part may have been cut mid-write
    assert _shard_bytes(out) == reference
    assert sorted(open_artifact(out).key_index()) == [f"img_{i:04d}" for i in range(IMAGES)]


@pytest.mark.s3
def test_s3_server_stops_mid_run_then_rerun_completes(voc, reference, s3_env):
    from saliencylab.storage import reset_s3_client

    server = s3_env
    uri = f"s3://{server.bucket}/runs/stop-test/ingest"
    process = _start(voc, uri, server.env())
    _wait_for_parts(open_storage(uri), 3, process)
    server.stop()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "error: S3" in stderr and "runs/stop-test/ingest" in stderr and "reachable" in stderr
    server.start()
    reset_s3_client()
    assert not open_storage(uri).exists("_manifest.json")
    rerun = _start(voc, uri, server.env())
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert _shard_bytes(uri) == reference  # same bytes as the local, uninterrupted run
    assert sorted(open_artifact(uri).key_index()) == [f"img_{i:04d}" for i in range(IMAGES)]
