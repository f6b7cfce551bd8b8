"""Storage failures through the CLI name their cause and the URI, against a real S3 server (SeaweedFS).

Regression: with wrong credentials, a missing bucket or an unreachable endpoint the user read
"storage key '.' has an empty, '.' or '..' segment" (the error handler raised its own error).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from saliencylab.storage import reset_s3_client

from jobs.cli import app
from tests.s3server import _free_port
from tests.voc_fixtures import make_voc

runner = CliRunner()


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"), 2, side=64)


def _ingest_to(voc: Path, output: str):
    return runner.invoke(app, ["ingest", "-i", str(voc), "-o", output, "--size", "64"])


def _fails_with(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "storage key" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


@pytest.fixture
def fresh_client():
    """Every S3 client of the test is built from the environment as the test leaves it."""
    reset_s3_client()
    yield
    reset_s3_client()


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_wrong_credentials_are_named(voc, s3_env, monkeypatch, fresh_client, wrong):
    monkeypatch.setenv(wrong, "not-the-right-one")
    uri = f"s3://{s3_env.bucket}/runs/creds/ingest"
    _fails_with(
        _ingest_to(voc, uri),
        f"error: S3 bucket check of {uri} failed: access denied by {s3_env.endpoint}",
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are wrong",
    )


@pytest.mark.s3
def test_a_missing_output_bucket_is_named(voc, s3_env, fresh_client):
    _fails_with(_ingest_to(voc, "s3://no-such-bucket/runs/x/ingest"), "bucket 'no-such-bucket' of s3://no-such-bucket/runs/x/ingest does not exist")


@pytest.mark.s3
def test_a_missing_input_bucket_is_named(s3_env, fresh_client, tmp_path):
    result = runner.invoke(app, ["cam", "-i", "s3://no-such-bucket/runs/x/ingest", "-o", str(tmp_path / "cam")])
    _fails_with(
        result,
        "S3 read of s3://no-such-bucket/runs/x/ingest/_manifest.json failed",
        f"bucket 'no-such-bucket' does not exist at {s3_env.endpoint}",
    )
    assert not (tmp_path / "cam").exists()


def test_an_unreachable_endpoint_is_named(voc, monkeypatch, fresh_client):
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    for name, value in {
        "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    reset_s3_client()
    _fails_with(_ingest_to(voc, "s3://bucket/runs/x/ingest"), f"S3 bucket check of s3://bucket/runs/x/ingest failed: the endpoint {endpoint} is not reachable")
