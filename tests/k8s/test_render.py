"""`saliencylab render-cluster`: writes the rendered files, `--check` diffs them, and a new stage in the
registry reaches every derived file."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import yaml
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
    files = cluster.render_all(("torch==2.14.1", "torchvision==0.29.1", "numpy>=2.0"), ("faster_rcnn",), stages=(*STAGES, extra))
    template = files["k8s/stages/erase.yaml"]
    assert "name: saliencylab-erase" in template and "- erase" in template and "nvidia.com/gpu: '1'" in template
    assert "image: saliencylab-gpu:" in template and "image: saliencylab-cpu:" in template  # worker GPU, merge CPU
    assert "images={{inputs.parameters.images}}" in template and "maps={{inputs.parameters.maps}}" in template
    assert "  erase        saliencylab-gpu" in files["images/Dockerfile"]
    assert "- stages/erase.yaml" in files["k8s/kustomization.yaml"]


@pytest.mark.parametrize("name", ["my_stage", "Blur", "-erase", "erase-", "x" * 41, ""])
def test_a_stage_name_that_is_not_a_dns_label_is_refused(name):
    with pytest.raises(ValueError, match="DNS-1123"):
        StageSpec(name=name, summary="s", inputs=("images",))


def test_gpus_and_transient_exit_codes_are_checked():
    with pytest.raises(ValueError, match="needs gpu=True"):
        StageSpec(name="train", summary="s", inputs=("images",), gpus=2)
    with pytest.raises(ValueError, match="never transient"):
        StageSpec(name="train", summary="s", inputs=("images",), retry_exit_codes=(137,))


def test_a_multi_gpu_training_stage_runs_torchrun_with_its_gpus_shared_memory_deadline_and_retry_codes():
    spec = StageSpec(name="train-x", summary="Train.", inputs=("images",), gpu=True, gpus=4, memory="64Gi", worker_hours=72, retry_exit_codes=(75,))
    templates = {t["name"]: t for t in cluster.stage_templates(spec)}
    worker = templates["worker"]
    assert worker["container"]["command"] == ["torchrun", "--standalone", "--nproc-per-node=4", "--no-python", "saliencylab", "train-x"]
    assert worker["container"]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert {v["name"]: v for v in worker["volumes"]}["dshm"]["emptyDir"]["sizeLimit"] == "4Gi"
    assert worker["activeDeadlineSeconds"] == 72 * 3600 and "in [75, 143]" in worker["retryStrategy"]["expression"]
    assert "nvidia.com/gpu" not in templates["merge"]["container"]["resources"]["limits"]
    wt = yaml.safe_load(cluster.render_stage(spec))  # the header is comments
    assert wt["spec"]["activeDeadlineSeconds"] > 72 * 3600  # the run outlives its longest worker
    with pytest.raises(ValueError, match="worker_hours"):
        StageSpec(name="train-y", summary="s", inputs=("images",), worker_hours=0)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def bake_metadata(tag: str = COMMIT) -> dict:
    """The shape `docker buildx bake --metadata-file` writes: one entry per target, plus build warnings."""
    return {
        flavour: {
            "buildx.build.ref": f"builder/builder0/{flavour}",
            "containerimage.digest": f"sha256:{digit * 64}",
            "image.name": f"registry.lab:5000/saliencylab-{flavour}:{tag}",
        }
        for flavour, digit in (("cpu", "a"), ("gpu", "b"))
    } | {"buildx.build.warnings": []}


def test_bake_metadata_pins_both_images_by_commit_tag_and_digest():
    pins = cluster.image_pins(bake_metadata())
    assert pins["saliencylab-cpu"] == {"newName": "registry.lab:5000/saliencylab-cpu", "newTag": COMMIT, "digest": "sha256:" + "a" * 64}
    kustomization = cluster.render_kustomization(STAGES, pins)
    assert f"newTag: {COMMIT}" in kustomization and "digest: sha256:" + "b" * 64 in kustomization
    with pytest.raises(ValueError, match="full commit"):
        cluster.image_pins(bake_metadata(tag="0.1.0"))
    with pytest.raises(ValueError, match="no image"):
        cluster.image_pins({k: v for k, v in bake_metadata().items() if k != "gpu"})


def test_render_cluster_pins_from_a_bake_metadata_file_and_check_stays_clean(tmp_path):
    root = fake_repo(tmp_path)
    metadata = tmp_path / "bake-metadata.json"
    metadata.write_text(json.dumps(bake_metadata()))
    result = runner.invoke(app, ["render-cluster", "--root", str(root), "--bake-metadata", str(metadata)])
    assert result.exit_code == 0, result.output
    assert json.loads((root / cluster.PINS_FILE).read_text())["saliencylab-gpu"]["newTag"] == COMMIT
    assert f"newTag: {COMMIT}" in (root / "k8s/kustomization.yaml").read_text()
    assert runner.invoke(app, ["render-cluster", "--check", "--root", str(root)]).exit_code == 0
    metadata.write_text(json.dumps(bake_metadata(tag="latest")))
    result = runner.invoke(app, ["render-cluster", "--root", str(root), "--bake-metadata", str(metadata)])
    assert result.exit_code == 2 and "full commit" in result.output


def test_an_input_named_like_a_template_parameter_is_refused():
    clash = dataclasses.replace(STAGES[0], inputs=("images", "output"))
    with pytest.raises(ValueError, match="clash with template parameters"):
        cluster.render_stage(clash)
