"""The `_manifest.json` of an artifact: what a stage wrote, from what, with which parameters.

A manifest is written last, after every shard, so its presence means the artifact is complete.
Its JSON is canonical (sorted keys, no whitespace, no clock values), so two runs of the same stage
with the same inputs and parameters write byte-identical manifests, and its sha256 identifies the
artifact for the stages downstream.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
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


UNKNOWN_COMMIT = "unknown"


@functools.lru_cache(maxsize=1)
def _checkout_commit() -> str:
    """HEAD of the git checkout this package is imported from (`<repo>/lib/saliencylab`), else "unknown"."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists() or not (repo / "lib" / "saliencylab").is_dir():
        return UNKNOWN_COMMIT  # an installed wheel: no checkout to ask
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN_COMMIT
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else UNKNOWN_COMMIT


def code_version() -> str:
    """The identity of the running code: `<package version>+<git commit>`.

    The commit is SALIENCYLAB_GIT_SHA when set (baked into every image at build time), else HEAD of
    the source checkout when the package runs from one, else "unknown". Uncommitted changes in a
    checkout are not detected. Recorded in every part record and manifest; resume and merge refuse
    to combine shards of different code versions unless told to (docs/architecture.md).
    """
    commit = os.environ.get("SALIENCYLAB_GIT_SHA", "").strip() or _checkout_commit()
    return f"{__version__}+{commit}"


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
    # Empty unless shards of several code versions were combined with --allow-mixed-code:
    # then code version -> names of the shards it wrote, and `code_version` is the merging code's.
    mixed_code: dict[str, list[str]] = field(default_factory=dict)
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
