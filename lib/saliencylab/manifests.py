"""The `_manifest.json` of an artifact: what a stage wrote, from what, with which parameters.

A manifest is written last, after every shard, so its presence means the artifact is complete.
Its JSON is canonical (sorted keys, no whitespace, no clock values), so two runs of the same stage
with the same inputs and parameters write byte-identical manifests, and its sha256 identifies the
artifact for the stages downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from saliencylab import __version__
from saliencylab.storage import Storage

MANIFEST_KEY = "_manifest.json"
SCHEMA = "saliencylab.manifest/1"


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact separators, NaN refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_version() -> str:
    """The package version, plus the git commit baked into an image (SALIENCYLAB_GIT_SHA) when set."""
    sha = os.environ.get("SALIENCYLAB_GIT_SHA", "")
    return f"{__version__}+{sha[:12]}" if sha else __version__


@dataclass(frozen=True)
class ShardRecord:
    """One written shard: its file name, sample count, sha256 of its bytes, size and sample keys."""

    name: str
    samples: int
    sha256: str
    bytes: int
    keys: tuple[str, ...]


@dataclass(frozen=True)
class QuarantineRecord:
    """An item that was skipped under `--on-error skip`: its key, the file it came from and why."""

    key: str
    source: str
    error: str
    shard: str


@dataclass(frozen=True)
class Manifest:
    stage: str
    stage_version: str
    code_version: str
    run_id: str  # sha256 of stage, version, params, input digests and shard plan
    params: dict[str, Any]
    inputs: dict[str, dict[str, str]]  # input name -> {"uri": ..., "digest": ...}
    shards: tuple[ShardRecord, ...]
    quarantine: tuple[QuarantineRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def to_json(self) -> bytes:
        body = asdict(self)
        body["num_samples"] = self.num_samples
        return canonical_json(body)

    @classmethod
    def from_json(cls, data: bytes, source: str = MANIFEST_KEY) -> "Manifest":
        try:
            body = json.loads(data)
            if body.get("schema") != SCHEMA:
                raise ValueError(f"schema {body.get('schema')!r}, expected {SCHEMA!r}")
            body.pop("num_samples", None)
            body["shards"] = tuple(ShardRecord(**{**s, "keys": tuple(s["keys"])}) for s in body["shards"])
            body["quarantine"] = tuple(QuarantineRecord(**q) for q in body.get("quarantine", ()))
            body["warnings"] = tuple(body.get("warnings", ()))
            return cls(**body)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{source} is not a valid saliencylab manifest: {e}") from e


def read_manifest(storage: Storage) -> tuple[Manifest, str]:
    """Return the manifest of the artifact at `storage` and the sha256 of its bytes.

    Raises FileNotFoundError with advice when the artifact has no manifest (its stage has not finished).
    """
    try:
        data = storage.read_bytes(MANIFEST_KEY)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{storage.uri} has no {MANIFEST_KEY}: the stage that writes it has not finished "
            "(or, for a sharded run, its merge step has not run yet)"
        ) from None
    return Manifest.from_json(data, f"{storage.uri}/{MANIFEST_KEY}"), sha256_hex(data)
