"""Byte storage behind one small interface: local folders (`/path`, `file:///path`) and `s3://bucket/prefix`.

Every write is atomic for readers: a local file is written to a hidden temporary name
(`.<name>.<random>.partial`, created with the process umask) and renamed into place; an S3 object
becomes visible only when its PUT completes. A kill between the two leaves the temporary file,
which `remove_partials` deletes on the next run. Keys are relative,
`/`-separated paths; absolute keys and `..` segments are rejected so a key can never escape its root.

S3 is configured the standard boto3 way (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); no credential is ever read from code.
A failed S3 call raises StorageError naming the URI and the cause: access denied (wrong
credentials), no credentials, missing bucket, or an unreachable endpoint.
"""

from __future__ import annotations

import os
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


PARTIAL_SUFFIX = ".partial"


class StorageError(RuntimeError):
    """A storage operation failed; the message names the URI and what to check."""


def check_key(key: str) -> str:
    """Return `key` normalised, or raise ValueError if it is absolute, empty or climbs out with `..`."""
    if not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"storage key {key!r} must be a non-empty relative '/'-separated path")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


class Storage(Protocol):
    """Where one artifact (or a tree of them) lives. All keys are relative to `uri`."""

    uri: str

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...

    def remove_partials(self, prefix: str = "") -> list[str]: ...

    def check_writable(self) -> None: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def child(self, key: str) -> "Storage": ...


@dataclass(frozen=True)
class LocalStorage:
    """A folder on the local file system."""

    root: Path

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
        # os.open with mode 0o666 applies the process umask, as open() does (mkstemp would force 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        """The size of `key` in bytes, or None when it does not exist."""
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def remove_partials(self, prefix: str = "") -> list[str]:
        """Delete the temporary files of interrupted writes directly in folder `prefix`; return their names.

        Call it only while no other process writes there: a concurrent writer would lose its file.
        """
        folder = self._path(prefix) if prefix else self.root
        if not folder.is_dir():
            return []
        removed = sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(PARTIAL_SUFFIX))
        for name in removed:
            (folder / name).unlink(missing_ok=True)
        return removed

    def check_writable(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root} is not writable")

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                keys.append(path.relative_to(self.root).as_posix())
        return sorted(keys)

    def child(self, key: str) -> "LocalStorage":
        return LocalStorage(self._path(key))


def _s3_client():
    """A boto3 S3 client with adaptive retries and the checksum mode MinIO and older servers need."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5")), "mode": "adaptive"},
        connect_timeout=float(os.environ.get("SALIENCYLAB_S3_CONNECT_TIMEOUT", "5")),
        read_timeout=60,
        s3={"addressing_style": os.environ.get("SALIENCYLAB_S3_ADDRESSING", "path")},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A new session, not boto3's default one: that caches the credentials it first found, so
    # reset_s3_client() would not pick up changed AWS_* variables.
    return boto3.session.Session().client("s3", config=config)


@dataclass(frozen=True)
class S3Storage:
    """A prefix in an S3-compatible bucket."""

    bucket: str
    prefix: str  # no leading or trailing '/'; '' for the bucket root

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def _client(self):
        return _shared_client()

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str | None, error: Exception) -> StorageError:
        """The StorageError for a failed call on `key` (None: the prefix itself), naming the URI and the cause."""
        uri = f"s3://{self.bucket}/{self._key(key)}" if key else self.uri
        return StorageError(f"S3 {action} of {uri} failed: {_s3_cause(error, self.bucket)}")

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"s3://{self.bucket}/{self._key(key)} does not exist") from None
            raise self._fail("read", key, e) from e
        except BotoCoreError as e:
            raise self._fail("read", key, e) from e

    def write_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as e:
            raise self._fail("write", key, e) from e

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail("lookup", key, e) from e
        except BotoCoreError as e:
            raise self._fail("lookup", key, e) from e

    def check_writable(self) -> None:
        """Fail early and clearly when the bucket is missing or unreachable (some servers create it on PUT)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(f"bucket {self.bucket!r} of {self.uri} does not exist; create it first") from None
            raise self._fail("bucket check", None, e) from e
        except BotoCoreError as e:
            raise self._fail("bucket check", None, e) from e

    def size(self, key: str) -> int | None:
        """The size of `key` in bytes, or None when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail("lookup", key, e) from e
        except BotoCoreError as e:
            raise self._fail("lookup", key, e) from e

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as e:
            raise self._fail("delete", key, e) from e

    def remove_partials(self, prefix: str = "") -> list[str]:
        """Nothing to remove: an S3 object appears whole when its PUT completes, or not at all."""
        return []

    def list(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except (BotoCoreError, ClientError) as e:
            raise self._fail("listing", prefix or None, e) from e
        return sorted(keys)

    def child(self, key: str) -> "S3Storage":
        return S3Storage(self.bucket, self._key(key))


_DENIED_CODES = frozenset(
    {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)


def _s3_cause(error: Exception, bucket: str) -> str:
    """What went wrong in a failed S3 call and what to check, for the user."""
    from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError, PartialCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    endpoint = _shared_client().meta.endpoint_url
    detail = f"({type(error).__name__}: {error})"
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return f"no S3 credentials found {detail}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return (
            f"the endpoint {endpoint} is not reachable {detail}; check AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) "
            "and that the server is up"
        )
    code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
    if code in _DENIED_CODES:
        return (
            f"access denied by {endpoint} {detail}; the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            f"are wrong or not allowed to use bucket {bucket!r}"
        )
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist at {endpoint} {detail}; check the bucket name in the URI, or create it"
    return (
        f"{detail} at {endpoint}; check that the endpoint is reachable, the bucket exists and the credentials "
        "in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY allow it"
    )


_CLIENT = None


def _shared_client():
    global _CLIENT  # one client per process: boto3 clients are thread-safe and costly to build
    if _CLIENT is None:
        _CLIENT = _s3_client()
    return _CLIENT


def reset_s3_client() -> None:
    """Forget the cached S3 client so that changed AWS_* environment variables take effect."""
    global _CLIENT
    _CLIENT = None


def open_storage(uri: str | os.PathLike) -> Storage:
    """Return the storage for a local path, a `file://` URI or an `s3://bucket/prefix` URI."""
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{text!r} names no bucket; expected s3://bucket/prefix")
        prefix = parsed.path.strip("/")
        if prefix:
            check_key(prefix)
        return S3Storage(parsed.netloc, prefix)
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if not parsed.scheme:
        return LocalStorage(Path(text).expanduser().resolve())
    raise ValueError(f"unsupported storage URI {text!r}: use a local path, file:// or s3://")


def read_uri(uri: str) -> bytes:
    """The bytes of the single file at `uri` (a local path, file:// or s3://bucket/key)."""
    parent, _, name = uri.rstrip("/").rpartition("/")
    if not name or parent in ("s3:", "s3:/"):
        raise ValueError(f"{uri!r} names no file; expected a path, file:///path or s3://bucket/key")
    return open_storage(parent or ".").read_bytes(name)


def join_uri(uri: str, *keys: str) -> str:
    """Join relative keys onto a storage URI (`s3://b/p` + `x` -> `s3://b/p/x`)."""
    for key in keys:
        check_key(key)
    if "://" in uri:
        return "/".join([uri.rstrip("/"), *keys])
    return posixpath.join(uri, *keys) if keys else uri
