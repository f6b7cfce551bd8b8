"""The augmentation study end to end through the local runner: `saliencylab demo --study augmentation`.

A tiny synthetic VOC set (6 photographs cropped to 64 px, 2 with a synthetic mask = the test set),
random weights, one epoch, five DIP iterations: the declaration of saliencylab.pipeline runs
every step, and each artifact records the inputs the declaration wires to it (by URI and digest).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.demo import write_training_demo_dataset
from saliencylab.pipeline import AUGMENTATION_DEMO, AUGMENTATION_DEMO_TRAIN_SIZE, AUGMENTATION_VARIANTS, augmentation_steps

from jobs.cli import app

runner = CliRunner()
SLOW = pytest.mark.slow  # the run: ~2 min of CPU (13 Faster R-CNN R50-FPN builds, 4 fine-tunes, 4 evaluations)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("augmentation")
    result = runner.invoke(app, ["demo", "--study", "augmentation", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "Demo finished." in result.output and "report.html" in result.output
    return workdir / "augmentation-run"


@SLOW
def test_every_declared_step_wrote_an_artifact_from_the_declared_inputs(run):
    steps = augmentation_steps(overrides=AUGMENTATION_DEMO, train_size=AUGMENTATION_DEMO_TRAIN_SIZE)
    artifacts = {s.name: open_artifact(str(run / s.name)) for s in steps}
    for step in steps:
        manifest = artifacts[step.name].manifest
        assert manifest.stage == step.stage, step.name
        for name, source in step.inputs.items():
            if not source.startswith("@"):
                recorded = manifest.inputs[name]
                assert (recorded["uri"], recorded["digest"]) == (str(run / source), artifacts[source].digest), (step.name, name)
        assert {k: manifest.params[k] for k in step.params} == step.params, step.name
    assert set(artifacts["report"].manifest.inputs) == {"run"}


@SLOW
def test_training_and_test_ids_are_split_by_the_masks(run):
    train, maps, test = (open_artifact(str(run / f"ingest/{n}")) for n in ("train", f"train-{AUGMENTATION_DEMO_TRAIN_SIZE}", "test"))
    train_keys = [k for s in train.manifest.shards for k in s.keys]
    assert train_keys == [k for s in maps.manifest.shards for k in s.keys]  # erase joins them shard by shard
    test_keys = [k for s in test.manifest.shards for k in s.keys]
    assert len(train_keys) == 4 and len(test_keys) == 2 and not set(train_keys) & set(test_keys)
    (shard,) = test.manifest.shards
    assert all("mask.png" in s for s in test.samples(shard.name))
    assert train.manifest.params["resize"] == "none" and maps.manifest.params["size"] == AUGMENTATION_DEMO_TRAIN_SIZE
    for variant in ("erase", "inpaint", "augment"):
        assert [k for s in open_artifact(str(run / variant)).manifest.shards for k in s.keys] == train_keys


@SLOW
def test_each_finetune_is_evaluated_and_its_cam_compared(run):
    for variant in AUGMENTATION_VARIANTS:
        tuned = open_artifact(str(run / "finetune" / variant))
        assert tuned.manifest.params["epochs"] == 1 and "final" in tuned.manifest.summary["weights"]
        cam = open_artifact(str(run / "cam" / variant)).manifest
        assert cam.inputs["model"]["digest"] == tuned.digest and cam.params["weights"] == "random"
        assert any("finetune" in w for w in cam.warnings)  # the fine-tune's warnings passed on
        if variant == "baseline":  # the erase CAM's warning reaches the other three through their training sets
            assert not any("cam: faster_rcnn ran with RANDOM weights" in w for w in cam.warnings)  # the fine-tune's weights were used
        evaluated = open_artifact(str(run / "evaluate" / variant)).manifest
        assert evaluated.num_samples == 2 and "coco_ap50" in evaluated.summary["map"]
        for target in ("deepgaze", "human"):
            assert open_artifact(str(run / "compare" / f"{variant}-{target}")).manifest.num_samples == 2


@SLOW
def test_cam_refuses_a_model_input_together_with_weights(run, tmp_path):
    args = ["cam", "-i", f"images={run / 'ingest/test'}", "-i", f"model={run / 'finetune/baseline'}", "-o", str(tmp_path / "cam")]
    result = runner.invoke(app, [*args, "--weights", f"finetune:{run / 'finetune/erase'}"])
    assert result.exit_code == 2 and "give one: the model input means --weights finetune:<model URI>" in result.output
    assert not (tmp_path / "cam").exists() or not (tmp_path / "cam" / "_manifest.json").exists()


def test_the_study_command_checks_every_set_before_running(tmp_path):
    voc, masks = write_training_demo_dataset(tmp_path / "data")
    base = ["augmentation-study", "--images", str(voc), "--masks", str(masks), "-o", str(tmp_path / "r")]
    for pair, message in [
        ("xai.seed=1", "unknown stage 'xai'"),
        ("xai.seed=1", "valid: ['augment', 'cam', 'compare', 'deepgaze', 'erase', 'evaluate', 'finetune', 'ingest', 'inpaint', 'report']"),
        ("finetune.epoch=1", "step finetune/baseline: unknown finetune parameter 'epoch'; did you mean 'epochs'?"),
        ("inpaint.iterations=many", "step inpaint (inpaint): iterations must be int"),
        ("cam.weights=x.pth", "cam.weights is set by the study's wiring"),
    ]:
        result = runner.invoke(app, [*base, "--set", "ingest.size=64", "--set", pair])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "r").exists()
