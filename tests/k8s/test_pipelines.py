"""The other studies' Argo DAGs (k8s/pipelines/) follow their declarations in saliencylab.pipeline.

The files' validity (strict schema, lint, policies, fresh render, kustomization) is checked with
every other manifest by test_manifests and test_policies; here: the DAGs of the augmentation study,
the XAI benchmark and the HSI study.
"""

from __future__ import annotations

from saliencylab.cluster import task_name, template_name
from saliencylab.pipeline import (
    AUGMENTATION_PRESETS,
    AUGMENTATION_VARIANTS,
    HSI_FOLDS,
    HSI_PRESETS,
    XAI_METHODS,
    XAI_PRESETS,
    augmentation_steps,
    hsi_study_steps,
    xai_benchmark_steps,
)
from saliencylab.stages import get_stage

from tests.k8s.checks import REPO, load_documents
from tests.k8s.test_manifests import _pipeline_params, _resolved_params, workflow_templates

TEMPLATE = "saliencylab-augmentation-study"


def dag(preset: str = "paper") -> dict[str, dict]:
    entry = next(t for t in workflow_templates()[TEMPLATE]["spec"]["templates"] if t["name"] == preset)
    return {t["name"]: t for t in entry["dag"]["tasks"]}


def test_the_augmentation_study_is_rendered_and_applied_with_the_others():
    (kustomization,) = load_documents(REPO / "k8s/kustomization.yaml")
    assert "pipelines/augmentation-study.yaml" in kustomization["resources"]
    spec = workflow_templates()[TEMPLATE]["spec"]
    assert [t["name"] for t in spec["templates"] if "dag" in t] == list(AUGMENTATION_PRESETS)
    assert spec["entrypoint"] == "paper"


def test_the_dag_follows_the_declaration():
    steps = augmentation_steps()
    tasks = dag()
    assert list(tasks) == [task_name(s.name) for s in steps]
    for number, step in enumerate(steps):
        task = tasks[task_name(step.name)]
        assert task["templateRef"] == {"name": template_name(get_stage(step.stage)), "template": "sharded"}
        waits = set(task.get("depends", "").split(" && ")) - {""}
        reads = {task_name(s) for s in step.inputs.values() if not s.startswith("@")}
        assert waits == (reads if step.name != "report" else {task_name(s.name) for s in steps[:number]}), step.name
        arguments = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
        assert arguments["output"] == f"{{{{workflow.parameters.run}}}}/{step.name}"
        for name, source in step.inputs.items():
            expected = f"{{{{workflow.parameters.{source[1:]}}}}}" if source.startswith("@") else f"{{{{workflow.parameters.run}}}}/{source}"
            assert arguments[name] == expected, (step.name, name)
        assert "when" not in task  # the masks are required: they split training and test ids


def test_the_four_finetunes_run_in_parallel_one_worker_each():
    tasks = dag()
    finetunes = [task_name(f"finetune/{v}") for v in AUGMENTATION_VARIANTS]
    for name in finetunes:
        assert not set(tasks[name]["depends"].split(" && ")) & set(finetunes)
    assert tasks["cam-erase"]["depends"] == "ingest-test && finetune-erase"
    assert _pipeline_params(template=TEMPLATE)["finetune-shards"] == "1"  # an epoch needs the one before
    assert _pipeline_params(template=TEMPLATE)["cam-shards"] == "4"


def test_params_files_resolve_to_the_declared_parameters_and_users_cannot_break_the_wiring():
    steps = {task_name(s.name): s for s in augmentation_steps(coco_weights="coco.pth")}
    resolved = _resolved_params("paper", {"coco-weights": "coco.pth"}, TEMPLATE)
    assert set(resolved) == set(steps)
    for name, step in steps.items():
        assert {k: resolved[name][k] for k in step.params} == step.params, name
    user = {"ingest-params": "size: 64, split: all, shard_size: 8", "erase-params": "map_size: 64", "finetune-params": "epochs: 1"}
    resolved = _resolved_params("paper", user, TEMPLATE)
    assert resolved["ingest-test"]["size"] == 64 and resolved["ingest-train-512"]["size"] == resolved["erase"]["map_size"] == 512
    assert [resolved[n]["split"] for n in ("ingest-train", "ingest-train-512", "ingest-test")] == ["unmasked", "unmasked", "masked"]
    assert {resolved[n]["shard_size"] for n in ("ingest-train", "ingest-train-512", "ingest-test")} == {8}
    assert resolved["finetune-inpaint"]["epochs"] == 1 and resolved["finetune-inpaint"]["weights"] == "random"


def test_the_xai_benchmark_dag_follows_its_declaration_with_the_methods_in_parallel():
    (kustomization,) = load_documents(REPO / "k8s/kustomization.yaml")
    assert "pipelines/xai-benchmark.yaml" in kustomization["resources"]
    template = "saliencylab-xai-benchmark"
    for preset in XAI_PRESETS:
        entry = next(t for t in workflow_templates()[template]["spec"]["templates"] if t["name"] == preset)
        tasks = {t["name"]: t for t in entry["dag"]["tasks"]}
        steps = xai_benchmark_steps(preset)
        assert list(tasks) == [task_name(s.name) for s in steps]
        for method in XAI_METHODS:
            assert "depends" not in tasks[f"xai-{method}"]  # reads only the external image set: all three at once
            assert tasks[f"compare-{method}-hsi"]["depends"] == f"xai-{method} && hsi-predict"
        assert tasks["report"]["depends"] == " && ".join(task_name(s.name) for s in steps[:-1])
        resolved = _resolved_params(preset, {"hsi-weights": "h.pth", "xai-params": "method: gbp, arch: resnet18"}, template)
        for step in xai_benchmark_steps(preset, {"xai": {"arch": "resnet18"}}, hsi_weights="h.pth"):
            assert {k: resolved[task_name(step.name)][k] for k in step.params} == step.params, step.name  # method stays the step's


def test_the_hsi_study_dag_fans_the_folds_out_and_follows_its_declaration():
    (kustomization,) = load_documents(REPO / "k8s/kustomization.yaml")
    assert "pipelines/hsi-study.yaml" in kustomization["resources"]
    template = "saliencylab-hsi-study"
    assert _pipeline_params(template=template)["hsi-train-shards"] == str(HSI_FOLDS)  # one worker per fold of a fine-tune
    for preset in HSI_PRESETS:
        entry = next(t for t in workflow_templates()[template]["spec"]["templates"] if t["name"] == preset)
        tasks = {t["name"]: t for t in entry["dag"]["tasks"]}
        steps = hsi_study_steps(preset, clip_weights="clip.pt")
        assert list(tasks) == [task_name(s.name) for s in steps]
        for variant, start in (("finetune", " && hsi-train-pretrain"), ("finetune-clip", ""), ("finetune-baseline", " && hsi-train-pretrain-baseline")):
            assert tasks[f"hsi-train-{variant}"].get("depends", "") == "ingest-hsb" + start
            predictions = [f"hsi-predict-{variant}-fold-{k}" for k in range(HSI_FOLDS)]
            for k, name in enumerate(predictions):  # the folds' held-out predictions run at once, each after its fine-tune only
                assert tasks[name]["depends"] == f"ingest-hsb && hsi-train-{variant}"
                assert tasks[f"compare-{variant}-fold-{k}"]["depends"] == f"{name} && ingest-hsb"
        assert tasks["report"]["depends"] == " && ".join(task_name(s.name) for s in steps[:-1])
        user = {"clip-weights": "clip.pt", "hsi-train-params": "epochs: 2, folds: 3, mode: pretrain", "hsi-predict-params": "fold: 4, batch_size: 8"}
        resolved = _resolved_params(preset, user, template)
        assert set(resolved) == {task_name(s.name) for s in steps}
        for step in hsi_study_steps(preset, {"hsi-train": {"epochs": 2}, "hsi-predict": {"batch_size": 8}}, clip_weights="clip.pt"):
            expected = {k: list(v) if isinstance(v, tuple) else v for k, v in step.params.items()}
            got = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved[task_name(step.name)].items() if k in step.params}
            assert got == expected, step.name  # mode, folds, fold stay the step's
