"""The stage contract: plan shards, write each one atomically, resume, split across pods, merge.

A run of a stage into an output location goes through these files:

    _run.json               the request: stage, version, params, input digests, shard plan; its
                            sha256 is the run id. Written first; a different request into the
                            same output is refused unless forced, and forcing first deletes every
                            shard and part record that is not this run's.
    shard-000000.tar ...    one WebDataset shard per planned task, each written whole.
    _parts/<shard>.json     written after its shard: run id, code version, count, sha256, size,
                            keys, quarantined items.
    _manifest.json          written last by the merge, once every part exists and its shard
                            still has the recorded size and sha256.

A rerun skips every shard whose part record belongs to the same run and whose bytes still hash to
the recorded sha256, so a killed run resumes where it stopped and produces the same bytes. A rerun
into a complete output checks that the manifest's shards are there with their sizes (and sha256,
with `verify`) and recomputes what is missing. The code version (package version + git commit) is
not part of the run id; it is checked separately: shards written by other code are refused by
resume and merge, naming both versions, unless `allow_mixed_code` (recorded in the manifest).
`--shard i/n` makes a worker handle the tasks with index % n == i; the merge step (run by the last
worker when n == 1, or by `saliencylab merge`) writes the manifest.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from saliencylab.storage import Storage, StorageError

RUN_KEY = "_run.json"
PARTS_PREFIX = "_parts"
ERROR_POLICIES = ("fail", "skip")
_SHARD_FILE = re.compile(r"shard-\d+\.tar")
_MIXED_CODE_ADVICE = (
    "Recompute them with one build (rerun the stage with --force), or pass --allow-mixed-code to combine "
    "them anyway (the manifest then records which code wrote which shard)."
)


class StageError(RuntimeError):
    """A stage cannot go on; the message names the item or file and what to do."""


@dataclass(frozen=True)
class ShardTask:
    """One output shard to produce: its index, file name and the stage-specific work items (JSON values)."""

    index: int
    name: str
    items: tuple[Any, ...]
    # samples expected in the shard where an item is not one sample (a map stage's one item is a
    # whole input shard); None = one per item. For progress only: not part of the request or run id.
    expected: int | None = field(default=None, compare=False)

    @property
    def expected_samples(self) -> int:
        return len(self.items) if self.expected is None else self.expected


@dataclass(frozen=True)
class RunRequest:
    """Everything that determines a stage's output; equal requests produce byte-identical artifacts."""

    stage: str
    stage_version: str
    params: dict[str, Any]
    inputs: dict[str, dict[str, str]]  # input name -> {"uri", "digest"}
    tasks: tuple[ShardTask, ...]
    warnings: tuple[str, ...] = ()  # e.g. random weights; copied into the manifest

    def _body(self) -> dict[str, Any]:
        body = asdict(self)
        body["tasks"] = [{k: v for k, v in task.items() if k != "expected"} for task in body["tasks"]]
        return body

    def to_json(self) -> bytes:
        return canonical_json(self._body())

    @property
    def run_id(self) -> str:
        body = self._body()
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
        check_error_policy(self.mode)

    @contextmanager
    def guard(self, key: str, source: str) -> Iterator[None]:
        """Run one item's work; any error it raises goes to `record`, so one bad item never ends a run
        with a traceback. Run-wide failures pass through: a StageError, and a StorageError (an
        outage must stop the run for a rerun to resume, not quarantine every item it touches)."""
        try:
            yield
        except (StageError, StorageError):
            raise
        except Exception as error:  # noqa: BLE001 - whatever one item raises is that item's problem
            self.record(key, source, error)

    def record(self, key: str, source: str, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        if self.mode == "fail":
            raise StageError(f"item {key!r} from {source}: {message} (use --on-error skip to quarantine it)") from error
        self.quarantined.append(QuarantineRecord(key=key, source=source, error=message, shard=self.shard))


def check_error_policy(mode: str) -> None:
    """Raise ValueError unless `mode` is a valid `--on-error` value."""
    if mode not in ERROR_POLICIES:
        raise ValueError(f"--on-error must be one of {ERROR_POLICIES}, got {mode!r}")


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


def _load_part(out: Storage, shard: str) -> dict[str, Any] | None:
    """The part record of `shard`, or None when there is none or it is not readable JSON."""
    try:
        part = json.loads(out.read_bytes(_part_key(shard)))
    except (FileNotFoundError, ValueError):
        return None
    return part if isinstance(part, dict) else None


def _part_code(part: dict[str, Any]) -> str:
    return part.get("code_version", "unrecorded")


def _reusable(out: Storage, shard: str, part: dict[str, Any] | None, run_id: str) -> bool:
    """Whether `part` is of run `run_id` and `shard` still hashes to its recorded sha256."""
    if part is None or part.get("run_id") != run_id:
        return False
    try:
        return sha256_hex(out.read_bytes(shard)) == part["shard"]["sha256"]
    except FileNotFoundError:
        return False


def _shard_problem(out: Storage, shard: str, size: int, sha256: str, verify: bool) -> str | None:
    """Why `shard` no longer matches its record (None when it does); its sha256 is checked only with `verify`."""
    actual = out.size(shard)
    if actual is None:
        return "missing"
    if actual != size:
        return f"{actual} bytes, recorded {size}"
    if verify and sha256_hex(out.read_bytes(shard)) != sha256:
        return "sha256 differs from the record"
    return None


def _listing(problems: dict[str, str]) -> str:
    return "; ".join(f"{name}: {why}" for name, why in list(problems.items())[:5]) + ("; ..." if len(problems) > 5 else "")


def _versions(versions: dict[str, list[str]]) -> str:
    return "; ".join(f"{v}: {len(names)} shard(s), e.g. {names[0]}" for v, names in sorted(versions.items()))


def _remove_other_runs(out: Storage, request: RunRequest) -> None:
    """Delete every shard and part record in `out` that is not of run `request` (before a forced run)."""
    planned = {task.name for task in request.tasks}
    for key in out.list(PARTS_PREFIX):
        shard = key.removeprefix(f"{PARTS_PREFIX}/").removesuffix(".json") + ".tar"
        part = _load_part(out, shard) if shard in planned else None
        if part is None or part.get("run_id") != request.run_id:
            out.delete(key)
    for key in out.list():
        if _SHARD_FILE.fullmatch(key) and (key not in planned or _load_part(out, key) is None):
            out.delete(key)


def _differences(version: str, params: dict[str, Any], inputs: dict[str, dict[str, str]], request: RunRequest) -> str:
    """What differs between an earlier run (its stage version, params, inputs) and `request`, for a refusal."""
    changed = [f"{k}: {params.get(k)!r} -> {request.params.get(k)!r}" for k in sorted({*params, *request.params}) if params.get(k) != request.params.get(k)]
    moved = [name for name in sorted({*inputs, *request.inputs}) if inputs.get(name) != request.inputs.get(name)]
    parts = [f"changed params: {', '.join(changed)}"] if changed else []
    if moved:
        parts.append(f"changed inputs: {', '.join(moved)}")
    if version != request.stage_version:
        parts.append(f"stage version {version} -> {request.stage_version}")
    return "; ".join(parts) or "same params and inputs; the shard plan differs"


def _claim_output(out: Storage, request: RunRequest, *, force: bool, verify: bool, sole_writer: bool) -> str:
    """Write `_run.json`, or check that the one there is ours; return 'complete' if the run is done.

    A complete output of the same run counts as complete only while every shard of its manifest
    exists with its recorded size (and sha256 with `verify`); otherwise its manifest is removed and
    the run resumes, recomputing what is missing. `sole_writer`: no other worker writes into `out`
    now, so the temporary files of interrupted writes can be removed.
    """
    run_id = request.run_id
    out.check_writable()
    if sole_writer:
        for prefix in ("", PARTS_PREFIX):
            out.remove_partials(prefix)
    if out.exists(MANIFEST_KEY):
        existing = Manifest.from_json(out.read_bytes(MANIFEST_KEY), f"{out.uri}/{MANIFEST_KEY}")
        if existing.run_id == run_id:
            problems = {s.name: p for s in existing.shards if (p := _shard_problem(out, s.name, s.bytes, s.sha256, verify))}
            if not problems:
                return "complete"
            print(f"{out.uri} was complete, but shards no longer match its manifest ({_listing(problems)}); recomputing them", file=sys.stderr)
        elif not force:
            raise StageError(
                f"{out.uri} already holds a completed {existing.stage} run with other parameters or inputs "
                f"({_differences(existing.stage_version, existing.params, existing.inputs, request)}; "
                f"run {existing.run_id[:12]}, this one {run_id[:12]}). Write to a new output, or pass --force to replace it."
            )
        out.delete(MANIFEST_KEY)
    previous = RunRequest.from_json(out.read_bytes(RUN_KEY)) if out.exists(RUN_KEY) else None
    if previous is not None and previous.run_id != run_id and not force:
        raise StageError(
            f"{out.uri} holds a partial {previous.stage} run with other parameters or inputs "
            f"({_differences(previous.stage_version, previous.params, previous.inputs, request)}). Use a new output, or --force."
        )
    other_run = previous is None or previous.run_id != run_id
    if force and other_run:
        _remove_other_runs(out, request)
    if other_run:
        out.write_bytes(RUN_KEY, request.to_json())
    return "claimed"


def _refuse_other_code(out: Storage, parts: dict[str, dict[str, Any] | None], run_id: str, code: str) -> None:
    """Raise StageError when a kept part of run `run_id` was written by code other than `code`."""
    others: dict[str, list[str]] = {}
    for name, part in parts.items():
        if part is not None and part.get("run_id") == run_id and _part_code(part) != code:
            others.setdefault(_part_code(part), []).append(name)
    if others:
        raise StageError(
            f"{out.uri} holds shards of this run written by other code ({_versions(others)}); this is code {code}. "
            + _MIXED_CODE_ADVICE
        )


def run_stage(
    out: Storage,
    request: RunRequest,
    process: ProcessFn,
    *,
    selection: ShardSelection = ShardSelection(),
    on_error: str = "fail",
    force: bool = False,
    verify: bool = False,
    allow_mixed_code: bool = False,
    finalize: FinalizeFn | None = None,
    progress: Progress | None = None,
) -> Manifest | None:
    """Run the selected tasks of `request` into `out`; merge and return the manifest when the run is whole.

    Args:
        verify: check the sha256 of every shard of a complete output (not only its size).
        allow_mixed_code: reuse this run's shards written by another code version (see `merge`).

    Returns None when this worker finished its tasks but others (of `--shard i/n`) still have to run
    and `saliencylab merge` has to write the manifest.
    """
    check_error_policy(on_error)
    if _claim_output(out, request, force=force, verify=verify, sole_writer=selection.count == 1) == "complete":
        return Manifest.from_json(out.read_bytes(MANIFEST_KEY))
    run_id, code = request.run_id, code_version()
    mine = [t for t in request.tasks if selection.selects(t)]
    parts = {t.name: None if force else _load_part(out, t.name) for t in mine}
    if not allow_mixed_code:
        _refuse_other_code(out, parts, run_id, code)
    progress = progress or Progress(request.stage, [(t.name, t.expected_samples) for t in mine])
    reused = {t.name for t in mine if _reusable(out, t.name, parts[t.name], run_id)}
    progress.skip([(t.name, t.expected_samples) for t in mine if t.name in reused])
    for task in mine:
        if task.name in reused:
            continue
        policy = ErrorPolicy(on_error, shard=task.name)
        samples = []
        for sample in process(task, policy):
            samples.append(sample)
            progress.sample(task.name)
        data = write_shard(samples)
        out.write_bytes(task.name, data)
        record = ShardRecord(task.name, len(samples), sha256_hex(data), len(data), tuple(s["__key__"] for s in samples))
        part = {"run_id": run_id, "code_version": code, "shard": asdict(record), "quarantine": [asdict(q) for q in policy.quarantined]}
        out.write_bytes(_part_key(task.name), canonical_json(part))
        progress.shard_done(task.name, len(samples), quarantined=len(policy.quarantined))
    progress.close()
    if selection.count > 1:
        return None
    return merge(out, finalize=finalize, allow_mixed_code=allow_mixed_code, verified=frozenset(t.name for t in mine))


def _merge_parts(out: Storage, request: RunRequest, verified: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
    """(shard, part record) for every task of `request`; StageError when one is missing or its shard changed."""
    parts, missing, damaged = [], [], {}
    for task in request.tasks:
        part = _load_part(out, task.name)
        if part is None or part.get("run_id") != request.run_id:
            missing.append(task.name)
            continue
        if task.name not in verified:
            record = part["shard"]
            if problem := _shard_problem(out, task.name, record["bytes"], record["sha256"], verify=True):
                damaged[task.name] = problem
        parts.append((task.name, part))
    if missing:
        raise StageError(f"{out.uri}: {len(missing)} shard(s) not finished yet, e.g. {missing[:5]}; rerun the stage")
    if damaged:
        raise StageError(
            f"{out.uri}: {len(damaged)} shard(s) do not match their part records ({_listing(damaged)}): they were "
            "changed or deleted after they were written. Rerun the stage (it recomputes them), then merge."
        )
    return parts


def merge(
    out: Storage, *, finalize: FinalizeFn | None = None, allow_mixed_code: bool = False, verified: frozenset[str] = frozenset()
) -> Manifest:
    """Write `_manifest.json` from the part records of the run in `out`.

    Every shard is checked against its part record (size and sha256) and every part must name the
    same code version, which becomes the manifest's `code_version`. With `allow_mixed_code`, parts of
    several versions are combined: the manifest's `code_version` is then this process's, its
    `mixed_code` maps each version to the shards it wrote, and a warning says so.

    Args:
        verified: shards this process has just written or hashed; they are not read again.

    Raises:
        StageError: when no run was started in `out`, a part is missing, a shard differs from its
            part record, or (without `allow_mixed_code`) the parts name several code versions.
    """
    if not out.exists(RUN_KEY):
        raise StageError(f"{out.uri} has no {RUN_KEY}: no stage run was started there")
    request = RunRequest.from_json(out.read_bytes(RUN_KEY))
    parts = _merge_parts(out, request, verified)
    versions: dict[str, list[str]] = {}
    for name, part in parts:
        versions.setdefault(_part_code(part), []).append(name)
    mixed = len(versions) > 1
    if mixed and not allow_mixed_code:
        raise StageError(f"{out.uri}: the shards of this run were written by different code ({_versions(versions)}). " + _MIXED_CODE_ADVICE)
    for prefix in ("", PARTS_PREFIX):
        out.remove_partials(prefix)
    records = tuple(ShardRecord(**{**p["shard"], "keys": tuple(p["shard"]["keys"])}) for _, p in parts)
    summary, extra_files = finalize(out, request, records) if finalize else ({}, {})
    for key, data in extra_files.items():
        out.write_bytes(key, data)
    warnings = request.warnings
    if mixed:
        warnings += (f"{request.stage}: shards written by {len(versions)} code versions were combined with --allow-mixed-code",)
    manifest = Manifest(
        stage=request.stage,
        stage_version=request.stage_version,
        code_version=code_version() if mixed or not versions else next(iter(versions)),
        run_id=request.run_id,
        params=request.params,
        inputs=request.inputs,
        shards=records,
        quarantine=tuple(QuarantineRecord(**q) for _, p in parts for q in p["quarantine"]),
        warnings=warnings,
        summary=summary,
        mixed_code=versions if mixed else {},
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
