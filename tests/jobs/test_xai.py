"""The xai stage on random weights: a map per labelled sample for each method, compare on them, labels and bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.runner import RunRequest, ShardTask, run_stage
from saliencylab.shards import shard_name
from saliencylab.storage import open_storage
from saliencylab.xai import build_classifier

from jobs.cli import app
from tests.hsi_fixtures import HEIGHT, WIDTH, write_salicon_coco

runner = CliRunner()
FAST = ["--arch", "resnet18", "--input-size", "64", "--rise-masks", "24", "--rise-cells", "4", "--rise-chunk", "12"]


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """hsi-labels output (3 conditional samples labelled dog/cat, 3 passive ones) and a COCO -> ImageNet label map."""
    root = tmp_path_factory.mktemp("hsi")
    salicon, coco = write_salicon_coco(root)
    result = runner.invoke(app, ["hsi-labels", "-i", f"salicon={salicon}", "-i", f"coco={coco}", "-o", str(root / "labels")])
    assert result.exit_code == 0, result.output
    (root / "map.json").write_text(json.dumps({"dog": 207, "cat": 281}))
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One shard of 40x50 images: ImageNet names, an index, an unknown name, a passive sample, one without a label."""
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    labels = {"tabby": "tabby", "index": 207, "unknown": "dog", "passive": None}
    samples = [{"__key__": k, "image.png": image, "meta.json": {"label": v}} for k, v in labels.items()]
    samples.append({"__key__": "nolabel", "image.png": image, "meta.json": {"id": "nolabel"}})
    source = tmp_path_factory.mktemp("mixed") / "images"
    request = RunRequest(stage="fixture", stage_version="1", params={}, inputs={}, tasks=(ShardTask(0, shard_name(0), ()),))
    run_stage(open_storage(str(source)), request, lambda task, policy: samples)
    return source


def _samples(out) -> dict[str, dict]:
    artifact = open_artifact(str(out))
    return {s["__key__"]: s for shard in artifact.manifest.shards for s in artifact.samples(shard.name)}


def test_each_method_maps_every_labelled_sample_and_compare_scores_them(labels, tmp_path):
    conditional = {k for k, s in _samples(labels / "labels").items() if s["meta.json"]["label"] is not None}
    maps = {}
    for method in ("gbp", "gradcam", "rise"):
        out = tmp_path / method
        args = ["xai", "-i", str(labels / "labels"), "-o", str(out), "--method", method, "--label-map", str(labels / "map.json"), *FAST]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        samples = _samples(out)
        assert set(samples) == conditional and len(samples) == 3
        for sample in samples.values():
            saliency = sample["xai.npy"]
            assert saliency.shape == (HEIGHT, WIDTH) and saliency.dtype == np.float16
            assert float(saliency.min()) == 0.0 and float(saliency.max()) == 1.0
            meta = sample["meta.json"]
            assert meta["method"] == method and meta["class_index"] == {"dog": 207, "cat": 281}[meta["label"]]
            assert ("raw_range" in meta) == (method == "rise")
        manifest = open_artifact(str(out)).manifest
        assert manifest.params["method"] == method and "label_map" in manifest.inputs
        assert any("resnet18 (" + method + ") ran with RANDOM weights" in w for w in manifest.warnings)
        maps[method] = samples
    key = sorted(conditional)[0]
    assert not np.array_equal(maps["gbp"][key]["xai.npy"], maps["gradcam"][key]["xai.npy"])

    result = runner.invoke(app, ["compare", "-i", f"pred={tmp_path / 'rise'}", "-i", f"target={labels / 'labels'}", "-o",
                                 str(tmp_path / "cmp"), "--bootstrap", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = open_artifact(str(tmp_path / "cmp")).manifest.summary
    assert summary["status_counts"] == {"ok": 3} and np.isfinite(summary["metrics"]["mae"]["mean"])


def test_rise_maps_follow_the_seed(mixed, tmp_path):
    common = ["xai", "-i", str(mixed), "--method", "rise", "--target", "top", "--arch", "resnet18", "--input-size", "64",
              "--rise-masks", "8", "--rise-cells", "4"]  # fmt: skip
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert runner.invoke(app, [*common, "-o", str(tmp_path / name), "--seed", seed]).exit_code == 0
    digest = {name: open_artifact(str(tmp_path / name)).manifest.shards[0].sha256 for name in "abc"}
    assert digest["a"] == digest["b"] != digest["c"]
    assert all(s["meta.json"]["target"] == "top" for s in _samples(tmp_path / "a").values())


def test_labels_are_resolved_quarantined_or_skipped(mixed, tmp_path):
    result = runner.invoke(app, ["xai", "-i", str(mixed), "-o", str(tmp_path / "fail"), *FAST])
    assert result.exit_code == 2 and "'unknown'" in result.output and "label map imagenet" in result.output
    assert "closest" in result.output and not (tmp_path / "fail" / "_manifest.json").exists()

    result = runner.invoke(app, ["xai", "-i", str(mixed), "-o", str(tmp_path / "skip"), "--on-error", "skip", *FAST])
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(tmp_path / "skip")).manifest
    assert {q.key for q in manifest.quarantine} == {"unknown", "nolabel"}
    assert "--target top" in next(q.error for q in manifest.quarantine if q.key == "nolabel")
    samples = _samples(tmp_path / "skip")
    assert set(samples) == {"tabby", "index"}  # the passive sample is passed over
    assert samples["tabby"]["meta.json"]["class_index"] == 281 and samples["index"]["meta.json"]["class_name"] == "golden retriever"
    assert samples["tabby"]["xai.npy"].shape == (40, 50)  # explained at 64x64, mapped back to the image size

    result = runner.invoke(app, ["xai", "-i", str(mixed), "-o", str(tmp_path / "top"), "--target", "top", *FAST])
    assert result.exit_code == 0, result.output
    assert set(_samples(tmp_path / "top")) == {"tabby", "index", "unknown", "nolabel"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "rise", "--rise-masks", "0"], "at least 1 mask"),
        (["--method", "rise", "--rise-cells", "1"], "grid size s"),
        (["--method", "rise", "--rise-p1", "0"], "p1 must be in"),
        (["--method", "rise", "--memory-gb", "0.01"], "use --rise-chunk"),
        (["--batch-size", "0"], "batch_size"),
        (["--input-size", "16"], "input_size"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(mixed, tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(app, ["xai", "-i", str(mixed), "-o", str(out), *FAST, *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists() or not any(out.iterdir())


def test_bad_label_map_and_the_notebook_preset(mixed, labels, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dog": 1000}))
    result = runner.invoke(app, ["xai", "-i", str(mixed), "-o", str(tmp_path / "a"), "--label-map", str(bad), *FAST])
    assert result.exit_code == 2 and "[0, 1000)" in result.output
    bad.write_text("[1, 2]")
    result = runner.invoke(app, ["xai", "-i", str(mixed), "-o", str(tmp_path / "b"), "--label-map", str(bad), *FAST])
    assert result.exit_code == 2 and "JSON object" in result.output

    args = ["xai", "-i", str(mixed), "-o", str(tmp_path / "nb"), "--preset", "notebook", "--target", "top", "--arch", "resnet18",
            "--input-size", "64", "--rise-masks", "16"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    params = open_artifact(str(tmp_path / "nb")).manifest.params
    assert (params["method"], params["rise_masks"], params["rise_cells"], params["rise_p1"]) == ("rise", 16, 8, 0.1)


def test_weights_from_a_file_or_the_torchvision_cache(mixed, tmp_path, monkeypatch):
    weights = tmp_path / "resnet18.pth"
    torch.save(build_classifier("resnet18", None, seed=0).state_dict(), weights)  # the default random model, as a file
    common = ["xai", "-i", str(mixed), "--target", "top", "--arch", "resnet18", "--input-size", "64"]
    assert runner.invoke(app, [*common, "-o", str(tmp_path / "random")]).exit_code == 0
    result = runner.invoke(app, [*common, "-o", str(tmp_path / "file"), "--weights", str(weights), "--seed", "5"])
    assert result.exit_code == 0, result.output
    loaded, default = _samples(tmp_path / "file"), _samples(tmp_path / "random")
    for key in default:
        np.testing.assert_array_equal(loaded[key]["xai.npy"], default[key]["xai.npy"])
    assert not any("RANDOM" in w for w in open_artifact(str(tmp_path / "file")).manifest.warnings)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    result = runner.invoke(app, [*common, "-o", str(tmp_path / "cache"), "--weights", "torchvision:ResNet18_Weights.IMAGENET1K_V1"])
    assert result.exit_code == 2 and "resnet18-f37072fd.pth" in result.output and "Nothing is downloaded" in result.output
