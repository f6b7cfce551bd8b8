"""The stage contract on a toy stage: resume, refuse conflicts, split across workers, quarantine."""

from __future__ import annotations

import json

import pytest

from saliencylab.artifacts import open_artifact
from saliencylab.runner import ErrorPolicy, RunRequest, ShardSelection, StageError, merge, plan_tasks, run_stage
from saliencylab.storage import LocalStorage

CALLS: list[str] = []


def _process(task, policy: ErrorPolicy):
    CALLS.append(task.name)
    samples = []
    for item in task.items:
        if item < 0:
            policy.record(f"n{-item}", "items.txt", ValueError("negative"))
            continue
        samples.append({"__key__": f"n{item}", "value.json": {"square": item * item}})
    return samples


def _request(params=None, items=(1, 2, 3, 4, 5)):
    return RunRequest("toy", "1", params or {"p": 1}, {"in": {"uri": "mem", "digest": "d"}}, plan_tasks(list(items), 2))


def test_run_writes_shards_then_manifest_and_resumes(tmp_path):
    out = LocalStorage(tmp_path)
    CALLS.clear()
    manifest = run_stage(out, _request(), _process)
    assert manifest.num_samples == 5 and [s.samples for s in manifest.shards] == [2, 2, 1]
    assert CALLS == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    artifact = open_artifact(str(tmp_path))
    assert [s["value.json"]["square"] for s in artifact.samples("shard-000001.tar")] == [9, 16]
    assert artifact.key_index()["n5"] == "shard-000002.tar"
    # The same request again: complete, nothing recomputed.
    CALLS.clear()
    assert run_stage(out, _request(), _process).to_json() == manifest.to_json() and CALLS == []


def test_interrupted_run_resumes_and_recomputes_a_corrupt_shard(tmp_path):
    out = LocalStorage(tmp_path)
    reference = run_stage(LocalStorage(tmp_path / "ref"), _request(), _process)
    run_stage(out, _request(), _process, selection=ShardSelection(0, 2))  # shards 0 and 2 only, no manifest
    assert not out.exists("_manifest.json")
    (tmp_path / "shard-000002.tar").write_bytes(b"garbage")
    CALLS.clear()
    manifest = run_stage(out, _request(), _process)
    assert CALLS == ["shard-000001.tar", "shard-000002.tar"]
    assert manifest.to_json() == reference.to_json()
    for record in manifest.shards:
        assert (tmp_path / record.name).read_bytes() == (tmp_path / "ref" / record.name).read_bytes()


def test_other_parameters_are_refused_unless_forced(tmp_path):
    out = LocalStorage(tmp_path)
    run_stage(out, _request(), _process)
    with pytest.raises(StageError, match="completed toy run with other parameters"):
        run_stage(out, _request({"p": 2}), _process)
    assert open_artifact(str(tmp_path)).manifest.params == {"p": 1}  # untouched
    assert run_stage(out, _request({"p": 2}), _process, force=True).params == {"p": 2}


def test_partial_run_with_other_parameters_is_refused(tmp_path):
    out = LocalStorage(tmp_path)
    run_stage(out, _request(), _process, selection=ShardSelection(0, 3))
    with pytest.raises(StageError, match=r"partial toy run .*\['p'\]"):
        run_stage(out, _request({"p": 2}), _process)


def test_workers_then_merge(tmp_path):
    out = LocalStorage(tmp_path)
    for i in range(3):
        assert run_stage(out, _request(), _process, selection=ShardSelection(i, 3)) is None
    manifest = merge(out)
    assert manifest.num_samples == 5
    assert ShardSelection.parse("1/3") == ShardSelection(1, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ValueError):
            ShardSelection.parse(bad)


def test_merge_refuses_missing_shards(tmp_path):
    out = LocalStorage(tmp_path)
    run_stage(out, _request(), _process, selection=ShardSelection(0, 2))
    with pytest.raises(StageError, match="not finished yet.*shard-000001.tar"):
        merge(out)


def test_error_policy_fail_names_item_and_file(tmp_path):
    with pytest.raises(StageError, match="'n3' from items.txt.*--on-error skip"):
        run_stage(LocalStorage(tmp_path), _request(items=(1, -3)), _process)
    assert not (tmp_path / "_manifest.json").exists()


def test_error_policy_skip_quarantines(tmp_path):
    manifest = run_stage(LocalStorage(tmp_path), _request(items=(1, -3, 4)), _process, on_error="skip")
    assert manifest.num_samples == 2
    (entry,) = manifest.quarantine
    assert (entry.key, entry.source, entry.shard) == ("n3", "items.txt", "shard-000000.tar")
    assert json.loads((tmp_path / "_manifest.json").read_bytes())["quarantine"][0]["error"] == "ValueError: negative"


def test_tampered_input_shard_is_detected(tmp_path):
    run_stage(LocalStorage(tmp_path), _request(), _process)
    (tmp_path / "shard-000000.tar").write_bytes(b"x")
    with pytest.raises(StageError, match="does not match the sha256"):
        list(open_artifact(str(tmp_path)).samples("shard-000000.tar"))
