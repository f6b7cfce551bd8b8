"""`saliencylab render-cluster`: writes the rendered files, `--check` diffs them, and a new stage in the
registry reaches every derived file."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from typer.testing import CliRunner

from saliencylab import cluster
from saliencylab.stages import STAGES, StageSpec

from jobs.cli import app
from tests.k8s.checks import REPO

runner = CliRunner()


def fake_repo(tmp_path):
    (tmp_path / "lib/saliencylab").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(REPO / "lib/saliencylab/stages.py", tmp_path / "lib/saliencylab/stages.py")
    return tmp_path


def test_render_writes_then_check_passes_then_fails_with_a_diff_on_an_edit(tmp_path):
    root = fake_repo(tmp_path)
    assert runner.invoke(app, ["render-cluster", "--root", str(root)]).exit_code == 0
    assert (root / "k8s/pipeline.yaml").exists() and (root / "images/Dockerfile").exists()
    assert runner.invoke(app, ["render-cluster", "--check", "--root", str(root)]).exit_code == 0
    bake = root / "docker-bake.hcl"
    bake.write_text(bake.read_text().replace('default = "localhost:5000"', 'default = "example.org"'))
    (root / "k8s/stages/retired.yaml").write_text("kind: WorkflowTemplate\n")
    result = runner.invoke(app, ["render-cluster", "--check", "--root", str(root)])
    assert result.exit_code == 1
    assert '-  default = "example.org"' in result.output and "k8s/stages/retired.yaml: stale" in result.output
    assert runner.invoke(app, ["render-cluster", "--root", str(root)]).exit_code == 0
    assert not (root / "k8s/stages/retired.yaml").exists()
    assert runner.invoke(app, ["render-cluster", "--check", "--root", str(root)]).exit_code == 0


def test_render_refuses_a_folder_that_is_not_the_repository(tmp_path):
    result = runner.invoke(app, ["render-cluster", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "not the saliencylab repository root" in result.output


def test_a_new_stage_reaches_every_derived_file():
    extra = StageSpec(name="erase", summary="Erase salient regions.", inputs=("images", "maps"), gpu=True, cpu="8", memory="32Gi")
    files = cluster.render_all(("torch==2.14.1", "numpy>=2.0"), ("faster_rcnn",), stages=(*STAGES, extra))
    template = files["k8s/stages/erase.yaml"]
    assert "name: saliencylab-erase" in template and "- erase" in template and "nvidia.com/gpu: '1'" in template
    assert "images={{inputs.parameters.images}}" in template and "maps={{inputs.parameters.maps}}" in template
    assert 'FROM base AS erase\nENTRYPOINT ["saliencylab", "erase"]' in files["images/Dockerfile"]
    assert 'target "erase"' in files["docker-bake.hcl"] and '"erase"]' in files["docker-bake.hcl"]
    assert "- stages/erase.yaml" in files["k8s/kustomization.yaml"] and "name: saliencylab-erase" in files["k8s/kustomization.yaml"]


def test_an_input_named_like_a_template_parameter_is_refused():
    clash = dataclasses.replace(STAGES[0], inputs=("images", "output"))
    with pytest.raises(ValueError, match="clash with template parameters"):
        cluster.render_stage(clash)
