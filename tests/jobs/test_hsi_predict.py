"""The hsi-predict stage on random weights: maps per labelled sample, compare on them, bad labels, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.hsi.model import HSISpec, build_hsi_model
from saliencylab.runner import RunRequest, ShardTask, run_stage
from saliencylab.shards import shard_name
from saliencylab.storage import open_storage

from jobs.cli import app
from tests.hsi_fixtures import HEIGHT, WIDTH, write_salicon_coco

runner = CliRunner()


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    root = tmp_path_factory.mktemp("hsi")
    salicon, coco = write_salicon_coco(root)
    out = root / "labels"
    result = runner.invoke(app, ["hsi-labels", "-i", f"salicon={salicon}", "-i", f"coco={coco}", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def predicted(labels, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "pred"
    result = runner.invoke(app, ["hsi-predict", "-i", str(labels), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _samples(out) -> dict[str, dict]:
    artifact = open_artifact(str(out))
    return {s["__key__"]: s for shard in artifact.manifest.shards for s in artifact.samples(shard.name)}


def test_one_map_per_labelled_sample_at_the_image_size(labels, predicted):
    conditional = {k: s for k, s in _samples(labels).items() if s["meta.json"]["label"] is not None}
    maps = _samples(predicted)
    assert set(maps) == set(conditional) and len(maps) == 3
    for key, sample in maps.items():
        saliency = sample["saliency.npy"]
        assert saliency.shape == (HEIGHT, WIDTH) and saliency.dtype == np.float32
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
        assert sample["meta.json"]["label"] == conditional[key]["meta.json"]["label"]
        assert sample["meta.json"]["prompt"] == f"a photo of a {sample['meta.json']['label']}"
    assert any("RANDOM weights" in w for w in open_artifact(str(predicted)).manifest.warnings)


def test_compare_scores_predictions_against_the_pseudo_labels(labels, predicted, tmp_path):
    result = runner.invoke(app, ["compare", "-i", f"pred={predicted}", "-i", f"target={labels}", "-o", str(tmp_path / "cmp"),
                                 "--bootstrap", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = open_artifact(str(tmp_path / "cmp")).manifest.summary
    assert summary["status_counts"] == {"ok": 3} and len(summary["missing_pred"]) == 3  # the passive samples
    assert np.isfinite(summary["metrics"]["cc"]["mean"])


def test_no_text_baseline_and_weights_file(labels, predicted, tmp_path):
    result = runner.invoke(app, ["hsi-predict", "-i", str(labels), "-o", str(tmp_path / "base"), "--features", "u4,u5,z"])
    assert result.exit_code == 0, result.output
    assert open_artifact(str(tmp_path / "base")).manifest.params["features"] == ["u4", "u5", "z"]

    weights = tmp_path / "hsi.pth"
    torch.save(build_hsi_model(HSISpec(), seed=0).state_dict(), weights)  # the default random model, as a file
    result = runner.invoke(app, ["hsi-predict", "-i", str(labels), "-o", str(tmp_path / "w"), "--weights", str(weights), "--seed", "7"])
    assert result.exit_code == 0, result.output
    loaded, default = _samples(tmp_path / "w"), _samples(predicted)
    for key in default:
        np.testing.assert_array_equal(loaded[key]["saliency.npy"], default[key]["saliency.npy"])
    assert not any("RANDOM" in w and "HSI (CLIP" in w for w in open_artifact(str(tmp_path / "w")).manifest.warnings)


def test_wrong_weights_are_refused_naming_keys(labels, tmp_path):
    clip_only = tmp_path / "clip.pth"
    torch.save({"visual.conv1.weight": torch.zeros(32, 3, 3, 3)}, clip_only)
    result = runner.invoke(app, ["hsi-predict", "-i", str(labels), "-o", str(tmp_path / "a"), "--weights", str(clip_only)])
    assert result.exit_code == 2 and "visual.conv1.weight" in result.output and "missing keys" in result.output
    result = runner.invoke(app, ["hsi-predict", "-i", str(labels), "-o", str(tmp_path / "b"), "--weights", str(clip_only),
                                 "--clip-weights", str(clip_only)])  # fmt: skip
    assert result.exit_code == 2 and "not both" in result.output
    assert not (tmp_path / "a" / "_manifest.json").exists()


def test_bad_labels_are_named_or_quarantined(tmp_path):
    image = np.full((40, 50, 3), 128, dtype=np.uint8)
    samples = [
        {"__key__": "good", "image.png": image, "meta.json": {"label": "dog"}},
        {"__key__": "empty", "image.png": image, "meta.json": {"label": " "}},
        {"__key__": "long", "image.png": image, "meta.json": {"label": "word " * 80}},
        {"__key__": "passive", "image.png": image, "meta.json": {"label": None}},
    ]
    source = tmp_path / "images"
    request = RunRequest(stage="fixture", stage_version="1", params={}, inputs={}, tasks=(ShardTask(0, shard_name(0), ()),))
    run_stage(open_storage(str(source)), request, lambda task, policy: samples)
    result = runner.invoke(app, ["hsi-predict", "-i", str(source), "-o", str(tmp_path / "fail")])
    assert result.exit_code == 2 and "'empty'" in result.output
    result = runner.invoke(app, ["hsi-predict", "-i", str(source), "-o", str(tmp_path / "skip"), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(tmp_path / "skip")).manifest
    assert {q.key for q in manifest.quarantine} == {"empty", "long"} and manifest.num_samples == 1
    assert "longer than CLIP's 77 tokens" in next(q.error for q in manifest.quarantine if q.key == "long")
    assert _samples(tmp_path / "skip")["good"]["saliency.npy"].shape == (40, 50)
