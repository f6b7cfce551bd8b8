"""The ingest stage on real files: demo VOC data, masks, splits, folders, and every kind of bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app

runner = CliRunner()


def _ingest(*args):
    return runner.invoke(app, ["ingest", *args], catch_exceptions=False)


def _samples(uri):
    artifact = open_artifact(str(uri))
    return {s["__key__"]: s for record in artifact.manifest.shards for s in artifact.samples(record.name)}


def test_demo_voc_with_masks(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    result = _ingest("-i", f"images={voc}", "-i", f"masks={masks}", "-o", str(tmp_path / "out"), "--size", "128", "--shard-size", "2")
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(tmp_path / "out")).manifest
    assert manifest.num_samples == 5 and len(manifest.shards) == 3
    assert "SYNTHETIC" in manifest.warnings[0]
    samples = _samples(tmp_path / "out")
    cat = samples["demo_000002"]
    assert cat["image.png"].shape == (128, 128, 3) and cat["mask.png"].shape == (128, 128)
    assert cat["meta.json"]["original_size"] == [300, 451] and cat["meta.json"]["labels"] == ["cat"]
    assert cat["meta.json"]["boxes"] == [[40.0, 0.0, 420.0, 299.0]] and cat["meta.json"]["mask_synthetic"]
    gray = samples["demo_000004"]["meta.json"]
    assert gray["original_mode"] == "L"  # a grayscale photograph, stored as RGB
    moto = samples["demo_000003"]
    assert moto["meta.json"]["mask_classes"] == ["chair", "motorbike"] and moto["meta.json"]["difficult"] == [False, True]
    assert "mask.png" not in samples["demo_000005"]


def test_duplicate_mask_policies(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    maps = {}
    for policy in ("max", "mean", "last"):
        out = tmp_path / policy
        _ingest("-i", str(voc), "-i", str(masks), "-o", str(out), "--size", "64", "--duplicate-masks", policy)
        maps[policy] = _samples(out)["demo_000003"]["mask.png"].astype(int)
    assert (maps["max"] >= maps["last"]).all() and (maps["max"] >= maps["mean"]).all()
    assert not np.array_equal(maps["max"], maps["last"])


def test_splits_and_native_size(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    _ingest("-i", str(voc), "-i", str(masks), "-o", str(tmp_path / "m"), "--split", "masked", "--resize", "none")
    masked = _samples(tmp_path / "m")
    assert sorted(masked) == ["demo_000001", "demo_000002", "demo_000003", "demo_000004"]
    assert masked["demo_000003"]["image.png"].shape == (500, 741, 3)
    _ingest("-i", str(voc), "-i", str(masks), "-o", str(tmp_path / "u"), "--split", "unmasked", "--size", "32")
    assert list(_samples(tmp_path / "u")) == ["demo_000005"]
    _ingest("-i", str(voc), "-o", str(tmp_path / "v"), "--split", "val", "--size", "32")
    assert sorted(_samples(tmp_path / "v")) == ["demo_000002", "demo_000004"]
    result = _ingest("-i", str(voc), "-o", str(tmp_path / "x"), "--split", "nosuch")
    assert result.exit_code == 2 and "nosuch.txt does not exist" in result.output


def test_plain_image_folder(demo_dataset, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(demo_dataset[0] / "JPEGImages", folder / "sub")
    (folder / "sub" / "demo_000001.jpg").rename(folder / "sub" / "street scene.v2.jpg")
    result = _ingest("-i", str(folder), "-o", str(tmp_path / "out"), "--format", "folder", "--size", "32")
    assert result.exit_code == 0, result.output
    samples = _samples(tmp_path / "out")
    assert "sub_street_scene_v2" in samples and samples["sub_street_scene_v2"]["meta.json"]["source"] == "sub/street scene.v2.jpg"


@pytest.fixture
def broken_voc(demo_dataset, tmp_path):
    voc, masks = (tmp_path / "voc", tmp_path / "masks")
    shutil.copytree(demo_dataset[0], voc)
    shutil.copytree(demo_dataset[1], masks)
    return voc, masks


@pytest.mark.parametrize(
    "breakage, key, message",
    [
        ("truncated", "demo_000002", "demo_000002.jpg is not a readable image"),
        ("garbage", "demo_000002", "demo_000002.jpg is not a readable image"),
        ("bad_xml", "demo_000003", "demo_000003.xml is not a valid VOC annotation"),
        ("orphan_mask", "demo_999999", "have no image 'demo_999999'"),
    ],
)
def test_bad_input_fails_clearly_or_is_quarantined(broken_voc, tmp_path, breakage, key, message):
    voc, masks = broken_voc
    if breakage == "truncated":
        path = voc / "JPEGImages" / "demo_000002.jpg"
        path.write_bytes(path.read_bytes()[:2000])
    elif breakage == "garbage":
        (voc / "JPEGImages" / "demo_000002.jpg").write_bytes(b"not a jpeg")
    elif breakage == "bad_xml":
        (voc / "Annotations" / "demo_000003.xml").write_text("<annotation><size>")
    else:
        shutil.copy(masks / "human_attention_mask" / "cat" / "demo_000002.jpg", masks / "human_attention_mask" / "cat" / "demo_999999.jpg")
    args = ["-i", str(voc), "-i", str(masks), "--size", "32", "--shard-size", "2"]
    result = _ingest(*args, "-o", str(tmp_path / "fail"))
    assert result.exit_code == 2
    assert key in result.output and message in result.output
    assert not (tmp_path / "fail" / "_manifest.json").exists()
    result = _ingest(*args, "-o", str(tmp_path / "skip"), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(tmp_path / "skip")).manifest
    (entry,) = manifest.quarantine
    assert entry.key == key and message in entry.error and key in entry.source
    assert key not in open_artifact(str(tmp_path / "skip")).key_index()


def test_empty_and_missing_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _ingest("-i", str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "empty or does not exist" in result.output
    (tmp_path / "novoc" / "x").mkdir(parents=True)
    (tmp_path / "novoc" / "x" / "a.txt").write_text("x")
    result = _ingest("-i", str(tmp_path / "novoc"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no JPEGImages/" in result.output
    result = _ingest("-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "needs --input for ['images']" in result.output


def test_rerun_with_other_parameters_is_refused(demo_dataset, tmp_path):
    voc, _ = demo_dataset
    out = str(tmp_path / "out")
    assert _ingest("-i", str(voc), "-o", out, "--size", "32").exit_code == 0
    before = (tmp_path / "out" / "_manifest.json").read_bytes()
    result = _ingest("-i", str(voc), "-o", out, "--size", "64")
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "out" / "_manifest.json").read_bytes() == before
    assert _ingest("-i", str(voc), "-o", out, "--set", "size=64", "--force").exit_code == 0
    assert open_artifact(out).manifest.params["size"] == 64


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--max-pixels", "0", "max_pixels must be >= 1, got 0"),
        ("--mask-aspect-tolerance", "nan", "mask_aspect_tolerance must be a finite number >= 0"),
        ("--size", "0", "resize policy 'squash' needs size >= 1"),
    ],
)
def test_parameters_that_fail_every_item_are_refused_up_front(demo_dataset, tmp_path, option, value, message):
    result = _ingest("-i", str(demo_dataset[0]), "-o", str(tmp_path / "out"), option, value)
    assert result.exit_code == 2 and message in result.output and "item" not in result.output
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_summary_counts_notes_and_boxes(demo_dataset, tmp_path):
    assert _ingest("-i", str(demo_dataset[0]), "-o", str(tmp_path / "out"), "--size", "32").exit_code == 0
    summary = open_artifact(str(tmp_path / "out")).manifest.summary
    assert summary == {"samples": 5, "unannotated": 0, "boxes_clipped": 0, "boxes_dropped": 0, "decode_notes": {"L converted to RGB": 1}}
