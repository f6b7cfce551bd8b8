"""The stage contract's housekeeping through the CLI, on a real tiny ingest.

--force into an output with more shards, merge checking shards against their part records, a
complete output rechecked (and repaired) by a rerun, code identity across resume and merge,
leftovers of a killed write, the umask, and run-wide options checked before anything is written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from saliencylab import __version__
from saliencylab.artifacts import open_artifact

from jobs.cli import app
from tests.voc_fixtures import make_voc

runner = CliRunner()
CODE_A, CODE_B = "a" * 40, "b" * 40


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"), 4, side=64)


def _ingest(voc: Path, out: Path, *extra: str, code: str | None = None):
    """Ingest the 4 images into 4 shards of `out`; `code` plays the git commit of the build."""
    args = ["ingest", "-i", str(voc), "-o", str(out), "--size", "64", "--shard-size", "1", *extra]
    return runner.invoke(app, args, env={"SALIENCYLAB_GIT_SHA": code} if code else None)


def _merge(out: Path, *extra: str, code: str | None = None):
    return runner.invoke(app, ["merge", "--output", str(out), *extra], env={"SALIENCYLAB_GIT_SHA": code} if code else None)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _flip_last_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def _refused(result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_force_into_an_output_with_more_shards_leaves_nothing_behind(voc, tmp_path):
    out = tmp_path / "out"
    _ok(_ingest(voc, out))
    _refused(_ingest(voc, out, "--limit", "2"), "--force")
    _ok(_ingest(voc, out, "--limit", "2", "--force"))
    assert _files(out) == [
        "_manifest.json", "_parts/shard-000000.json", "_parts/shard-000001.json", "_run.json",
        "shard-000000.tar", "shard-000001.tar",
    ]  # fmt: skip
    assert sorted(open_artifact(str(out)).key_index()) == ["img_0000", "img_0001"]


def test_merge_refuses_a_deleted_or_changed_shard(voc, tmp_path):
    out = tmp_path / "out"
    for i in range(2):
        _ok(_ingest(voc, out, "--shard", f"{i}/2"))
    (out / "shard-000002.tar").unlink()
    _flip_last_byte(out / "shard-000001.tar")
    _refused(_merge(out), "shard-000001.tar: sha256 differs", "shard-000002.tar: missing", "Rerun the stage")
    assert not (out / "_manifest.json").exists()
    for i in range(2):  # the workers recompute what does not match, then the merge succeeds
        _ok(_ingest(voc, out, "--shard", f"{i}/2"))
    _ok(_merge(out))
    assert open_artifact(str(out)).manifest.num_samples == 4


def test_a_complete_output_is_rechecked_and_repaired(voc, tmp_path):
    out = tmp_path / "out"
    _ok(_ingest(voc, out))
    reference = {name: (out / name).read_bytes() for name in _files(out)}
    (out / "shard-000003.tar").unlink()
    result = _ingest(voc, out)
    _ok(result)
    assert "shard-000003.tar: missing" in result.output and "recomputing" in result.output
    assert {name: (out / name).read_bytes() for name in _files(out)} == reference
    _flip_last_byte(out / "shard-000001.tar")  # same size: only --verify reads the bytes
    _ok(_ingest(voc, out))
    assert (out / "shard-000001.tar").read_bytes() != reference["shard-000001.tar"]
    result = _ingest(voc, out, "--verify")
    _ok(result)
    assert "shard-000001.tar: sha256 differs" in result.output
    assert {name: (out / name).read_bytes() for name in _files(out)} == reference


def test_a_rebuilt_image_does_not_silently_resume_an_unfinished_run(voc, tmp_path):
    out = tmp_path / "out"
    _ok(_ingest(voc, out, "--shard", "0/2", code=CODE_A))
    _refused(_ingest(voc, out, code=CODE_B), f"{__version__}+{CODE_A}: 2 shard(s)", f"this is code {__version__}+{CODE_B}", "--allow-mixed-code")
    assert not (out / "_manifest.json").exists() and not (out / "shard-000001.tar").exists()
    _ok(_ingest(voc, out, "--allow-mixed-code", code=CODE_B))
    manifest = open_artifact(str(out)).manifest
    assert manifest.mixed_code == {
        f"{__version__}+{CODE_A}": ["shard-000000.tar", "shard-000002.tar"],
        f"{__version__}+{CODE_B}": ["shard-000001.tar", "shard-000003.tar"],
    }
    assert any("--allow-mixed-code" in w for w in manifest.warnings)


def test_workers_of_different_builds_are_not_merged_silently(voc, tmp_path):
    out = tmp_path / "out"
    _ok(_ingest(voc, out, "--shard", "0/2", code=CODE_A))
    _ok(_ingest(voc, out, "--shard", "1/2", code=CODE_B))
    _refused(_merge(out, code=CODE_B), f"{__version__}+{CODE_A}: 2 shard(s)", f"{__version__}+{CODE_B}: 2 shard(s)")
    assert not (out / "_manifest.json").exists()
    _ok(_merge(out, "--allow-mixed-code", code=CODE_B))
    assert len(open_artifact(str(out)).manifest.mixed_code) == 2
    # One build throughout: the manifest names it, and nothing records a mix.
    same = tmp_path / "same"
    for i in range(2):
        _ok(_ingest(voc, same, "--shard", f"{i}/2", code=CODE_A))
    _ok(_merge(same, code=CODE_A))
    manifest = open_artifact(str(same)).manifest
    assert manifest.code_version == f"{__version__}+{CODE_A}" and manifest.mixed_code == {}


def test_leftovers_of_a_killed_write_are_removed_and_files_follow_the_umask(voc, tmp_path):
    out = tmp_path / "out"
    (out / "_parts").mkdir(parents=True)
    leftovers = [out / ".shard-000000.tar.3f9a.partial", out / "_parts" / ".shard-000000.json.77c1.partial"]
    for path in leftovers:
        path.write_bytes(b"cut short by a kill")
    previous = os.umask(0o002)
    try:
        _ok(_ingest(voc, out))
    finally:
        os.umask(previous)
    assert not any(path.exists() for path in leftovers)
    assert {stat.S_IMODE((out / name).stat().st_mode) for name in _files(out)} == {0o664}


def test_an_invalid_on_error_is_refused_before_anything_is_written(voc, tmp_path):
    _refused(_ingest(voc, tmp_path / "out", "--on-error", "ignore"), "--on-error must be one of ('fail', 'skip'), got 'ignore'")
    assert not (tmp_path / "out").exists()
