"""Reading a finished artifact: its manifest, its shards verified against their recorded sha256."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from saliencylab.manifests import Manifest, read_manifest, sha256_hex
from saliencylab.runner import ShardTask, StageError
from saliencylab.shards import read_shard
from saliencylab.storage import Storage, open_storage


@dataclass(frozen=True)
class Artifact:
    """A complete stage output: where it is, its manifest and the sha256 of the manifest's bytes."""

    storage: Storage
    manifest: Manifest
    digest: str

    @property
    def input_spec(self) -> dict[str, str]:
        """How a downstream run records this input: its URI and manifest digest."""
        return {"uri": self.storage.uri, "digest": self.digest}

    def samples(self, shard: str, decode: bool = True) -> Iterator[dict[str, Any]]:
        """The samples of one shard, after checking its bytes against the manifest."""
        record = next((s for s in self.manifest.shards if s.name == shard), None)
        if record is None:
            raise StageError(f"{self.storage.uri} has no shard {shard!r} in its manifest")
        data = self.storage.read_bytes(shard)
        if sha256_hex(data) != record.sha256:
            raise StageError(
                f"{self.storage.uri}/{shard} does not match the sha256 in its manifest: the artifact was "
                "changed after it was written; rerun the stage that produced it"
            )
        return read_shard(data, f"{self.storage.uri}/{shard}", decode=decode)

    def shard_tasks(self) -> tuple[ShardTask, ...]:
        """One task per shard of this artifact, for map-like stages whose output shard i mirrors input shard i."""
        return tuple(ShardTask(i, record.name, (record.name,), record.samples) for i, record in enumerate(self.manifest.shards))

    def key_index(self) -> dict[str, str]:
        """Sample key -> shard name, from the manifest (no shard is read)."""
        return {key: record.name for record in self.manifest.shards for key in record.keys}

    def lookup(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The samples of `keys` that this artifact has, reading only the shards that hold them."""
        index = self.key_index()
        wanted: dict[str, set[str]] = {}
        for key in keys:
            if key in index:
                wanted.setdefault(index[key], set()).add(key)
        found = {}
        for shard, shard_keys in sorted(wanted.items()):
            found.update({s["__key__"]: s for s in self.samples(shard) if s["__key__"] in shard_keys})
        return found


def open_artifact(uri: str) -> Artifact:
    """Open the finished artifact at `uri`; raises FileNotFoundError when it has no manifest yet."""
    storage = open_storage(uri)
    manifest, digest = read_manifest(storage)
    return Artifact(storage, manifest, digest)
