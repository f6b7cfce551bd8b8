"""ingest --format hsb and the hsi-train stage on synthetic stand-ins: pretrain -> folds in parallel -> predict a fold's model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app
from tests.hsb_fixtures import HEIGHT, WIDTH, write_hsb
from tests.hsi_fixtures import write_salicon_coco

runner = CliRunner()
SMOKE = ["--preset", "smoke", "--epochs", "1", "--image-size", "32", "--decoder-channels", "16", "--device", "cpu"]


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _samples(uri) -> dict[str, dict]:
    artifact = open_artifact(str(uri))
    return {s["__key__"]: s for shard in artifact.manifest.shards for s in artifact.samples(shard.name)}


@pytest.fixture(scope="module")
def hsb(tmp_path_factory):
    root = tmp_path_factory.mktemp("hsb")
    result = _invoke("ingest", "--format", "hsb", "-i", write_hsb(root / "raw", per_class=2), "-o", root / "art", "--size", "32")
    assert result.exit_code == 0, result.output
    return root


def test_hsb_ingest_gives_image_map_fixations_and_label_per_row(hsb, tmp_path):
    samples = _samples(hsb / "art")
    assert sorted(samples) == ["images_cat_0", "images_cat_1", "images_dog_0", "images_dog_1"]
    sample = samples["images_dog_1"]
    assert sample["image.png"].shape == (32, 32, 3) and sample["saliency.npy"].dtype == np.float32
    assert 0 <= sample["saliency.npy"].min() and sample["saliency.npy"].max() <= 1 and sample["saliency.npy"].max() > 0.5
    raw = np.asarray(Image.open(hsb / "raw" / "fixations" / "dog_1.png"))
    assert sample["fixations.npy"].dtype == np.uint16 and sample["fixations.npy"].sum() == raw.sum() > 0
    assert sample["meta.json"]["label"] == "dog" and sample["meta.json"]["original_size"] == [HEIGHT, WIDTH]
    json_root = tmp_path / "raw"
    write_hsb(json_root, per_class=2, manifest="hsb.json")
    result = _invoke("ingest", "--format", "hsb", "--manifest", "hsb.json", "-i", json_root, "-o", tmp_path / "art", "--size", "32")
    assert result.exit_code == 0, result.output
    assert sorted(_samples(tmp_path / "art")) == sorted(samples)


def test_hsb_rows_with_a_missing_file_or_label_are_bad_items(hsb, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(hsb / "raw", raw)
    text = (raw / "hsb.csv").read_text().replace("maps/cat_0.png", "maps/nowhere.png").replace(",dog,maps/dog_1", ",,maps/dog_1")
    (raw / "hsb.csv").write_text(text)
    failed = _invoke("ingest", "--format", "hsb", "-i", raw, "-o", tmp_path / "fail")
    assert failed.exit_code == 2 and "maps/nowhere.png" in failed.output and "images_cat_0" in failed.output
    assert not (tmp_path / "fail" / "_manifest.json").exists()
    skipped = _invoke("ingest", "--format", "hsb", "-i", raw, "-o", tmp_path / "skip", "--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output
    quarantine = {q.key: q.error for q in open_artifact(str(tmp_path / "skip")).manifest.quarantine}
    assert sorted(quarantine) == ["images_cat_0", "images_dog_1"] and "empty label" in quarantine["images_dog_1"]
    missing = _invoke("ingest", "--format", "hsb", "-i", raw, "-o", tmp_path / "none", "--manifest", "absent.csv")
    assert missing.exit_code == 2 and "absent.csv does not exist" in missing.output


def test_a_fold_that_cannot_hold_every_class_is_refused_naming_it(hsb, tmp_path):
    result = _invoke("hsi-train", "-i", hsb / "art", "-o", tmp_path / "out", "--mode", "finetune", "--folds", "3", *SMOKE)
    assert result.exit_code == 2
    assert "'cat' has 2" in result.output and "'dog' has 2" in result.output and "3 folds" in result.output
    assert not (tmp_path / "out" / "_run.json").exists()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    salicon, coco = write_salicon_coco(root)
    assert _invoke("hsi-labels", "-i", f"salicon={salicon}", "-i", f"coco={coco}", "-o", root / "labels").exit_code == 0
    result = _invoke("hsi-train", "-i", f"train={root / 'labels'}", "-o", root / "out", "--val-fraction", "0.3", *SMOKE)
    assert result.exit_code == 0, result.output
    return root / "out"


def test_pretraining_keeps_the_best_epoch_on_a_held_out_image(pretrained):
    manifest = open_artifact(str(pretrained)).manifest
    summary = manifest.summary
    assert summary["mode"] == "pretrain" and summary["recipe"]["lr"] == 1e-4 and summary["model"]["image_size"] == 32
    assert summary["weights"] == {"best": "pretrain/weights/best.safetensors", "last": "pretrain/weights/last.safetensors"}
    sizes = summary["units"]["pretrain"]  # 3 conditional labels (image 2 has two), one image held out with all its labels
    assert sizes["train"] + sizes["validation"] == 3 and sizes["train"] >= 1 and sizes["validation"] >= 1
    assert summary["selection"]["best_epoch"] == 1 and (pretrained / "pretrain" / "weights" / "best.safetensors").exists()
    assert any("RANDOM" in w for w in manifest.warnings)


def test_folds_train_as_parallel_shards_from_the_pretrained_model_and_predict_loads_one(hsb, pretrained, tmp_path):
    out = tmp_path / "folds"
    common = ["-i", f"train={hsb / 'art'}", "-i", f"init={pretrained}", "-o", out, "--mode", "finetune", "--folds", "2", *SMOKE]
    for shard in ("1/2", "0/2"):
        result = _invoke("hsi-train", *common, "--shard", shard)
        assert result.exit_code == 0, result.output
        assert not (out / "_manifest.json").exists()
    assert _invoke("merge", "--output", out).exit_code == 0
    summary = open_artifact(str(out)).manifest.summary
    folds = json.loads((out / "folds.json").read_text())
    assert sorted(folds) == sorted(_samples(hsb / "art")) and summary["folds"]["sizes"] == [2, 2]
    for k in (0, 1):
        assert sorted(key.split("_")[1] for key, fold in folds.items() if fold == k) == ["cat", "dog"]
    assert summary["weights"] == {f"fold-{k}": f"fold-{k}/weights/last.safetensors" for k in (0, 1)}
    result = _invoke("hsi-predict", "-i", hsb / "art", "-o", tmp_path / "pred", "--weights", f"hsi-train:{out}#fold-1",
                     "--image-size", "32", "--decoder-channels", "16", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    maps = _samples(tmp_path / "pred")
    assert sorted(maps) == sorted(folds) and maps["images_cat_0"]["saliency.npy"].shape == (32, 32)
    wrong = _invoke("hsi-predict", "-i", hsb / "art", "-o", tmp_path / "p2", "--weights", f"hsi-train:{out}#best", "--image-size", "32")
    assert wrong.exit_code == 2 and "no weights called 'best'" in wrong.output and "fold-0" in wrong.output
    # the model input with --fold: that fold's weights, only its held-out samples, the model's digest recorded
    for k in (0, 1):
        result = _invoke("hsi-predict", "-i", f"images={hsb / 'art'}", "-i", f"model={out}", "-o", tmp_path / f"fold{k}", "--fold", k, "--device", "cpu")
        assert result.exit_code == 0, result.output
        held = _samples(tmp_path / f"fold{k}")
        assert sorted(held) == sorted(key for key, fold in folds.items() if fold == k)
        assert all(sample["saliency.npy"].shape == (32, 32) for sample in held.values())
        manifest = open_artifact(str(tmp_path / f"fold{k}")).manifest
        assert manifest.inputs["model"]["digest"] == open_artifact(str(out)).digest and manifest.params["fold"] == k
    key = sorted(_samples(tmp_path / "fold1"))[0]
    assert np.array_equal(_samples(tmp_path / "fold1")[key]["saliency.npy"], maps[key]["saliency.npy"])  # = --weights ...#fold-1
    both = _invoke("hsi-predict", "-i", f"images={hsb / 'art'}", "-i", f"model={out}", "-o", tmp_path / "p3", "--weights", f"hsi-train:{out}")
    assert both.exit_code == 2 and "both the model input" in both.output
    clash = _invoke("hsi-predict", "-i", f"images={hsb / 'art'}", "-i", f"model={out}", "-o", tmp_path / "p4", "--fold", "0", "--image-size", "64")
    assert clash.exit_code == 2 and "image_size=64 (trained: 32)" in clash.output
    no_folds = _invoke("hsi-predict", "-i", f"images={hsb / 'art'}", "-i", f"model={pretrained}", "-o", tmp_path / "p5", "--fold", "0")
    assert no_folds.exit_code == 2 and "no weights called 'fold-0'" in no_folds.output
    random_fold = _invoke("hsi-predict", "-i", hsb / "art", "-o", tmp_path / "p6", "--fold", "0")
    assert random_fold.exit_code == 2 and "needs a k-fold hsi-train artifact" in random_fold.output
