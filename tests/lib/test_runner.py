"""The stage contract on a toy stage: resume, refuse conflicts, split across workers, quarantine, run hygiene."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from saliencylab import __version__
from saliencylab.artifacts import open_artifact
from saliencylab.runner import ErrorPolicy, RunRequest, ShardSelection, StageError, merge, plan_tasks, run_stage
from saliencylab.storage import LocalStorage, StorageError

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
    with pytest.raises(StageError, match=r"partial toy run .*\(changed params: p: 1 -> 2\)"):
        run_stage(out, _request({"p": 2}), _process)


def test_refusal_of_a_complete_output_names_what_changed(tmp_path):
    out = LocalStorage(tmp_path)
    run_stage(out, _request(), _process)
    other = RunRequest("toy", "1", {"p": 2, "q": "x"}, {"in": {"uri": "mem", "digest": "e"}}, plan_tasks([1, 2, 3, 4, 5], 2))
    with pytest.raises(StageError, match=r"completed toy run .*\(changed params: p: 1 -> 2, q: None -> 'x'; changed inputs: in; run "):
        run_stage(out, other, _process)
    with pytest.raises(StageError, match=r"\(same params and inputs; the shard plan differs; run "):
        run_stage(out, _request(items=(1, 2, 3)), _process)


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


def _listing(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_force_removes_every_shard_and_part_of_the_old_run(tmp_path):
    out = LocalStorage(tmp_path)
    run_stage(out, _request(items=(1, 2, 3, 4, 5, 6, 7)), _process)  # 4 shards
    (tmp_path / "shard-000009.tar").write_bytes(b"orphan of a killed run")
    manifest = run_stage(out, _request({"p": 2}, items=(1, 2)), _process, force=True)
    assert [s.name for s in manifest.shards] == ["shard-000000.tar"]
    assert _listing(tmp_path) == ["_manifest.json", "_parts/shard-000000.json", "_run.json", "shard-000000.tar"]
    assert sorted(open_artifact(str(tmp_path)).key_index()) == ["n1", "n2"]


def test_merge_verifies_each_shard_against_its_part_record(tmp_path):
    out = LocalStorage(tmp_path)
    for i in range(2):
        run_stage(out, _request(), _process, selection=ShardSelection(i, 2))
    shard = tmp_path / "shard-000001.tar"
    good = shard.read_bytes()
    for damage, message in (
        (lambda: shard.write_bytes(good[:-1] + bytes([good[-1] ^ 1])), "shard-000001.tar: sha256 differs"),
        (lambda: shard.write_bytes(good + b"x"), f"shard-000001.tar: {len(good) + 1} bytes, recorded {len(good)}"),
        (shard.unlink, "shard-000001.tar: missing"),
    ):
        damage()
        with pytest.raises(StageError, match=message):
            merge(out)
        assert not out.exists("_manifest.json")
    CALLS.clear()
    run_stage(out, _request(), _process, selection=ShardSelection(1, 2))  # the worker recomputes it
    assert CALLS == ["shard-000001.tar"] and shard.read_bytes() == good
    assert merge(out).num_samples == 5


def test_a_complete_output_is_checked_before_it_counts_as_complete(tmp_path, capsys):
    out = LocalStorage(tmp_path)
    manifest = run_stage(out, _request(), _process)
    (tmp_path / "shard-000001.tar").unlink()
    CALLS.clear()
    assert run_stage(out, _request(), _process).to_json() == manifest.to_json()
    assert CALLS == ["shard-000001.tar"] and "shard-000001.tar: missing" in capsys.readouterr().err
    # A change that keeps the size is found by the sha256 check of --verify only.
    shard = tmp_path / "shard-000002.tar"
    good = shard.read_bytes()
    shard.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    CALLS.clear()
    run_stage(out, _request(), _process)
    assert CALLS == []
    assert run_stage(out, _request(), _process, verify=True).to_json() == manifest.to_json()
    assert CALLS == ["shard-000002.tar"] and shard.read_bytes() == good


def test_code_version_is_recorded_and_resume_refuses_other_code(tmp_path, monkeypatch):
    out = LocalStorage(tmp_path)
    monkeypatch.setenv("SALIENCYLAB_GIT_SHA", "a" * 40)
    run_stage(out, _request(), _process, selection=ShardSelection(0, 2))
    assert json.loads(out.read_bytes("_parts/shard-000000.json"))["code_version"] == f"{__version__}+{'a' * 40}"
    monkeypatch.setenv("SALIENCYLAB_GIT_SHA", "b" * 40)
    CALLS.clear()
    with pytest.raises(StageError, match=rf"written by other code \({re.escape(__version__)}\+a{{40}}: 2 shard.*this is code {re.escape(__version__)}\+b{{40}}"):
        run_stage(out, _request(), _process)
    assert CALLS == [] and not out.exists("shard-000001.tar")  # refused before computing anything
    manifest = run_stage(out, _request(), _process, allow_mixed_code=True)
    assert manifest.code_version == f"{__version__}+{'b' * 40}"
    assert manifest.mixed_code == {
        f"{__version__}+{'a' * 40}": ["shard-000000.tar", "shard-000002.tar"],
        f"{__version__}+{'b' * 40}": ["shard-000001.tar"],
    }
    assert any("2 code versions" in w for w in manifest.warnings)


def test_merge_refuses_workers_of_different_code_unless_allowed(tmp_path, monkeypatch):
    out = LocalStorage(tmp_path)
    for i, sha in enumerate(("a" * 40, "b" * 40)):
        monkeypatch.setenv("SALIENCYLAB_GIT_SHA", sha)
        run_stage(out, _request(), _process, selection=ShardSelection(i, 2))
    with pytest.raises(StageError, match=r"different code \(.*\+a{40}: 2 shard\(s\), e.g. shard-000000.tar; .*\+b{40}: 1 shard.*--allow-mixed-code"):
        merge(out)
    assert merge(out, allow_mixed_code=True).mixed_code[f"{__version__}+{'b' * 40}"] == ["shard-000001.tar"]
    # Uniform parts: the manifest names the code that wrote them, and a complete output is kept as is.
    uniform = LocalStorage(tmp_path / "uniform")
    run_stage(uniform, _request(), _process)
    monkeypatch.setenv("SALIENCYLAB_GIT_SHA", "c" * 40)
    assert run_stage(uniform, _request(), _process).code_version == f"{__version__}+{'b' * 40}"


def test_leftover_partials_are_removed_by_the_next_run_or_the_merge(tmp_path):
    out = LocalStorage(tmp_path)
    (tmp_path / "_parts").mkdir(parents=True)
    leftovers = [tmp_path / ".shard-000001.tar.0123abcd.partial", tmp_path / "_parts" / ".shard-000001.json.4567.partial"]
    for path in leftovers:
        path.write_bytes(b"cut short by a kill")
    run_stage(out, _request(), _process, selection=ShardSelection(0, 2))
    assert all(p.exists() for p in leftovers)  # another worker might be writing them
    run_stage(out, _request(), _process, selection=ShardSelection(1, 2))
    merge(out)
    assert not any(p.exists() for p in leftovers)
    leftovers[0].write_bytes(b"again")
    run_stage(out, _request(), _process)
    assert not leftovers[0].exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_are_created_with_the_process_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        run_stage(LocalStorage(tmp_path), _request(), _process)
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    assert modes == {0o666 & ~umask}


def test_an_invalid_error_policy_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"--on-error must be one of \('fail', 'skip'\), got 'ignore'"):
        run_stage(LocalStorage(tmp_path / "out"), _request(), _process, on_error="ignore")
    assert not (tmp_path / "out").exists()


def _guarded(policy: ErrorPolicy, error: Exception) -> list[str]:
    done = []
    for key in ("a", "b", "c"):
        with policy.guard(key, f"shard/{key}"):
            if key == "b":
                raise error
            done.append(key)
    return done


def test_guard_quarantines_an_unexpected_error_type_and_the_run_goes_on():
    policy = ErrorPolicy("skip", shard="shard-000000.tar")
    assert _guarded(policy, RuntimeError("cuDNN refused this input")) == ["a", "c"]
    (record,) = policy.quarantined
    assert (record.key, record.source, record.error) == ("b", "shard/b", "RuntimeError: cuDNN refused this input")


def test_guard_names_the_item_under_fail_and_lets_run_wide_errors_through():
    with pytest.raises(StageError, match=r"item 'b' from shard/b: error: bad chunk"):
        _guarded(ErrorPolicy("fail"), __import__("struct").error("bad chunk"))
    policy = ErrorPolicy("skip")
    with pytest.raises(StorageError, match="endpoint not reachable"):
        _guarded(policy, StorageError("endpoint not reachable"))
    assert policy.quarantined == []
