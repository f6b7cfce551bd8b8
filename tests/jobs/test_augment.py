"""The augment stage on a tiny VOC set: one sub-policy per image, boxes in the image, reproducible shards."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app
from tests.voc_fixtures import ingest_native, make_voc

runner = CliRunner()
COUNT = 12


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return ingest_native(tmp_path_factory.mktemp("augment"), COUNT, side=96)


def _shards(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.glob("shard-*.tar"))}


def test_every_image_is_augmented_once_with_its_boxes(native, tmp_path):
    result = runner.invoke(app, ["augment", "-i", native, "-o", str(tmp_path / "aug")])
    assert result.exit_code == 0, result.output
    augmented, source = open_artifact(str(tmp_path / "aug")), open_artifact(native)
    keys = sorted(source.key_index())
    outputs, inputs = augmented.lookup(keys), source.lookup(keys)
    assert sorted(outputs) == keys
    dropped = 0
    for key in keys:
        meta, image = outputs[key]["meta.json"], outputs[key]["image.png"]
        record = meta["augment"]
        assert image.shape == inputs[key]["image.png"].shape and 1 <= record["sub_policy"] <= 15
        assert len(record["ops"]) == 2 and record["policy"] == "v3"
        assert len(meta["boxes"]) == len(meta["labels"]) == len(meta["difficult"]) == 1 - record["boxes_dropped"]
        for x0, y0, x1, y1 in meta["boxes"]:
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        if not any(op["applied"] for op in record["ops"]):
            assert np.array_equal(image, inputs[key]["image.png"]) and meta["boxes"] == inputs[key]["meta.json"]["boxes"]
        dropped += record["boxes_dropped"]
    summary = augmented.manifest.summary
    assert summary["samples"] == COUNT and summary["boxes_in"] == COUNT and summary["boxes_dropped"] == dropped
    assert sum(summary["sub_policy_counts"].values()) == COUNT


def test_shards_reproduce_alone_resumed_and_with_another_seed_differ(native, tmp_path):
    assert runner.invoke(app, ["augment", "-i", native, "-o", str(tmp_path / "full")]).exit_code == 0
    for worker in ("0/2", "1/2"):
        assert runner.invoke(app, ["augment", "-i", native, "-o", str(tmp_path / "split"), "--shard", worker]).exit_code == 0
    assert runner.invoke(app, ["merge", "-o", str(tmp_path / "split")]).exit_code == 0
    full = _shards(tmp_path / "full")
    assert len(full) == 3 and _shards(tmp_path / "split") == full
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    (tmp_path / "resumed" / "_manifest.json").unlink()
    (tmp_path / "resumed" / "shard-000001.tar").write_bytes(b"truncated")
    assert runner.invoke(app, ["augment", "-i", native, "-o", str(tmp_path / "resumed")]).exit_code == 0
    assert _shards(tmp_path / "resumed") == full
    assert (tmp_path / "resumed" / "_manifest.json").read_bytes() == (tmp_path / "full" / "_manifest.json").read_bytes()
    assert runner.invoke(app, ["augment", "-i", native, "-o", str(tmp_path / "seed1"), "--seed", "1"]).exit_code == 0
    assert _shards(tmp_path / "seed1") != full


def test_resized_images_are_refused(tmp_path):
    voc = make_voc(tmp_path / "voc", 2, side=64)
    assert runner.invoke(app, ["ingest", "-i", str(voc), "-o", str(tmp_path / "sq"), "--size", "32"]).exit_code == 0
    result = runner.invoke(app, ["augment", "-i", str(tmp_path / "sq"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "ingest --resize none" in result.output


def test_a_malformed_sample_names_itself_and_is_quarantined_under_skip(tmp_path):
    from saliencylab.runner import RunRequest, plan_tasks, run_stage
    from saliencylab.storage import LocalStorage

    image = np.full((40, 50, 3), 90, np.uint8)
    meta = {"size": [40, 50], "original_size": [40, 50], "boxes": [[5.0, 5.0, 30.0, 30.0]], "labels": ["cat"], "difficult": [False]}
    samples = {"good": meta, "bad": meta | {"labels": []}}
    request = RunRequest("inpaint", "1", {}, {}, plan_tasks(sorted(samples), 2))
    run_stage(LocalStorage(tmp_path / "set"), request, lambda t, p: [{"__key__": k, "image.png": image, "meta.json": samples[k]} for k in t.items])
    failed = runner.invoke(app, ["augment", "-i", str(tmp_path / "set"), "-o", str(tmp_path / "a")])
    assert failed.exit_code == 2 and "'bad'" in failed.output and "1 boxes but 0 labels" in failed.output
    skipped = runner.invoke(app, ["augment", "-i", str(tmp_path / "set"), "-o", str(tmp_path / "b"), "--on-error", "skip"])
    assert skipped.exit_code == 0
    manifest = open_artifact(str(tmp_path / "b")).manifest
    assert [q.key for q in manifest.quarantine] == ["bad"] and manifest.num_samples == 1
