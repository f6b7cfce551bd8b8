"""The inpaint stage on tiny erase-format artifacts: bit-identical known pixels, pass-through, reruns, bad samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.runner import RunRequest, plan_tasks, run_stage
from saliencylab.shards import read_shard
from saliencylab.storage import open_storage

from jobs.cli import app

runner = CliRunner()
TINY = ["--width", "6", "--depth", "2", "--input-channels", "4", "--iterations", "4", "--lr", "0.01", "--batch-size", "3"]


def _sample(key: str, h: int, w: int, changed: bool, seed: int) -> dict:
    """An erase-format sample: image.png with the erased blob set to 0, erase_mask.png (255 = erased), meta.json."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    if changed:
        ys, xs = np.mgrid[0:h, 0:w]
        mask[(ys - h / 2) ** 2 + (xs - w / 2) ** 2 < (min(h, w) / 4) ** 2] = 255
        image[mask == 255] = 0
    meta = {"id": key, "size": [h, w], "boxes": [[1, 2, 5, 6]], "labels": ["cat"], "difficult": [False], "changed": changed}
    return {"__key__": key, "image.png": image, "erase_mask.png": mask, "meta.json": meta}


def write_erase_artifact(path: Path, samples: list[dict], shard_size: int = 3, stage: str = "erase") -> str:
    """Write `samples` through the real runner as a finished artifact of `stage`; returns its URI."""
    by_key = {s["__key__"]: s for s in samples}
    request = RunRequest(stage, "test", {}, {}, plan_tasks([s["__key__"] for s in samples], shard_size))
    run_stage(open_storage(str(path)), request, lambda task, policy: [by_key[k] for k in task.items])
    return str(path)


@pytest.fixture(scope="module")
def erased(tmp_path_factory) -> str:
    samples = [
        _sample("a", 32, 40, True, 0),
        _sample("b", 32, 40, False, 1),
        _sample("c", 36, 36, True, 2),
        _sample("d", 32, 40, True, 3),
        _sample("e", 11, 13, True, 4),  # smaller than the skip net's multiple below
    ]
    return write_erase_artifact(tmp_path_factory.mktemp("erase"), samples)


def _raw(uri: str) -> dict[str, dict]:
    artifact = open_artifact(uri)
    return {s["__key__"]: s for shard in artifact.manifest.shards for s in artifact.samples(shard.name, decode=False)}


def _decoded(uri: str) -> dict[str, dict]:
    artifact = open_artifact(uri)
    return {s["__key__"]: s for shard in artifact.manifest.shards for s in artifact.samples(shard.name)}


def test_changed_samples_filled_known_pixels_bit_identical(erased, tmp_path):
    out = tmp_path / "inpaint"
    result = runner.invoke(app, ["inpaint", "-i", erased, "-o", str(out), *TINY])
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(out)).manifest
    assert manifest.params["iterations"] == 4 and manifest.params["network"] == "resnet" and manifest.params["seed"] == 0
    assert [s.keys for s in manifest.shards] == [("a", "b", "c"), ("d", "e")]
    before, after = _decoded(erased), _decoded(str(out))
    raw_before, raw_after = _raw(erased), _raw(str(out))
    assert raw_after["b"] == raw_before["b"]  # unchanged sample: every field byte-identical
    for key in "acde":
        known = before[key]["erase_mask.png"] == 0
        image_in, image_out = before[key]["image.png"], after[key]["image.png"]
        assert image_out.shape == image_in.shape and image_out.dtype == np.uint8
        assert image_out[known].tobytes() == image_in[known].tobytes()
        assert (image_out[~known] != 0).any()  # the hole is filled, not left at the erase value
        meta_in, meta_out = before[key]["meta.json"], after[key]["meta.json"]
        assert {k: v for k, v in meta_out.items() if k != "inpaint"} == meta_in
        assert meta_out["inpaint"]["iterations"] == 4 and meta_out["inpaint"]["final_loss"] > 0
        assert raw_after[key]["erase_mask.png"] == raw_before[key]["erase_mask.png"]


def test_rerun_and_a_shard_alone_are_byte_identical(erased, tmp_path):
    full, again, alone = tmp_path / "full", tmp_path / "again", tmp_path / "alone"
    for out, extra in ((full, []), (again, []), (alone, ["--shard", "1/2"])):
        result = runner.invoke(app, ["inpaint", "-i", erased, "-o", str(out), *TINY, *extra])
        assert result.exit_code == 0, result.output
    shards = [s.name for s in open_artifact(str(full)).manifest.shards]
    for name in shards:
        assert (full / name).read_bytes() == (again / name).read_bytes()
    assert (full / shards[1]).read_bytes() == (alone / shards[1]).read_bytes()


def test_skip_preset_pads_small_images(erased, tmp_path):
    out = tmp_path / "skip"
    args = ["--preset", "skip", "--width", "4", "--depth", "3", "--skip-channels", "2", "--input-channels", "4", "--iterations", "2"]
    result = runner.invoke(app, ["inpaint", "-i", erased, "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    after = _decoded(str(out))
    assert after["e"]["image.png"].shape == (11, 13, 3)
    assert after["e"]["meta.json"]["inpaint"]["padded_size"] == [16, 16]  # multiple 8, at least 16
    assert after["c"]["meta.json"]["inpaint"]["padded_size"] == [40, 40]
    assert open_artifact(str(out)).manifest.params["lr"] == 0.01


def test_bad_samples_fail_naming_them_or_are_quarantined(tmp_path):
    everything = _sample("all", 16, 16, True, 5)
    everything["erase_mask.png"] = np.full((16, 16), 255, np.uint8)
    nothing = _sample("none", 16, 16, True, 6)
    nothing["erase_mask.png"] = np.zeros((16, 16), np.uint8)
    missing = _sample("nomask", 16, 16, True, 7)
    del missing["erase_mask.png"]
    good = _sample("good", 16, 16, True, 8)
    source = write_erase_artifact(tmp_path / "bad", [everything, nothing, missing, good], shard_size=4)
    result = runner.invoke(app, ["inpaint", "-i", source, "-o", str(tmp_path / "fail"), *TINY])
    assert result.exit_code == 2 and "'all'" in result.output and "hides every pixel" in result.output
    assert not (tmp_path / "fail" / "_manifest.json").exists()
    result = runner.invoke(app, ["inpaint", "-i", source, "-o", str(tmp_path / "skip"), *TINY, "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(tmp_path / "skip")).manifest
    errors = {q.key: q.error for q in manifest.quarantine}
    assert set(errors) == {"all", "none", "nomask"}
    assert "hides no pixel" in errors["none"] and "no erase_mask.png" in errors["nomask"]
    assert [s.keys for s in manifest.shards] == [("good",)]
    members = [m for m in read_shard((tmp_path / "skip" / manifest.shards[0].name).read_bytes(), decode=False)]
    assert [m["__key__"] for m in members] == ["good"]


def test_refuses_an_input_that_is_not_an_erase_artifact(tmp_path):
    source = write_erase_artifact(tmp_path / "ingest", [_sample("a", 8, 8, False, 0)], stage="ingest")
    result = runner.invoke(app, ["inpaint", "-i", source, "-o", str(tmp_path / "out"), *TINY])
    assert result.exit_code == 2 and "erase artifact" in result.output and "'ingest'" in result.output
