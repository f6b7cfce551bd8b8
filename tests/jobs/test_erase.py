"""The erase stage on a tiny VOC set: selection by criterion, erasing only inside the mask, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.erasing import erase_mask, resize_mask
from saliencylab.runner import RunRequest, plan_tasks, run_stage
from saliencylab.storage import LocalStorage

from jobs.cli import app
from tests.voc_fixtures import ingest_native, make_voc

runner = CliRunner()
MAP = 64  # side of the map grid (the study's 512 ingest, scaled down)
COUNT = 12


def _maps_artifact(path, maps: dict[str, np.ndarray], stage: str, field: str):
    """A finished artifact of `stage` holding one map per key, written through the real runner."""
    request = RunRequest(stage, "1", {"toy": True}, {}, plan_tasks(sorted(maps), 4))
    run_stage(LocalStorage(path), request, lambda task, policy: [{"__key__": k, field: maps[k]} for k in task.items])
    return str(path)


def _blob(rng, centre: tuple[int, int]) -> np.ndarray:
    """A smooth bump at `centre` (row, col) plus a little noise: distinct values, a clear top region."""
    yy, xx = np.mgrid[0:MAP, 0:MAP]
    bump = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 60.0)
    return bump + 1e-3 * rng.random((MAP, MAP))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Native ingest (80 px images), CAMs and DeepGaze maps: even ids agree (kept), odd ids disagree (selected)."""
    root = tmp_path_factory.mktemp("erase")
    native = ingest_native(root, COUNT, side=80)
    keys = sorted(open_artifact(native).key_index())
    rng = np.random.default_rng(0)
    cams, gazes = {}, {}
    for i, key in enumerate(keys):
        cams[key] = (_blob(rng, (20, 20)) / 1.01).astype(np.float16)
        density = _blob(rng, (20, 20) if i % 2 == 0 else (48, 48))
        gazes[key] = (density / density.sum()).astype(np.float32)
    return {
        "root": root,
        "native": native,
        "keys": keys,
        "cams": cams,
        "gazes": gazes,
        "cam": _maps_artifact(root / "cam", cams, "cam", "cam.npy"),
        "deepgaze": _maps_artifact(root / "deepgaze", gazes, "deepgaze", "density.npy"),
    }


def _erase(study, out, *extra, cam=None, deepgaze=None):
    args = ["erase", "-i", f"images={study['native']}", "-i", f"cam={cam or study['cam']}"]
    args += ["-i", f"deepgaze={deepgaze or study['deepgaze']}", "-o", str(out), "--map-size", str(MAP), *extra]
    return runner.invoke(app, args)


def test_selected_images_are_erased_only_inside_the_mask(study, tmp_path):
    result = _erase(study, tmp_path / "erased")
    assert result.exit_code == 0, result.output
    erased, native = open_artifact(str(tmp_path / "erased")), open_artifact(str(study["native"]))
    originals = native.lookup(study["keys"])
    outputs = erased.lookup(study["keys"])
    assert sorted(outputs) == study["keys"]  # the whole training set, not only the selected ids
    for i, key in enumerate(study["keys"]):
        out, original = outputs[key], originals[key]
        meta, mask = out["meta.json"], out["erase_mask.png"] > 0
        assert out["erase_mask.png"].shape == original["image.png"].shape[:2]
        assert {k: meta[k] for k in ("boxes", "labels", "difficult")} == {k: original["meta.json"][k] for k in ("boxes", "labels", "difficult")}
        assert meta["changed"] == (i % 2 == 1) and meta["erase"]["status"] == ("selected" if i % 2 else "kept")
        assert meta["erase"]["criterion"] == "iou" and meta["erase"]["threshold"] == 0.1
        if i % 2 == 0:
            assert meta["erase"]["score"] > 0.9
            assert not mask.any() and np.array_equal(out["image.png"], original["image.png"])
            continue
        assert meta["erase"]["score"] < 0.1
        expected = resize_mask(erase_mask(study["cams"][key]), original["image.png"].shape[:2])
        assert np.array_equal(mask, expected)
        assert 0.015 < mask.mean() < 0.04  # about 2.5 % of the pixels
        assert np.array_equal(out["image.png"][~mask], original["image.png"][~mask])  # unchanged outside
        assert (out["image.png"][mask] == 0).all()  # fill zero inside
    summary = erased.manifest.summary
    assert summary["selected"] == COUNT // 2 and summary["total"] == COUNT
    assert summary["criterion"]["name"] == "iou" and summary["criterion"]["comparison"] == "<"


def test_mae_criterion_and_mean_fill(study, tmp_path):
    result = _erase(study, tmp_path / "mae", "--criterion", "mae", "--threshold", "0.05", "--comparison", ">", "--fill", "imagenet-mean")
    assert result.exit_code == 0, result.output
    erased = open_artifact(str(tmp_path / "mae"))
    assert erased.manifest.summary["selected"] == COUNT // 2  # the disagreeing half has the larger MAE
    sample = erased.lookup([study["keys"][1]])[study["keys"][1]]
    assert sample["meta.json"]["erase"]["score"] > 0.05
    assert (sample["image.png"][sample["erase_mask.png"] > 0] == (124, 116, 104)).all()


def test_human_criterion_passes_ids_without_a_mask_through(study, tmp_path):
    keys = study["keys"]
    masks = {k: (study["cams"][k].astype(np.float32) * 255).astype(np.uint8) for k in keys[:3]}  # agrees with the CAM
    masks[keys[3]] = np.flipud(masks[keys[0]]).copy()  # disagrees: its top is elsewhere
    request = RunRequest("ingest", "1", {"resize": "squash"}, {}, plan_tasks(keys, 4))
    samples = {k: {"__key__": k, "meta.json": {"id": k}} | ({"mask.png": masks[k]} if k in masks else {}) for k in keys}
    run_stage(LocalStorage(tmp_path / "human"), request, lambda task, policy: [samples[k] for k in task.items])
    args = ["erase", "-i", f"images={study['native']}", "-i", f"cam={study['cam']}", "-i", f"human={tmp_path / 'human'}"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out"), "--map-size", str(MAP), "--criterion", "human-iou"])
    assert result.exit_code == 0, result.output
    summary = open_artifact(str(tmp_path / "out")).manifest.summary
    assert summary["status_counts"] == {"kept": 3, "no_human_mask": COUNT - 4, "selected": 1}
    # the criterion needs its reference input, and refuses one it does not use
    unused = runner.invoke(app, [*args, "-i", f"deepgaze={study['deepgaze']}", "-o", str(tmp_path / "x"), "--criterion", "human-iou"])
    assert unused.exit_code == 2 and "does not use the deepgaze input" in unused.output
    missing = runner.invoke(app, ["erase", "-i", study["native"], "-i", study["cam"], "-o", str(tmp_path / "y"), "--criterion", "human-mae"])
    assert missing.exit_code == 2 and "needs --input human=URI" in missing.output


def test_missing_cam_keys_are_listed_and_quarantined_under_skip(study, tmp_path):
    cams = {k: v for k, v in study["cams"].items() if k not in study["keys"][2:4]}
    partial = _maps_artifact(tmp_path / "cam", cams, "cam", "cam.npy")
    failed = _erase(study, tmp_path / "fail", cam=partial)
    assert failed.exit_code == 2
    assert f"lacks 2 image key(s): {study['keys'][2]}, {study['keys'][3]}" in failed.output
    assert not (tmp_path / "fail" / "_manifest.json").exists()
    skipped = _erase(study, tmp_path / "skip", "--on-error", "skip", cam=partial)
    assert skipped.exit_code == 0, skipped.output
    manifest = open_artifact(str(tmp_path / "skip")).manifest
    assert sorted(q.key for q in manifest.quarantine) == study["keys"][2:4]
    assert manifest.num_samples == COUNT - 2


def test_maps_of_another_size_and_masks_covering_nothing_name_the_sample(study, tmp_path):
    keys = study["keys"]
    cams = dict(study["cams"]) | {keys[5]: np.zeros((MAP // 2, MAP // 2), np.float16)}
    small = _maps_artifact(tmp_path / "small", cams, "cam", "cam.npy")
    result = _erase(study, tmp_path / "a", cam=small)
    assert result.exit_code == 2 and keys[5] in result.output and f"expected ({MAP}, {MAP})" in result.output
    broken = dict(study["cams"]) | {keys[6]: np.full((MAP, MAP), np.nan, np.float16)}
    result = _erase(study, tmp_path / "nan", cam=_maps_artifact(tmp_path / "broken", broken, "cam", "cam.npy"))
    assert result.exit_code == 2 and keys[6] in result.output and "NaN" in result.output
    flat = np.ones((MAP, MAP), np.float16)
    flat[:2, :2] = 0  # not constant, but 97.5 % of its pixels tie at the maximum: nothing is strictly above
    cams = dict(study["cams"]) | {keys[1]: flat}
    tied = _maps_artifact(tmp_path / "tied", cams, "cam", "cam.npy")
    result = _erase(study, tmp_path / "b", "--threshold", "2", cam=tied)  # IoU < 2: every image is selected
    assert result.exit_code == 2 and keys[1] in result.output and "covers no pixel" in result.output
    skipped = _erase(study, tmp_path / "c", "--threshold", "2", "--on-error", "skip", cam=tied)
    assert skipped.exit_code == 0, skipped.output
    manifest = open_artifact(str(tmp_path / "c")).manifest
    assert [q.key for q in manifest.quarantine] == [keys[1]] and manifest.summary["selected"] == COUNT - 1


def test_resized_images_are_refused(study, tmp_path):
    voc = make_voc(tmp_path / "voc", 2, side=80)
    assert runner.invoke(app, ["ingest", "-i", str(voc), "-o", str(tmp_path / "sq"), "--size", "64"]).exit_code == 0
    result = runner.invoke(app, ["erase", "-i", str(tmp_path / "sq"), "-i", study["cam"], "-i", study["deepgaze"], "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "ingest --resize none" in result.output
