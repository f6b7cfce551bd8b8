"""The hsi-labels stage on a synthetic SALICON/COCO stand-in: kept labels, recorded choices, bad items."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.io import savemat
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app
from tests.hsi_fixtures import CAT, HEIGHT, WIDTH, file_name, gaze_struct, write_salicon_coco

runner = CliRunner()


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return write_salicon_coco(tmp_path_factory.mktemp("hsi"))


def _run(salicon, coco, out, *extra):
    return runner.invoke(app, ["hsi-labels", "-i", f"salicon={salicon}", "-i", f"coco={coco}", "-o", str(out), *extra])


def _samples(out) -> dict[str, dict]:
    artifact = open_artifact(str(out))
    return {s["__key__"]: s for shard in artifact.manifest.shards for s in artifact.samples(shard.name)}


def test_passive_and_kept_conditional_labels(standin, tmp_path):
    result = _run(*standin, tmp_path / "labels", "--shard-size", "2")
    assert result.exit_code == 0, result.output
    samples = _samples(tmp_path / "labels")
    stems = [file_name(i)[:-4] for i in (1, 2, 3)]
    assert sorted(samples) == sorted([*stems, f"{stems[0]}-dog", f"{stems[1]}-cat", f"{stems[1]}-dog"])
    one = samples[stems[0]]
    assert one["meta.json"]["kind"] == "passive" and one["meta.json"]["label"] is None
    assert one["image.png"].shape == (HEIGHT, WIDTH, 3) and one["saliency.npy"].dtype == np.float32
    assert one["meta.json"]["sigma_px"] == pytest.approx(19 * WIDTH / 640)
    assert [d["label"] for d in one["meta.json"]["dropped"]] == ["cat"]  # no fixation on the cat
    dog = samples[f"{stems[0]}-dog"]
    assert dog["meta.json"]["label"] == "dog" and dog["meta.json"]["fixation_share"] == 1.0
    np.testing.assert_array_equal(dog["fixations.npy"], one["fixations.npy"])  # every fixation is on the dog
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[CAT[1] : CAT[3], CAT[0] : CAT[2]] = True
    cat = samples[f"{stems[1]}-cat"]
    assert not cat["fixations.npy"][~inside].any() and cat["fixations.npy"].any()
    assert cat["saliency.npy"].max() == pytest.approx(1.0) and 0 < cat["meta.json"]["fixation_share"] < 1
    three = samples[stems[2]]["meta.json"]
    assert three["fixations_dropped"] == 2 and {d["label"] for d in three["dropped"]} == {"dog", "cat"}
    params = open_artifact(str(tmp_path / "labels")).manifest.params
    for choice in ("area_threshold", "share_threshold", "comparison", "sigma", "sigma_reference_width",
                   "fixation_values", "order", "normalise", "unit", "include_crowd"):  # fmt: skip
        assert choice in params


def test_thresholds_and_unit_are_parameters(standin, tmp_path):
    result = _run(*standin, tmp_path / "strict", "--share-threshold", "0.5", "--unit", "instance")
    assert result.exit_code == 0, result.output
    keys = set(_samples(tmp_path / "strict"))
    stem2 = file_name(2)[:-4]
    assert f"{stem2}-cat-202" in keys and not any(k.startswith(f"{stem2}-dog") for k in keys)  # dog share 2/9


def test_bad_items_are_named_or_quarantined(standin, tmp_path):
    salicon, coco = (tmp_path / "salicon", tmp_path / "coco")
    shutil.copytree(standin[0], salicon)
    shutil.copytree(standin[1], coco)
    (salicon / "fixations" / "train" / file_name(1).replace(".jpg", ".mat")).unlink()
    off_image = gaze_struct([np.array([[0.0, 0.0], [WIDTH + 5.0, 3.0]])])
    savemat(salicon / "fixations" / "train" / file_name(3).replace(".jpg", ".mat"), {"gaze": off_image})
    result = _run(salicon, coco, tmp_path / "fail")
    assert result.exit_code == 2 and file_name(1)[:-4] in result.output and "no fixation file" in result.output
    assert not (tmp_path / "fail" / "_manifest.json").exists()
    result = _run(salicon, coco, tmp_path / "skip", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    manifest = open_artifact(str(tmp_path / "skip")).manifest
    errors = {q.key: q.error for q in manifest.quarantine}
    assert set(errors) == {file_name(1)[:-4], file_name(3)[:-4]} and "no fixation inside" in errors[file_name(3)[:-4]]
    assert manifest.num_samples == 3  # image 2: passive, cat, dog

    document = json.loads((coco / "annotations" / "instances_train2014.json").read_text())
    del document["annotations"][2]["segmentation"]  # image 2's dog
    (coco / "annotations" / "instances_train2014.json").write_text(json.dumps(document))
    result = _run(salicon, coco, tmp_path / "noseg", "--on-error", "skip")
    assert result.exit_code == 0
    quarantine = open_artifact(str(tmp_path / "noseg")).manifest.quarantine
    assert any("annotation 102 of image" in q.error and "no segmentation" in q.error for q in quarantine)


def test_missing_annotations_or_images_stop_the_run(standin, tmp_path):
    result = _run(standin[0], tmp_path, tmp_path / "x")
    assert result.exit_code == 2 and "instances_train2014.json does not exist" in result.output
    result = _run(*standin, tmp_path / "y", "--split", "val")
    assert result.exit_code == 2 and "no images under" in result.output
    result = _run(*standin, tmp_path / "z", "--comparison", "=>")
    assert result.exit_code == 2 and "comparison" in result.output
