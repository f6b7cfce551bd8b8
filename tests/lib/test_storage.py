"""Storage: local and S3 behave alike; keys cannot escape; failures name the URI."""

from __future__ import annotations

import pytest

from saliencylab.storage import LocalStorage, S3Storage, StorageError, check_key, join_uri, open_storage, reset_s3_client


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b", "a\\b"])
def test_check_key_rejects_escaping_keys(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_open_storage_parses_uris(tmp_path):
    assert isinstance(open_storage(tmp_path), LocalStorage)
    assert open_storage(f"file://{tmp_path}").root == tmp_path
    s3 = open_storage("s3://bucket/runs/r1/")
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "runs/r1")
    assert s3.child("ingest").uri == "s3://bucket/runs/r1/ingest"
    with pytest.raises(ValueError, match="unsupported"):
        open_storage("gs://bucket/x")
    with pytest.raises(ValueError):
        open_storage("s3://bucket/../x")
    assert join_uri("s3://b/p", "x", "y") == "s3://b/p/x/y"


def _roundtrip(storage):
    storage.write_bytes("a/one.bin", b"1")
    storage.write_bytes("a/two.bin", b"22")
    storage.write_bytes("b.bin", b"333")
    assert storage.read_bytes("a/two.bin") == b"22"
    assert storage.exists("a/one.bin") and not storage.exists("a/none.bin")
    assert storage.list() == ["a/one.bin", "a/two.bin", "b.bin"]
    assert storage.list("a") == ["a/one.bin", "a/two.bin"]
    assert storage.child("a").list() == ["one.bin", "two.bin"]
    storage.delete("b.bin")
    assert not storage.exists("b.bin")
    with pytest.raises(FileNotFoundError, match="none.bin"):
        storage.read_bytes("a/none.bin")
    with pytest.raises(ValueError):
        storage.write_bytes("../escape", b"x")


def test_local_roundtrip_and_atomic_write(tmp_path):
    storage = LocalStorage(tmp_path)
    _roundtrip(storage)
    storage.write_bytes("a/one.bin", b"new")
    assert [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")] == []  # no temp files left


@pytest.mark.s3
def test_s3_roundtrip(s3_env):
    _roundtrip(open_storage(f"s3://{s3_env.bucket}/storage-test"))


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_error(s3_env):
    with pytest.raises(StorageError, match="'no-such-bucket'.*does not exist"):
        open_storage("s3://no-such-bucket/x").check_writable()
    with pytest.raises((StorageError, FileNotFoundError), match="no-such-bucket"):
        open_storage("s3://no-such-bucket/x").read_bytes("k")


def test_s3_unreachable_endpoint_is_a_clear_error(monkeypatch):
    from tests.s3server import _free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    reset_s3_client()
    try:
        with pytest.raises(StorageError, match="s3://bucket/k.*reachable"):
            open_storage("s3://bucket").read_bytes("k")
    finally:
        reset_s3_client()


def test_read_uri_reads_one_file(tmp_path):
    from saliencylab.storage import read_uri

    (tmp_path / "w.bin").write_bytes(b"abc")
    assert read_uri(str(tmp_path / "w.bin")) == b"abc" and read_uri(f"file://{tmp_path}/w.bin") == b"abc"
    with pytest.raises(ValueError, match="names no file"):
        read_uri("s3://bucket")
