"""The cam stage: maps for ingested images, overrides recorded, seeded random weights, the grad-cam engine agrees, bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def ingested(demo_dataset, tmp_path_factory):
    """Three demo images at their native, different sizes (so batches must split by size)."""
    out = tmp_path_factory.mktemp("ingest")
    args = ["ingest", "-i", str(demo_dataset[0]), "-o", str(out), "--resize", "none", "--limit", "3"]
    assert runner.invoke(app, args).exit_code == 0
    return out


@pytest.fixture(scope="module")
def tiny(demo_dataset, tmp_path_factory):
    """Two demo images at 64x64, one per shard."""
    out = tmp_path_factory.mktemp("tiny")
    args = ["ingest", "-i", str(demo_dataset[0]), "-o", str(out), "--size", "64", "--limit", "2", "--shard-size", "1"]
    assert runner.invoke(app, args).exit_code == 0
    return out


def _maps(uri):
    artifact = open_artifact(str(uri))
    return {s["__key__"]: s["cam.npy"] for r in artifact.manifest.shards for s in artifact.samples(r.name)}


def test_maps_at_native_sizes_with_overrides(ingested, tmp_path):
    out = tmp_path / "cam"
    args = ["cam", "-i", str(ingested), "-o", str(out), "--detector", "ssd300", "--layer", "backbone.extra.0", "--internal-resize", "off"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    maps = _maps(out)
    images = open_artifact(str(ingested)).lookup(list(maps))
    for key, cam in maps.items():
        assert cam.dtype == np.float16 and cam.shape == images[key]["image.png"].shape[:2]
        assert 0.0 <= float(cam.min()) and float(cam.max()) <= 1.0
    manifest = open_artifact(str(out)).manifest
    assert manifest.params["layer"] == "backbone.extra.0" and manifest.params["internal_resize"] == "off"
    assert any("ssd300 ran with RANDOM weights" in w for w in manifest.warnings)


def test_grad_cam_engine_gives_the_same_maps(ingested, tmp_path):
    common = ["-i", str(ingested), "--detector", "ssd300", "--set", "internal_resize=off"]
    assert runner.invoke(app, ["cam", *common, "-o", str(tmp_path / "fast")]).exit_code == 0
    result = runner.invoke(app, ["cam", *common, "-o", str(tmp_path / "ref"), "--engine", "grad-cam"])
    assert result.exit_code == 0, result.output
    fast, ref = _maps(tmp_path / "fast"), _maps(tmp_path / "ref")
    for key in fast:
        np.testing.assert_allclose(fast[key].astype(np.float32), ref[key].astype(np.float32), atol=2e-3)


def test_random_weights_are_drawn_from_the_seed(tiny, tmp_path):
    """Regression: `--weights random` used to build a differently initialised model on every run."""
    common = ["-i", str(tiny), "--detector", "ssdlite", "--internal-resize", "off"]
    for name, extra in (("a", []), ("b", []), ("seed7", ["--seed", "7"])):
        torch.manual_seed(len(name))  # the global RNG must not matter
        result = runner.invoke(app, ["cam", *common, "-o", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
    a, b, seed7 = (open_artifact(str(tmp_path / name)) for name in ("a", "b", "seed7"))
    assert a.manifest.params["seed"] == 0 and seed7.manifest.params["seed"] == 7
    assert a.manifest.to_json() == b.manifest.to_json()
    for record in a.manifest.shards:
        assert (tmp_path / "a" / record.name).read_bytes() == (tmp_path / "b" / record.name).read_bytes()
    assert seed7.manifest.run_id != a.manifest.run_id
    maps_a, maps_7 = _maps(tmp_path / "a"), _maps(tmp_path / "seed7")
    assert any(not np.array_equal(maps_a[key], maps_7[key]) for key in maps_a)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--detector", "yolov9"], "valid names: ['faster_rcnn'"),
        (["--detector", "ssd300", "--layer", "backbone.extraa.1"], "backbone.extra"),
    ],
)
def test_bad_choices_are_named(ingested, tmp_path, args, message):
    result = runner.invoke(app, ["cam", "-i", str(ingested), "-o", str(tmp_path / "x"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x" / "_manifest.json").exists()


def test_mismatched_weights_name_the_keys(ingested, tmp_path):
    torch.save({"backbone.nope.weight": torch.zeros(1)}, tmp_path / "w.pth")
    result = runner.invoke(app, ["cam", "-i", str(ingested), "-o", str(tmp_path / "x"), "--detector", "ssd300", "--weights", str(tmp_path / "w.pth")])
    assert result.exit_code == 2 and "backbone.nope.weight" in result.output
