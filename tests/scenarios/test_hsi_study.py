"""The HSI study end to end through the local runner: `saliencylab hsi-study` on synthetic SALICON/COCO/HSB stand-ins.

As declared in saliencylab.pipeline.hsi_study_steps (2 folds, 32 px, 1 epoch, random weights):
pseudo labels, the full model and the no-text baseline pre-trained, HSB ingested, three
fine-tunes (pre-trained init, CLIP init, baseline) with their folds, every fold's held-out
images predicted with that fold's weights and compared with the HSB maps, report. Every
artifact records the inputs the declaration wires to it, no fold is scored on an image it
trained on, and the report's HSI section has the rows of Tables 1-3 and the per-fold pooling.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.pipeline import HSI_DEMO, hsi_study_steps

from jobs.cli import app
from tests.hsb_fixtures import write_hsb
from tests.hsi_fixtures import write_salicon_coco

runner = CliRunner()
SETS = [f"{stage}.{key}={value}" for stage, params in HSI_DEMO.items() for key, value in params.items()]


def _sets() -> list[str]:
    return [a for s in SETS for a in ("--set", s)]


@pytest.mark.slow  # ~2-3 min on 2 CPU cores: 4 trainings of CLIP RN50 + decoder at 32 px, 7 predictions
def test_the_hsi_study_scores_each_fold_on_its_held_out_images_only(tmp_path):
    salicon, coco = write_salicon_coco(tmp_path / "data")
    hsb = write_hsb(tmp_path / "hsb", per_class=2)
    run = tmp_path / "run"
    args = ["hsi-study", "--salicon", str(salicon), "--coco", str(coco), "--hsb", str(hsb), "-o", str(run), "--folds", "2", *_sets()]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    steps = hsi_study_steps(overrides=HSI_DEMO, folds=2)
    artifacts = {s.name: open_artifact(str(run / s.name)) for s in steps}
    for step in steps:
        manifest = artifacts[step.name].manifest
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in step.params.items()}
        assert manifest.stage == step.stage and {k: manifest.params[k] for k in step.params} == params, step.name
        for name, source in step.inputs.items():
            if not source.startswith("@"):
                assert manifest.inputs[name]["digest"] == artifacts[source].digest, (step.name, name)
    hsb_keys = set(artifacts["ingest/hsb"].key_index())
    assert len(hsb_keys) == 4 and set(artifacts["hsi-predict/pretrain"].key_index()) == hsb_keys  # Table 1: no fine-tuning, every image
    for variant in ("finetune", "finetune-clip", "finetune-baseline"):
        folds = json.loads((run / "hsi-train" / variant / "folds.json").read_text())
        assert set(folds) == hsb_keys
        predicted = [set(artifacts[f"hsi-predict/{variant}/fold-{k}"].key_index()) for k in (0, 1)]
        for k in (0, 1):
            assert predicted[k] == {key for key, fold in folds.items() if fold == k}, (variant, k)  # held out only
            assert set(artifacts[f"compare/{variant}/fold-{k}"].key_index()) == predicted[k]
        assert predicted[0].isdisjoint(predicted[1])
    report = (run / "report" / "report.md").read_text()
    assert "HSI: predicted human saliency" in report and "Cross-validation" in report
    for row in ("pre-trained only (best)", "fine-tuned fold-1, pre-trained init", "fine-tuned fold-0, CLIP init, fresh decoder", "no-text baseline (u4,u5,z)"):
        assert row in report, row
    assert (run / "report" / "report.html").is_file()
    again = runner.invoke(app, args)  # a finished study reruns nothing
    assert again.exit_code == 0, again.output
    assert all(open_artifact(str(run / s.name)).digest == artifacts[s.name].digest for s in steps)


def test_a_bad_set_or_missing_input_stops_the_study_before_anything_runs(tmp_path):
    base = ["hsi-study", "--salicon", str(tmp_path), "--coco", str(tmp_path), "--hsb", str(tmp_path / "none"), "-o", str(tmp_path / "run")]
    result = runner.invoke(app, [*base, "--set", "hsi-predict.fold=0"])
    assert result.exit_code == 2 and "hsi-predict.fold is set by the study's wiring" in result.output
    result = runner.invoke(app, [*base, "--set", "hsi-train.epoch=1"])
    assert result.exit_code == 2 and "unknown hsi-train parameter 'epoch'; did you mean 'epochs'?" in result.output
    result = runner.invoke(app, [*base, "--folds", "1"])
    assert result.exit_code == 2 and "at least 2 folds" in result.output
    assert not (tmp_path / "run").exists()
