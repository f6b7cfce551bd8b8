"""The XAI benchmark end to end through the local runner: `saliencylab xai-benchmark` on a synthetic SALICON/COCO stand-in.

hsi-labels makes the labelled image set (64-128 px drawn objects); then, as declared in
saliencylab.pipeline: HSI maps, GBP / Grad-CAM / RISE maps of a random ResNet-18, compare each
with the HSI maps, report. Every artifact records the inputs the declaration wires to it.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.pipeline import XAI_METHODS, xai_benchmark_steps

from jobs.cli import app
from tests.hsi_fixtures import write_salicon_coco

runner = CliRunner()
SETS = ["xai.arch=resnet18", "xai.target=top", "xai.rise_masks=16", "xai.input_size=64", "compare.bootstrap=50"]


@pytest.mark.slow  # ~40 s on 2 CPU cores: CLIP RN50 and three ResNet-18 runs
def test_the_benchmark_runs_every_declared_step_on_its_declared_inputs(tmp_path):
    salicon, coco = write_salicon_coco(tmp_path / "data")
    labels = tmp_path / "labels"
    assert runner.invoke(app, ["hsi-labels", "-i", f"salicon={salicon}", "-i", f"coco={coco}", "-o", str(labels)]).exit_code == 0
    run = tmp_path / "run"
    result = runner.invoke(app, ["xai-benchmark", "--images", str(labels), "-o", str(run), *(a for s in SETS for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    overrides = {"xai": {"arch": "resnet18", "target": "top", "rise_masks": 16, "input_size": 64}, "compare": {"bootstrap": 50}}
    steps = xai_benchmark_steps(overrides=overrides)
    artifacts = {s.name: open_artifact(str(run / s.name)) for s in steps}
    labelled = open_artifact(str(labels))
    for step in steps:
        manifest = artifacts[step.name].manifest
        assert manifest.stage == step.stage and {k: manifest.params[k] for k in step.params} == step.params, step.name
        for name, source in step.inputs.items():
            expected = labelled if source == "@images" else artifacts.get(source)
            if expected is not None:
                assert manifest.inputs[name]["digest"] == expected.digest, (step.name, name)
    predicted = artifacts["hsi-predict"].manifest.num_samples
    assert predicted > 0
    for method in XAI_METHODS:
        assert artifacts[f"xai/{method}"].manifest.num_samples == artifacts[f"compare/{method}-hsi"].manifest.num_samples == predicted
    assert (run / "report" / "report.html").is_file()


def test_a_bad_set_stops_the_benchmark_before_anything_runs(tmp_path):
    result = runner.invoke(app, ["xai-benchmark", "--images", str(tmp_path / "none"), "-o", str(tmp_path / "run"), "--set", "xai.method=rise"])
    assert result.exit_code == 2 and "xai.method is set by the benchmark's wiring" in result.output
    result = runner.invoke(app, ["xai-benchmark", "--images", str(tmp_path / "none"), "-o", str(tmp_path / "run"), "--set", "xai.rise=1"])
    assert result.exit_code == 2 and "step xai/gbp: unknown xai parameter 'rise'" in result.output
    assert not (tmp_path / "run").exists()
