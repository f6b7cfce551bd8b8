"""The pipeline declarations: step order, wiring, parameters layered over presets, task names, refusals."""

from __future__ import annotations

import pytest

from saliencylab.cluster import task_name
from saliencylab.pipeline import (
    AUGMENTATION_DEMO,
    AUGMENTATION_VARIANTS,
    CAM_ARCHITECTURE,
    HSI_BASELINE_FEATURES,
    HSI_DEMO,
    XAI_METHODS,
    Step,
    augmentation_steps,
    check_order,
    hsi_study_steps,
    stages_of,
    study_steps,
    xai_benchmark_steps,
)

EXPECTED_ORDER = [
    "ingest/train", "ingest/train-512", "ingest/test", "cam/train", "deepgaze/train", "erase", "inpaint", "augment",
    "finetune/baseline", "finetune/erase", "finetune/inpaint", "finetune/augment",
    "evaluate/baseline", "evaluate/erase", "evaluate/inpaint", "evaluate/augment",
    "deepgaze/test",
    "cam/baseline", "compare/baseline-deepgaze", "compare/baseline-human",
    "cam/erase", "compare/erase-deepgaze", "compare/erase-human",
    "cam/inpaint", "compare/inpaint-deepgaze", "compare/inpaint-human",
    "cam/augment", "compare/augment-deepgaze", "compare/augment-human",
    "report",
]  # fmt: skip


def by_name(steps: tuple[Step, ...]) -> dict[str, Step]:
    return {s.name: s for s in steps}


def test_augmentation_study_runs_every_step_once_after_what_it_reads():
    steps = augmentation_steps()
    assert [s.name for s in steps] == EXPECTED_ORDER
    check_order(steps)  # every read names an earlier step or an external input
    names = [task_name(s.name) for s in steps]
    assert len(set(names)) == len(names) and "finetune-baseline" in names and "ingest-train-512" in names
    assert stages_of(steps) == ["ingest", "cam", "deepgaze", "erase", "inpaint", "augment", "finetune", "evaluate", "compare", "report"]


def test_augmentation_study_wiring():
    steps = by_name(augmentation_steps())
    raw = {"images": "@images", "masks": "@masks"}
    splits = {name: (steps[name].params["split"], steps[name].params["resize"]) for name in ("ingest/train", "ingest/train-512", "ingest/test")}
    assert splits == {"ingest/train": ("unmasked", "none"), "ingest/train-512": ("unmasked", "squash"), "ingest/test": ("masked", "squash")}
    assert all(steps[name].inputs == raw for name in splits)
    assert steps["cam/train"].inputs == steps["deepgaze/train"].inputs == {"images": "ingest/train-512"}
    assert steps["erase"].inputs == {"images": "ingest/train", "cam": "cam/train", "deepgaze": "deepgaze/train"}
    assert steps["erase"].params["map_size"] == steps["ingest/train-512"].params["size"] == 512
    assert steps["inpaint"].inputs == {"images": "erase"} and steps["augment"].inputs == {"images": "ingest/train"}
    training_sets = {v: steps[f"finetune/{v}"].inputs["train"] for v in AUGMENTATION_VARIANTS}
    assert training_sets == {"baseline": "ingest/train", "erase": "erase", "inpaint": "inpaint", "augment": "augment"}
    for variant in AUGMENTATION_VARIANTS:
        assert steps[f"finetune/{variant}"].params["architecture"] == CAM_ARCHITECTURE
        assert steps[f"evaluate/{variant}"].inputs == {"model": f"finetune/{variant}", "images": "ingest/test"}
        cam = steps[f"cam/{variant}"]
        assert cam.inputs == {"images": "ingest/test", "model": f"finetune/{variant}"}  # the fine-tune is a real edge
        assert cam.params == {"detector": "faster_rcnn"}  # weights come from the model input, not a parameter
        assert steps[f"compare/{variant}-deepgaze"].inputs == {"pred": f"cam/{variant}", "target": "deepgaze/test"}
        assert steps[f"compare/{variant}-human"].inputs == {"pred": f"cam/{variant}", "target": "ingest/test"}
    assert steps["deepgaze/test"].inputs == {"images": "ingest/test"}
    assert steps["report"].inputs == {"run": "@run"} and steps["report"].params == {"protocol": "paper"}


def test_overrides_reach_every_step_of_a_stage_but_not_the_wiring_keys():
    overrides = {"ingest": {"shard_size": 8, "split": "all", "size": 128}, "finetune": {"epochs": 2}, "deepgaze": {"weights": "dg.pth"}}
    steps = by_name(augmentation_steps(overrides=overrides, coco_weights="coco.pth", train_size=64))
    assert {steps[n].params["shard_size"] for n in ("ingest/train", "ingest/train-64", "ingest/test")} == {8}  # erase joins same-size shards
    assert [steps[n].params["split"] for n in ("ingest/train", "ingest/train-64", "ingest/test")] == ["unmasked", "unmasked", "masked"]
    assert steps["ingest/test"].params["size"] == 128 and steps["ingest/train-64"].params["size"] == steps["erase"].params["map_size"] == 64
    assert steps["ingest/train-64"].fixed == ("split", "resize", "size")
    assert all(steps[f"finetune/{v}"].params["epochs"] == 2 and steps[f"finetune/{v}"].params["weights"] == "coco.pth" for v in AUGMENTATION_VARIANTS)
    assert steps["cam/train"].params["weights"] == "coco.pth"
    assert steps["deepgaze/train"].params == steps["deepgaze/test"].params == {"weights": "dg.pth"}
    assert augmentation_steps(overrides=AUGMENTATION_DEMO, train_size=64)  # the demo settings are a valid override


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "corrected"}, "unknown augmentation study preset 'corrected'; valid: ['paper']"),
        ({"overrides": {"finetune": {"architecture": "fasterrcnn_tiny"}}}, "reads only fasterrcnn_resnet50_fpn"),
        ({"overrides": {"cam": {"weights": "x.pth"}}}, "cam.weights is set by the study's wiring"),
        ({"overrides": {"finetune": {"weights": "x.pth"}}}, "finetune.weights is set by the study's wiring"),
    ],
)
def test_augmentation_study_refuses_settings_that_break_its_wiring(kwargs, message):
    with pytest.raises(ValueError) as error:
        augmentation_steps(**kwargs)
    assert message in str(error.value)


def test_check_order_refuses_reads_of_later_or_unknown_steps_and_duplicate_outputs():
    ingest = Step("ingest", "ingest", {"images": "@images"})
    with pytest.raises(ValueError, match="step 'cam' reads 'ingest', which does not run before it"):
        check_order((Step("cam", "cam", {"images": "ingest"}), ingest))
    with pytest.raises(ValueError, match="two steps write 'ingest'"):
        check_order((ingest, ingest))
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        check_order((Step("x", "nope", {}),))


def test_the_empirical_study_is_unchanged_by_the_generic_parts():
    steps = study_steps(("faster_rcnn",), "paper")
    assert [s.name for s in steps] == ["ingest", "deepgaze", "cam/faster_rcnn", "compare/faster_rcnn-deepgaze", "compare/faster_rcnn-human", "report"]
    assert all(s.fixed == () for s in steps)
    assert [s.name for s in study_steps(("faster_rcnn",), human_masks=False)] == ["ingest", "deepgaze", "cam/faster_rcnn", "compare/faster_rcnn-deepgaze", "report"]


def test_xai_benchmark_wiring():
    steps = xai_benchmark_steps("notebook", {"xai": {"arch": "resnet18"}}, hsi_weights="hsi-train:s3://b/h#best", classifier_weights="r.pth")
    assert [s.name for s in steps] == [
        "hsi-predict", "xai/gbp", "compare/gbp-hsi", "xai/gradcam", "compare/gradcam-hsi", "xai/rise", "compare/rise-hsi", "report",
    ]  # fmt: skip
    named = by_name(steps)
    assert named["hsi-predict"].inputs == {"images": "@images"} and named["hsi-predict"].params == {"weights": "hsi-train:s3://b/h#best"}
    for method in XAI_METHODS:
        xai = named[f"xai/{method}"]
        assert xai.inputs == {"images": "@images"} and xai.fixed == ("method", "weights")
        assert (xai.params["method"], xai.params["weights"], xai.params["arch"], xai.params["rise_masks"]) == (method, "r.pth", "resnet18", 6000)
        assert named[f"compare/{method}-hsi"].inputs == {"pred": f"xai/{method}", "target": "hsi-predict"}
    with pytest.raises(ValueError, match="xai.method is set by the benchmark's wiring"):
        xai_benchmark_steps(overrides={"xai": {"method": "rise"}})
    with pytest.raises(ValueError, match=r"unknown xai benchmark preset 'x'; valid: \['notebook', 'paper'\]"):
        xai_benchmark_steps("x")


def test_hsi_study_wiring():
    steps = hsi_study_steps(overrides=HSI_DEMO, folds=2, clip_weights="clip.pt")
    named = by_name(steps)
    predictions = [f"hsi-predict/{v}/fold-{k}" for v in ("finetune", "finetune-clip", "finetune-baseline") for k in (0, 1)]
    assert [s.name for s in steps] == [
        "hsi-labels", "hsi-train/pretrain", "hsi-train/pretrain-baseline", "ingest/hsb",
        "hsi-train/finetune", "hsi-train/finetune-clip", "hsi-train/finetune-baseline",
        "hsi-predict/pretrain", "compare/pretrain",
        *(n for p in predictions for n in (p, p.replace("hsi-predict/", "compare/"))), "report",
    ]  # fmt: skip
    assert named["hsi-labels"].inputs == {"salicon": "@salicon", "coco": "@coco"}
    assert named["ingest/hsb"].inputs == {"images": "@hsb"} and named["ingest/hsb"].params == {"size": 32, "format": "hsb"}
    pretrain = named["hsi-train/pretrain"]
    assert pretrain.inputs == {"train": "hsi-labels"} and (pretrain.params["mode"], pretrain.params["clip_weights"], pretrain.params["epochs"]) == ("pretrain", "clip.pt", 1)
    assert named["hsi-train/finetune"].inputs == {"train": "ingest/hsb", "init": "hsi-train/pretrain"}
    assert named["hsi-train/finetune"].params["folds"] == 2 and "clip_weights" not in named["hsi-train/finetune"].params  # init and clip_weights exclude each other
    assert named["hsi-train/finetune-clip"].inputs == {"train": "ingest/hsb"} and named["hsi-train/finetune-clip"].params["clip_weights"] == "clip.pt"
    assert named["hsi-train/finetune-baseline"].inputs["init"] == "hsi-train/pretrain-baseline"
    for name in ("hsi-train/pretrain-baseline", "hsi-train/finetune-baseline", "hsi-predict/finetune-baseline/fold-1"):
        assert named[name].params["features"] == HSI_BASELINE_FEATURES
    assert named["hsi-predict/pretrain"].inputs == {"images": "ingest/hsb", "model": "hsi-train/pretrain"} and named["hsi-predict/pretrain"].params == {"fold": -1}
    fold = named["hsi-predict/finetune-clip/fold-1"]
    assert fold.inputs == {"images": "ingest/hsb", "model": "hsi-train/finetune-clip"} and fold.params == {"fold": 1} and fold.fixed == ("fold",)
    assert named["compare/finetune-clip/fold-1"].inputs == {"pred": "hsi-predict/finetune-clip/fold-1", "target": "ingest/hsb"}
    assert len({task_name(s.name) for s in steps}) == len(steps)
    lean = [s.name for s in hsi_study_steps(folds=2, random_init=False, baseline=False)]
    assert lean == ["hsi-labels", "hsi-train/pretrain", "ingest/hsb", "hsi-train/finetune", "hsi-predict/pretrain", "compare/pretrain",
                    "hsi-predict/finetune/fold-0", "compare/finetune/fold-0", "hsi-predict/finetune/fold-1", "compare/finetune/fold-1", "report"]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "x"}, r"unknown HSI study preset 'x'; valid: \['paper'\]"),
        ({"folds": 1}, "at least 2 folds"),
        ({"overrides": {"hsi-train": {"mode": "pretrain"}}}, "hsi-train.mode is set by the study's wiring"),
        ({"overrides": {"hsi-predict": {"fold": 0}}}, "hsi-predict.fold is set by the study's wiring"),
        ({"overrides": {"ingest": {"format": "voc"}}}, "ingest.format is set by the study's wiring"),
    ],
)
def test_hsi_study_refuses_settings_that_break_its_wiring(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hsi_study_steps(**kwargs)
