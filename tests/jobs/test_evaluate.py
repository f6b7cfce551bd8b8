"""The evaluate stage on a finetune artifact, and cam reading the same artifact as weights.

The model artifact is written here in the finetune stage's output layout without training (which
takes minutes): a finished artifact of stage "finetune" whose manifest summary holds what
evaluate reads (`weights: {"final": "weights/final.safetensors"}`, num_classes, classes,
architecture, input_size), the safetensors file a random, seeded R50-FPN state dict with a
21-class box predictor.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.datasets.voc import VOC_CLASSES
from saliencylab.detection import Detections, GroundTruth, build_faster_rcnn, class_indices, detect, rescale
from saliencylab.runner import RunRequest, ShardTask, plan_tasks, run_stage
from saliencylab.seeding import seeded_init
from saliencylab.shards import shard_name
from saliencylab.storage import LocalStorage

from jobs.cli import app
from tests.lib.test_ap import pycocotools_ap50

runner = CliRunner()
SIZE = ["--min-size", "64", "--max-size", "64"]
FINETUNE_WARNING = "finetune: started from RANDOM weights (test artifact)"


def write_finetune_artifact(path, state: dict[str, torch.Tensor], num_classes: int = 21) -> str:
    """A finished `finetune` artifact at `path`: one curve sample, the weights and the summary naming them."""
    weights = save({k: v.contiguous() for k, v in state.items()})

    summary = {
        "architecture": "fasterrcnn_resnet50_fpn",
        "num_classes": num_classes,
        "classes": ["__background__", *VOC_CLASSES] if num_classes == 21 else [str(i) for i in range(num_classes)],
        "input_size": {"min_size": 64, "max_size": 64},
        "weights": {"final": "weights/final.safetensors"},
    }

    def finalize(out, request, records):
        return summary, {"weights/final.safetensors": weights}

    request = RunRequest("finetune", "1", {}, {}, (ShardTask(0, shard_name(0), ("epoch-1",)),), warnings=(FINETUNE_WARNING,))
    run_stage(LocalStorage(path), request, lambda task, policy: [{"__key__": "epoch-1", "curve.json": {"loss": [1.0]}}], finalize=finalize)
    return str(path)


@pytest.fixture(scope="module")
def state():
    with seeded_init(0, "test", "finetuned-weights"):
        return build_faster_rcnn(None, 21).state_dict()


@pytest.fixture(scope="module")
def finetuned(state, tmp_path_factory):
    return write_finetune_artifact(tmp_path_factory.mktemp("finetune"), state)


@pytest.fixture(scope="module")
def images(demo_dataset, tmp_path_factory):
    """Four demo photographs squashed to 96×96 (boxes stay in original pixels); one has a difficult chair."""
    out = tmp_path_factory.mktemp("ingest")
    args = ["ingest", "-i", str(demo_dataset[0]), "-o", str(out), "--resize", "squash", "--size", "96", "--limit", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return str(out)


def _samples(uri) -> dict[str, dict]:
    artifact = open_artifact(str(uri))
    return {s["__key__"]: s for record in artifact.manifest.shards for s in artifact.samples(record.name)}


@pytest.fixture(scope="module")
def evaluated(finetuned, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    args = ["evaluate", "-i", f"model={finetuned}", "-i", f"images={images}", "-o", str(out)]  # at the trained 64 px
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_detections_are_the_models_in_original_pixels(evaluated, images, state):
    samples, inputs = _samples(evaluated), _samples(images)
    assert sorted(samples) == sorted(inputs)
    # The stage's detections are the model's on the same batch, mapped from 96×96 to each original size.
    model = build_faster_rcnn(state, 21, min_size=64, max_size=64)
    keys = list(inputs)
    batch = torch.from_numpy(np.stack([inputs[k]["image.png"] for k in keys])).permute(0, 3, 1, 2).float() / 255
    for key, found in zip(keys, detect(model, batch)):
        stored, meta = samples[key]["detections.json"], inputs[key]["meta.json"]
        expected = rescale(found, (96, 96), meta["original_size"])
        assert len(stored["scores"]) > 0
        np.testing.assert_allclose(stored["boxes"], expected.boxes, rtol=1e-6)
        np.testing.assert_allclose(stored["scores"], expected.scores, rtol=1e-6)
        assert stored["labels"] == [VOC_CLASSES[i - 1] for i in expected.labels]
        height, width = meta["original_size"]
        boxes = np.asarray(stored["boxes"])
        assert boxes[:, 2].max() <= width + 1e-3 and boxes[:, 3].max() <= height + 1e-3
        assert boxes[:, 2].max() > 96 or boxes[:, 3].max() > 96  # really in original pixels, not 96×96
        truth = {"boxes": meta["boxes"], "labels": meta["labels"], "difficult": meta["difficult"], "original_size": [height, width]}
        assert samples[key]["truth.json"] == truth


def _objects(record: dict, kind: type):
    labels = class_indices(record["labels"], VOC_CLASSES)
    if kind is GroundTruth:
        return GroundTruth(record["boxes"], labels, record["difficult"])
    return Detections(record["boxes"], record["scores"], labels)


def test_metrics_agree_with_pycocotools_and_the_files(evaluated, finetuned):
    manifest = open_artifact(str(evaluated)).manifest
    summary = manifest.summary
    assert json.loads((evaluated / "metrics.json").read_bytes()) == summary
    assert summary["model"] == {"weights": "final", "architecture": "fasterrcnn_resnet50_fpn", "min_size": 64, "max_size": 64}
    assert summary["images"] == 4 and summary["difficult"] == {"coco_ap50": "gt", "voc07": "ignore", "voc2010": "ignore"}
    assert summary["positives"]["coco_ap50"]["chair"] == 1 and summary["positives"]["voc07"]["chair"] == 0  # the difficult chair
    assert summary["per_class"]["voc07"]["chair"] is None and summary["per_class"]["voc07"]["aeroplane"] is None

    samples = _samples(evaluated).values()
    truths = [_objects(s["truth.json"], GroundTruth) for s in samples]
    found = [_objects(s["detections.json"], Detections) for s in samples]
    per_class, mean = pycocotools_ap50(truths, found, 20, "gt")
    assert summary["map"]["coco_ap50"] == pytest.approx(mean, abs=1e-4)
    expected = [None if np.isnan(v) else pytest.approx(v, abs=1e-4) for v in per_class]
    assert [summary["per_class"]["coco_ap50"][c] for c in VOC_CLASSES] == expected

    rows = list(csv.DictReader(io.StringIO((evaluated / "metrics.csv").read_text())))
    assert [r["class"] for r in rows] == [*VOC_CLASSES, "mean"]
    assert rows[-1]["coco_ap50"] == str(summary["map"]["coco_ap50"])
    assert rows[VOC_CLASSES.index("person")]["positives_coco"] == "2"
    assert FINETUNE_WARNING in manifest.warnings
    assert manifest.inputs["model"]["digest"] == open_artifact(finetuned).digest


def test_cam_reads_a_finetune_artifact_as_weights(finetuned, images, tmp_path):
    common = ["cam", "-i", images, "--detector", "faster_rcnn", "--internal-resize", "off"]
    result = runner.invoke(app, [*common, "-o", str(tmp_path / "cam"), "--weights", f"finetune:{finetuned}"])
    assert result.exit_code == 0, result.output
    maps = _samples(tmp_path / "cam")
    assert len(maps) == 4 and all(s["cam.npy"].shape == (96, 96) for s in maps.values())
    manifest = open_artifact(str(tmp_path / "cam")).manifest
    assert FINETUNE_WARNING in manifest.warnings and not any("ran with RANDOM weights" in w for w in manifest.warnings)

    result = runner.invoke(app, [*common, "-o", str(tmp_path / "x"), "--weights", f"finetune:{finetuned}#epoch-9"])
    assert result.exit_code == 2 and "no weights called 'epoch-9'; it has ['final']" in result.output


@pytest.mark.parametrize(
    "num_classes, weights, message",
    [
        (91, {"x": torch.zeros(1)}, "predicts 91 classes"),
        (21, {"backbone.nope": torch.zeros(1)}, "backbone.nope"),
    ],
)
def test_bad_model_is_refused_with_the_reason(images, tmp_path, num_classes, weights, message):
    model = write_finetune_artifact(tmp_path / "model", weights, num_classes)
    result = runner.invoke(app, ["evaluate", "-i", model, "-i", images, "-o", str(tmp_path / "out"), *SIZE])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_an_artifact_of_another_stage_is_not_a_model(images, tmp_path):
    result = runner.invoke(app, ["evaluate", "-i", images, "-i", images, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is a 'ingest' artifact, not a finetune output" in result.output


def _image_set(path, metas: dict[str, dict]) -> str:
    """An ingest-format artifact of 32×32 grey images with the given meta.json per key."""
    request = RunRequest("ingest", "1", {}, {}, plan_tasks(sorted(metas), 8))
    grey = np.full((32, 32, 3), 128, dtype=np.uint8)
    run_stage(LocalStorage(path), request, lambda task, policy: [{"__key__": k, "image.png": grey, "meta.json": metas[k]} for k in task.items])
    return str(path)


def test_unknown_class_is_a_bad_item_and_an_empty_set_is_refused(finetuned, tmp_path):
    good = {"boxes": [[1, 1, 20, 20]], "labels": ["dog"], "difficult": [False], "original_size": [64, 64]}
    images = _image_set(tmp_path / "images", {"a": good, "b": {**good, "labels": ["dragon"]}})
    base = ["evaluate", "-i", finetuned, "-i", images, *SIZE]
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "fail")])
    assert result.exit_code == 2 and "item 'b'" in result.output and "unknown class 'dragon'; valid classes: ['aeroplane'" in result.output
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "skip"), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    artifact = open_artifact(str(tmp_path / "skip"))
    assert [q.key for q in artifact.manifest.quarantine] == ["b"] and artifact.manifest.summary["images"] == 1
    assert artifact.manifest.summary["positives"]["coco_ap50"]["dog"] == 1

    empty = _image_set(tmp_path / "empty", {})
    result = runner.invoke(app, ["evaluate", "-i", finetuned, "-i", empty, "-o", str(tmp_path / "none")])
    assert result.exit_code == 2 and "has no images" in result.output
