"""Storage: local and S3 behave alike; keys cannot escape; failures name the URI and their cause."""

from __future__ import annotations

import os
import stat

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
    assert storage.size("b.bin") == 3 and storage.size("a/none.bin") is None
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


def test_local_files_follow_the_umask(tmp_path):
    previous = os.umask(0o002)
    try:
        LocalStorage(tmp_path).write_bytes("x/f.bin", b"1")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x" / "f.bin").stat().st_mode) == 0o664


def test_remove_partials_deletes_only_temporary_files_of_that_folder(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write_bytes("keep.bin", b"1")
    storage.write_bytes("sub/keep.bin", b"2")
    for name in (".keep.bin.ab12.partial", "sub/.keep.bin.cd34.partial"):
        (tmp_path / name).write_bytes(b"cut")
    (tmp_path / ".hidden").write_bytes(b"not ours")
    assert storage.remove_partials() == [".keep.bin.ab12.partial"]
    assert storage.remove_partials("sub") == [".keep.bin.cd34.partial"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".hidden", "keep.bin", "keep.bin", "sub"]


@pytest.mark.s3
def test_s3_roundtrip(s3_env):
    _roundtrip(open_storage(f"s3://{s3_env.bucket}/storage-test"))


def _every_call(storage):
    """Each kind of S3 call on `storage`, as (name, thunk)."""
    return [
        ("bucket check", storage.check_writable),
        ("read", lambda: storage.read_bytes("k")),
        ("write", lambda: storage.write_bytes("k", b"1")),
        ("lookup", lambda: storage.exists("k")),
        ("lookup", lambda: storage.size("k")),
        ("delete", lambda: storage.delete("k")),
        ("listing", storage.list),
    ]


@pytest.mark.s3
def test_s3_missing_bucket_is_a_clear_error(s3_env):
    storage = open_storage("s3://no-such-bucket/x")
    with pytest.raises(StorageError, match="'no-such-bucket'.*does not exist"):
        storage.check_writable()
    for call in (lambda: storage.read_bytes("k"), storage.list):
        with pytest.raises(StorageError, match=r"of s3://no-such-bucket/x(/k)? failed: bucket 'no-such-bucket' does not exist at http"):
            call()


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_s3_wrong_credentials_are_named(s3_env, monkeypatch, wrong):
    """Regression: the error handler itself failed with "storage key '.' has an empty ... segment"."""
    monkeypatch.setenv(wrong, "wrong" + os.environ[wrong])
    reset_s3_client()
    storage = open_storage(f"s3://{s3_env.bucket}/runs/r1")
    for action, call in _every_call(storage):
        with pytest.raises(StorageError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"S3 {action} of s3://{s3_env.bucket}/runs/r1"), message
        assert f"access denied by {s3_env.endpoint}" in message and "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in message


@pytest.mark.s3
def test_s3_missing_credentials_are_named(s3_env, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    reset_s3_client()
    with pytest.raises(StorageError, match=rf"S3 bucket check of s3://{s3_env.bucket} failed: no S3 credentials found"):
        open_storage(f"s3://{s3_env.bucket}").check_writable()


def test_s3_unreachable_endpoint_is_a_clear_error(monkeypatch):
    from tests.s3server import _free_port

    endpoint = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_s3_client()
    try:
        for action, call in _every_call(open_storage("s3://bucket/p")):
            with pytest.raises(StorageError, match=rf"^S3 {action} of s3://bucket/p(/k)? failed: the endpoint {endpoint} is not reachable"):
                call()
    finally:
        reset_s3_client()


def test_read_uri_reads_one_file(tmp_path):
    from saliencylab.storage import read_uri

    (tmp_path / "w.bin").write_bytes(b"abc")
    assert read_uri(str(tmp_path / "w.bin")) == b"abc" and read_uri(f"file://{tmp_path}/w.bin") == b"abc"
    with pytest.raises(ValueError, match="names no file"):
        read_uri("s3://bucket")
