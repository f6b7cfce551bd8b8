"""The stage contract: plan shards, write each one atomically, resume, split across pods, merge.

A run of a stage into an output location goes through these files:

    _run.json               the request: stage, version, params, input digests, shard plan; its
                            sha256 is the run id. Written first; a different request into the
                            same output is refused unless forced.
    shard-000000.tar ...    one WebDataset shard per planned task, each written whole.
    _parts/<shard>.json     written after its shard: count, sha256, keys, quarantined items.
    _manifest.json          written last by the merge, once every part exists.

A rerun skips every shard whose part record belongs to the same run and whose bytes still hash to
the recorded sha256, so a killed run resumes where it stopped and produces the same bytes.
`--shard i/n` makes a worker handle the tasks with index % n == i; the merge step (run by the last
worker when n == 1, or by `saliencylab merge`) writes the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from saliencylab.manifests import (
    MANIFEST_KEY,
    Manifest,
    QuarantineRecord,
    ShardRecord,
    canonical_json,
    code_version,
    sha256_hex,
)
from saliencylab.progress import Progress
from saliencylab.shards import shard_name, write_shard
from saliencylab.storage import Storage

RUN_KEY = "_run.json"
PARTS_PREFIX = "_parts"
ERROR_POLICIES = ("fail", "skip")


class StageError(RuntimeError):
    """A stage cannot go on; the message names the item or file and what to do."""


@dataclass(frozen=True)
class ShardTask:
    """One output shard to produce: its index, file name and the stage-specific work items (JSON values)."""

    index: int
    name: str
    items: tuple[Any, ...]


@dataclass(frozen=True)
class RunRequest:
    """Everything that determines a stage's output; equal requests produce byte-identical artifacts."""

    stage: str
    stage_version: str
    params: dict[str, Any]
    inputs: dict[str, dict[str, str]]  # input name -> {"uri", "digest"}
    tasks: tuple[ShardTask, ...]
    warnings: tuple[str, ...] = ()  # e.g. random weights; copied into the manifest

    def to_json(self) -> bytes:
        return canonical_json(asdict(self))

    @property
    def run_id(self) -> str:
        body = asdict(self)
        # URIs are where the inputs happen to be; the digests are what they are.
        body["inputs"] = {name: spec["digest"] for name, spec in self.inputs.items()}
        return sha256_hex(canonical_json(body))

    @classmethod
    def from_json(cls, data: bytes) -> "RunRequest":
        body = json.loads(data)
        body["tasks"] = tuple(ShardTask(t["index"], t["name"], tuple(t["items"])) for t in body["tasks"])
        body["warnings"] = tuple(body.get("warnings", ()))
        return cls(**body)


@dataclass
class ErrorPolicy:
    """What to do with a bad item: `fail` stops the run naming it; `skip` quarantines it and goes on."""

    mode: str = "fail"
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    shard: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ERROR_POLICIES:
            raise ValueError(f"--on-error must be one of {ERROR_POLICIES}, got {self.mode!r}")

    def record(self, key: str, source: str, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        if self.mode == "fail":
            raise StageError(f"item {key!r} from {source}: {message} (use --on-error skip to quarantine it)") from error
        self.quarantined.append(QuarantineRecord(key=key, source=source, error=message, shard=self.shard))


ProcessFn = Callable[[ShardTask, ErrorPolicy], Sequence[dict[str, Any]]]
FinalizeFn = Callable[[Storage, "RunRequest", tuple[ShardRecord, ...]], tuple[dict[str, Any], dict[str, bytes]]]


@dataclass(frozen=True)
class ShardSelection:
    """Worker `index` of `count`: handles the tasks whose index % count == index."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "ShardSelection":
        if not text:
            return cls()
        try:
            i, n = (int(p) for p in text.split("/"))
        except ValueError:
            raise ValueError(f"--shard expects i/n with integers (e.g. 0/4), got {text!r}") from None
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"--shard {text!r}: need n >= 1 and 0 <= i < n")
        return cls(i, n)

    def selects(self, task: ShardTask) -> bool:
        return task.index % self.count == self.index


def _part_key(task_name: str) -> str:
    return f"{PARTS_PREFIX}/{task_name.removesuffix('.tar')}.json"


def _read_part(out: Storage, task: ShardTask, run_id: str) -> dict[str, Any] | None:
    """The part record of `task` if it belongs to this run and its shard still hashes to it, else None."""
    if not out.exists(_part_key(task.name)):
        return None
    part = json.loads(out.read_bytes(_part_key(task.name)))
    if part.get("run_id") != run_id or not out.exists(task.name):
        return None
    return part if sha256_hex(out.read_bytes(task.name)) == part["shard"]["sha256"] else None


def _claim_output(out: Storage, request: RunRequest, force: bool) -> str:
    """Write `_run.json`, or check that the one there is ours; return 'complete' if the run is done."""
    run_id = request.run_id
    out.check_writable()
    if out.exists(MANIFEST_KEY):
        existing = Manifest.from_json(out.read_bytes(MANIFEST_KEY), f"{out.uri}/{MANIFEST_KEY}")
        if existing.run_id == run_id:
            return "complete"
        if not force:
            raise StageError(
                f"{out.uri} already holds a completed {existing.stage} run with other parameters or inputs "
                f"(run {existing.run_id[:12]}, this one {run_id[:12]}). Write to a new output, or pass --force "
                "to replace it."
            )
        out.delete(MANIFEST_KEY)
    previous = RunRequest.from_json(out.read_bytes(RUN_KEY)) if out.exists(RUN_KEY) else None
    if previous is not None and previous.run_id != run_id and not force:
        changed = sorted(k for k in {*previous.params, *request.params} if previous.params.get(k) != request.params.get(k))
        raise StageError(
            f"{out.uri} holds a partial {previous.stage} run with other parameters or inputs "
            f"(changed params: {changed or 'none; inputs or plan differ'}). Use a new output, or --force."
        )
    if previous is None or previous.run_id != run_id:
        out.write_bytes(RUN_KEY, request.to_json())
    return "claimed"


def run_stage(
    out: Storage,
    request: RunRequest,
    process: ProcessFn,
    *,
    selection: ShardSelection = ShardSelection(),
    on_error: str = "fail",
    force: bool = False,
    finalize: FinalizeFn | None = None,
    progress: Progress | None = None,
) -> Manifest | None:
    """Run the selected tasks of `request` into `out`; merge and return the manifest when the run is whole.

    Returns None when this worker finished its tasks but others (of `--shard i/n`) still have to run
    and `saliencylab merge` has to write the manifest.
    """
    if _claim_output(out, request, force) == "complete":
        return Manifest.from_json(out.read_bytes(MANIFEST_KEY))
    run_id = request.run_id
    mine = [t for t in request.tasks if selection.selects(t)]
    progress = progress or Progress(request.stage, total=len(mine))
    for task in mine:
        if not force and _read_part(out, task, run_id) is not None:
            progress.advance(task.name, skipped=True)
            continue
        policy = ErrorPolicy(on_error, shard=task.name)
        samples = list(process(task, policy))
        data = write_shard(samples)
        out.write_bytes(task.name, data)
        record = ShardRecord(task.name, len(samples), sha256_hex(data), len(data), tuple(s["__key__"] for s in samples))
        part = {"run_id": run_id, "shard": asdict(record), "quarantine": [asdict(q) for q in policy.quarantined]}
        out.write_bytes(_part_key(task.name), canonical_json(part))
        progress.advance(task.name, samples=len(samples), quarantined=len(policy.quarantined))
    progress.close()
    if selection.count > 1:
        return None
    return merge(out, finalize=finalize)


def merge(out: Storage, *, finalize: FinalizeFn | None = None) -> Manifest:
    """Write `_manifest.json` from the part records of the run in `out`; refuse if any part is missing."""
    if not out.exists(RUN_KEY):
        raise StageError(f"{out.uri} has no {RUN_KEY}: no stage run was started there")
    request = RunRequest.from_json(out.read_bytes(RUN_KEY))
    parts, missing = [], []
    for task in request.tasks:
        part = json.loads(out.read_bytes(_part_key(task.name))) if out.exists(_part_key(task.name)) else None
        if part is None or part["run_id"] != request.run_id:
            missing.append(task.name)
        else:
            parts.append(part)
    if missing:
        raise StageError(f"{out.uri}: {len(missing)} shard(s) not finished yet, e.g. {missing[:5]}; rerun the stage")
    records = tuple(ShardRecord(**{**p["shard"], "keys": tuple(p["shard"]["keys"])}) for p in parts)
    summary, extra_files = finalize(out, request, records) if finalize else ({}, {})
    for key, data in extra_files.items():
        out.write_bytes(key, data)
    manifest = Manifest(
        stage=request.stage,
        stage_version=request.stage_version,
        code_version=code_version(),
        run_id=request.run_id,
        params=request.params,
        inputs=request.inputs,
        shards=records,
        quarantine=tuple(QuarantineRecord(**q) for p in parts for q in p["quarantine"]),
        warnings=request.warnings,
        summary=summary,
    )
    out.write_bytes(MANIFEST_KEY, manifest.to_json())
    return manifest


def plan_tasks(items: Sequence[Any], shard_size: int) -> tuple[ShardTask, ...]:
    """Split `items` in order into tasks of at most `shard_size` items each."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return tuple(
        ShardTask(i, shard_name(i), tuple(items[start : start + shard_size]))
        for i, start in enumerate(range(0, len(items), shard_size))
    )
