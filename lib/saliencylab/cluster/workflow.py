"""The pipelines of saliencylab.pipeline as Argo WorkflowTemplates, one DAG entrypoint per preset.

k8s/pipeline.yaml is the empirical study (`render_pipeline`); k8s/pipelines/<name>.yaml the other
studies (PIPELINE_FILES: the augmentation study, the XAI benchmark, the HSI study). Each task runs its stage's `sharded` template.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from collections.abc import Sequence
from typing import Any

from saliencylab.cluster.common import render_yaml, template_name
from saliencylab.cluster.runs import WORKFLOW_DEADLINE_S
from saliencylab.cluster.templates import GPU_POD_PATCH, IO_NOTE, param, stage_inputs, template_metadata, workflow_deadline, workflow_spec
from saliencylab.pipeline import (
    AUGMENTATION_PRESETS,
    AUGMENTATION_VARIANTS,
    HSI_FOLDS,
    HSI_PRESETS,
    STUDY_PRESETS,
    XAI_METHODS,
    XAI_PRESETS,
    Step,
    augmentation_steps,
    hsi_study_steps,
    study_steps,
    xai_benchmark_steps,
)
from saliencylab.stages import STAGES

SEQUENTIAL_STAGES = ("finetune",)  # its shards are epochs, each needing the one before: one worker (docs/finetune.md)
RUN_ROOT = "run"  # the external input that is the run root itself: its reader waits for every earlier step


EXTERNAL_HELP = {
    "images": "raw images: a VOCdevkit folder, or an image folder with ingest-params 'format: folder'",
    "masks": "human attention masks; empty skips every compare-against-human step",
    RUN_ROOT: "run root, e.g. s3://saliencylab/runs/<name> (no trailing slash); step <s> writes <run>/<s>",
}


def task_name(step_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", step_name.lower()).strip("-")


def _externals(steps: Sequence[Step]) -> list[str]:
    return list(dict.fromkeys(s[1:] for step in steps for s in step.inputs.values() if s.startswith("@")))


def _dependencies(steps: Sequence[Step]) -> dict[str, list[str]]:
    """Step name -> the steps it waits for: those it reads, or every earlier one if it reads the run root."""
    deps: dict[str, list[str]] = {}
    for step in steps:
        sources = [s for s in step.inputs.values() if not s.startswith("@")]
        deps[step.name] = list(deps) if f"@{RUN_ROOT}" in step.inputs.values() else list(dict.fromkeys(sources))
    return deps


def _params_value(step: Step, preset_keys: dict[str, Any]) -> str:
    """The step's parameters as the entries of a YAML flow mapping (the worker adds the braces).

    Three layers, by YAML merge keys (a mapping's own keys win over the keys it merges in, at each
    level): the step's own keys (detector, weights, its `fixed` keys) > the user's `<stage>-params`
    > the preset's (`preset_keys`: the preset's parameters of the step's stage).
    """
    layered = {k: v for k, v in step.params.items() if k in preset_keys and k not in step.fixed}
    own = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in step.params.items() if k not in layered]
    return ", ".join([f"<<: {{<<: {json.dumps(layered)}, {_wp(f'{step.stage}-params')}}}", *own])


def _weights_param(detector: str) -> str:
    return f"weights-{task_name(detector)}"


def _wp(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def _task(step: Step, preset_keys: dict[str, Any], waits_for: list[str], when: str | None) -> dict[str, Any]:
    spec = next(s for s in STAGES if s.name == step.stage)
    values = {"output": f"{_wp(RUN_ROOT)}/{step.name}", "shards": _wp(f"{spec.name}-shards"), "on-error": _wp("on-error")}
    values.update({"memory": _wp(f"{spec.name}-memory"), "retry-other-node": _wp("retry-other-node")})
    for name, source in step.inputs.items():
        values[name] = _wp(source[1:]) if source.startswith("@") else f"{_wp(RUN_ROOT)}/{source}"
    values["params"] = _params_value(step, preset_keys)
    if spec.gpu:
        values["pod-spec-patch"] = _wp("gpu-pod-spec-patch")
    task: dict[str, Any] = {"name": task_name(step.name), "templateRef": {"name": template_name(spec), "template": "sharded"}}
    if waits_for:
        task["depends"] = " && ".join(task_name(d) for d in waits_for)
    if when:
        task["when"] = when
    names = [p["name"] for p in stage_inputs(spec, "shards")]
    task["arguments"] = {"parameters": [{"name": n, "value": values[n]} for n in names if n in values]}
    return task


def _ascii_dag(steps: Sequence[Step]) -> str:
    deps, level = _dependencies(steps), {}
    for step in steps:
        level[step.name] = 1 + max((level[d] for d in deps[step.name]), default=-1)
    lines = []
    for n in range(max(level.values()) + 1):
        lines += ["      │", "      ▼"] if n else []
        names = " · ".join(s.name for s in steps if level[s.name] == n)
        lines += textwrap.wrap(names, 96, initial_indent=f"  [{n + 1}] ", subsequent_indent="      ", break_on_hyphens=False)
    lines += ["", "Edges (step ◀── what it reads; a reader of @run waits for every step above it):"]
    for step in steps:
        lines.append(f"  {step.name} ◀── {', '.join(step.inputs.values())}")
    lines += ["Each step runs `sharded`: <stage>-shards workers (--shard i/n) ──▶ saliencylab merge."]
    return "\n".join(lines)


def _render_dag_template(
    name: str,
    entrypoints: dict[str, tuple[Step, ...]],
    layers: dict[str, dict[str, dict[str, Any]]],
    intro: str,
    submit: str,
    description: str,
    extra_params: Sequence[dict[str, Any]] = (),
    optional: Sequence[str] = (),
    guarded: dict[str, set[str]] | None = None,
    externals_help: dict[str, str] | None = None,
    workers: dict[str, int] | None = None,
) -> str:
    """One pipeline declaration as a WorkflowTemplate with one DAG entrypoint per preset.

    Args:
        name: the WorkflowTemplate's name.
        entrypoints: preset -> its steps (the first is the default entrypoint; every preset's steps
            share their external inputs).
        layers: preset -> stage -> the preset's parameters: the layer a user's `<stage>-params`
            overrides (a step's other keys, and those it lists as `fixed`, are its own and win).
        intro, submit: the header's first paragraph and its submit instructions.
        description: the one-line description annotation.
        extra_params: workflow parameters after the stage parameters (e.g. weights the steps name).
        optional: external inputs that may be empty (default ""); the steps of `guarded` run only
            when all of them are given.
        guarded: preset -> names of the steps that read an optional external input (directly or not).
        externals_help: descriptions of external inputs over EXTERNAL_HELP.
        workers: stage -> default of its `<stage>-shards` (e.g. hsi-train: one worker per fold).
    """
    presets = list(entrypoints)
    steps = entrypoints[presets[0]]
    guarded = guarded or {}
    when = " && ".join(f"'{_wp(x)}' != ''" for x in optional) or None
    described = {**EXTERNAL_HELP, **(externals_help or {})}
    params = [param(x, "" if x in optional else None, described.get(x, f"external input @{x}"), "value") for x in _externals(steps)]
    if RUN_ROOT not in _externals(steps):
        params.append(param(RUN_ROOT, None, EXTERNAL_HELP[RUN_ROOT], "value"))
    params.append(param("on-error", "fail", "fail, or skip (quarantine bad items in the manifests)", "value"))
    params.append(param("retry-other-node", "false", "true: retried workers avoid the nodes they failed on", "value", ["false", "true"]))
    params.append(param("gpu-pod-spec-patch", GPU_POD_PATCH, "podSpecPatch of GPU pods: tolerations, nodeSelector of the pool", "value"))
    used = [s for s in STAGES if any(step.stage == s.name for p in presets for step in entrypoints[p])]
    used_deadlines = [workflow_deadline(s) for s in used]
    for spec in (s for s in STAGES if any(step.stage == s.name for step in steps)):
        count = (workers or {}).get(spec.name, 4 if spec.gpu and spec.name not in SEQUENTIAL_STAGES else 1)
        params.append(param(f"{spec.name}-shards", str(count), f"workers per {spec.name} step", "value"))
        params.append(param(f"{spec.name}-params", "", f"{spec.name} parameters over the preset's: key: value pairs, comma-separated", "value"))
        params.append(param(f"{spec.name}-memory", spec.memory, f"memory of each {spec.name} worker (raise it to rerun after an OOM kill)", "value"))
    params += list(extra_params)

    dags = []
    for preset in presets:
        preset_steps = entrypoints[preset]
        deps = _dependencies(preset_steps)
        guard = guarded.get(preset, set())
        tasks = [_task(s, layers[preset].get(s.stage, {}), deps[s.name], when if s.name in guard else None) for s in preset_steps]
        if len({t["name"] for t in tasks}) != len(tasks):
            raise ValueError(f"two steps of the {preset} pipeline map to the same task name: {[t['name'] for t in tasks]}")
        dags.append({"name": preset, "dag": {"tasks": tasks}})
    header = f"""{intro}

{_ascii_dag(steps)}

{submit}
Fan-out is withSequence over <stage>-shards: items are "0".."n-1", so no shard list sits in the
workflow status or nears the 256 kB parameter limit; keep steps x shards in the low hundreds for
the 1 MB workflow object.
onExit: outcome (saliencylab outcome) writes <run>/_outcome/<workflow>.json: status, failed steps,
every artifact under the run with its shards and quarantined items.
{IO_NOTE}"""
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": template_metadata(name, "pipeline", description),
        "spec": workflow_spec(name, presets[0], params, dags, deadline_s=max(WORKFLOW_DEADLINE_S, *used_deadlines), parallelism=16),
    }
    return render_yaml(header, doc)


def render_pipeline(detectors: tuple[str, ...]) -> str:
    """k8s/pipeline.yaml: the empirical study (study_steps), one entrypoint per STUDY_PRESETS entry."""
    default = inspect.signature(study_steps).parameters["preset"].default  # as `saliencylab study`
    presets = [default, *(p for p in STUDY_PRESETS if p != default)]
    weights = {d: _wp(_weights_param(d)) for d in detectors}
    steps_by_preset = {p: study_steps(detectors, p, {"cam_weights": weights}) for p in presets}
    steps = steps_by_preset[presets[0]]
    required = set(_externals(study_steps(detectors, presets[0], human_masks=False)))
    optional = [x for x in _externals(steps) if x not in required]
    guarded = {p: {s.name for s in steps_by_preset[p]} - {s.name for s in study_steps(detectors, p, human_masks=False)} for p in presets}
    weights_params = [param(_weights_param(d), "random", f"{d} weights: path, s3:// URI or torchvision:<Weights>.<NAME>", "value") for d in detectors]
    intro = f"""WorkflowTemplate saliencylab-study: the empirical study of lib/saliencylab/pipeline.py as an Argo DAG.
One entrypoint per study preset ({', '.join(presets)}; default {presets[0]}). Every task calls the
`sharded` template of its stage's WorkflowTemplate (k8s/stages/) by templateRef and writes
<run>/<step>; the steps of the human branch run only when `masks` is not empty."""
    submit = f"""Submit: kubectl -n saliencylab create -f k8s/submit/study.yaml, or
  argo submit -n saliencylab --from workflowtemplate/saliencylab-study --entrypoint {presets[-1]} \\
    -p images=s3://... -p masks=s3://... -p run=s3://saliencylab/runs/<name> \\
    -p ingest-params='split: masked'"""
    return _render_dag_template(
        "saliencylab-study",
        steps_by_preset,
        STUDY_PRESETS,
        intro,
        submit,
        "The saliency study: ingest, CAMs, DeepGaze, compare, report.",
        weights_params,
        optional,
        guarded,
    )


COCO_WEIGHTS_PARAM = "coco-weights"


def render_augmentation_pipeline() -> str:
    """k8s/pipelines/augmentation-study.yaml: the augmentation study (augmentation_steps), one entrypoint per preset."""
    presets = list(AUGMENTATION_PRESETS)
    steps_by_preset = {p: augmentation_steps(p, coco_weights=_wp(COCO_WEIGHTS_PARAM)) for p in presets}
    coco = param(COCO_WEIGHTS_PARAM, "random", "COCO Faster R-CNN R50-FPN weights (fine-tune start, erase CAM): path, s3:// URI or torchvision:<Weights>.<NAME>", "value")
    variants = ", ".join(AUGMENTATION_VARIANTS)
    intro = f"""WorkflowTemplate saliencylab-augmentation-study: the augmentation study of lib/saliencylab/pipeline.py
(augmentation_steps) as an Argo DAG, one entrypoint per preset ({', '.join(presets)}; default {presets[0]}).
The ids without a human mask are the training set, those with one the test set. Four training
sets ({variants}) are fine-tuned in parallel on GPU nodes, each fine-tune is evaluated, and its
CAM on the test set (cam reads the fine-tune as its `model` input) is compared with DeepGaze and
the human masks. Every task calls the `sharded` template of its stage's WorkflowTemplate
(k8s/stages/) by templateRef and writes <run>/<step>."""
    submit = f"""Submit: argo submit -n saliencylab --from workflowtemplate/saliencylab-augmentation-study \\
    -p images=s3://... -p masks=s3://... -p run=s3://saliencylab/runs/<name> \\
    -p {COCO_WEIGHTS_PARAM}=s3://.../fasterrcnn_resnet50_fpn_coco.pth
The four finetune tasks run at once, one worker each (finetune-shards stays 1: an epoch needs the
one before); the semaphore `gpu` of k8s/semaphores.yaml caps the GPUs in use."""
    return _render_dag_template(
        "saliencylab-augmentation-study",
        steps_by_preset,
        AUGMENTATION_PRESETS,
        intro,
        submit,
        "The augmentation study: erase, inpaint, augment, four fine-tunes, evaluate, CAMs, compare, report.",
        [coco],
        externals_help={"images": "raw images: a VOCdevkit folder with boxes", "masks": "human attention masks: their ids are the test set, the others the training set"},
    )


HSI_WEIGHTS_PARAM, CLASSIFIER_WEIGHTS_PARAM = "hsi-weights", "classifier-weights"


def render_xai_pipeline() -> str:
    """k8s/pipelines/xai-benchmark.yaml: the explanation-method benchmark (xai_benchmark_steps), one entrypoint per preset."""
    presets = list(XAI_PRESETS)
    weights = {"hsi_weights": _wp(HSI_WEIGHTS_PARAM), "classifier_weights": _wp(CLASSIFIER_WEIGHTS_PARAM)}
    steps_by_preset = {p: xai_benchmark_steps(p, **weights) for p in presets}
    extra = [
        param(HSI_WEIGHTS_PARAM, "random", "HSI model weights: hsi-train:<artifact URI>#best, a path or s3:// URI", "value"),
        param(CLASSIFIER_WEIGHTS_PARAM, "random", "ResNet weights: path, s3:// URI or torchvision:ResNet50_Weights.IMAGENET1K_V1", "value"),
    ]
    intro = f"""WorkflowTemplate saliencylab-xai-benchmark: the explanation-method benchmark of lib/saliencylab/pipeline.py
(xai_benchmark_steps) as an Argo DAG, one entrypoint per preset ({', '.join(presets)}; default {presets[0]}).
The HSI model maps a labelled image set; {', '.join(XAI_METHODS)} explain the classifier for each
label, in parallel; each method's maps are compared with the HSI maps. Every task calls the
`sharded` template of its stage's WorkflowTemplate (k8s/stages/) by templateRef and writes <run>/<step>."""
    submit = f"""Submit: argo submit -n saliencylab --from workflowtemplate/saliencylab-xai-benchmark \\
    -p images=s3://.../ingest-hsb -p run=s3://saliencylab/runs/<name> \\
    -p {HSI_WEIGHTS_PARAM}=hsi-train:s3://.../hsi-train/pretrain#best -p {CLASSIFIER_WEIGHTS_PARAM}=s3://.../resnet50.pth"""
    return _render_dag_template(
        "saliencylab-xai-benchmark",
        steps_by_preset,
        XAI_PRESETS,
        intro,
        submit,
        "The explanation-method benchmark: HSI maps, GBP, Grad-CAM and RISE, compare, report.",
        extra,
        externals_help={"images": "a labelled image artifact (ingest --format hsb, or hsi-labels output)"},
    )


CLIP_WEIGHTS_PARAM = "clip-weights"


def render_hsi_pipeline() -> str:
    """k8s/pipelines/hsi-study.yaml: the HSI study (hsi_study_steps), one entrypoint per preset.

    Every step of hsi-train runs with `hsi-train-shards` workers, by default HSI_FOLDS: the folds
    of a fine-tune train at once, one per worker (a pretrain step has one unit: one worker works).
    """
    presets = list(HSI_PRESETS)
    steps_by_preset = {p: hsi_study_steps(p, clip_weights=_wp(CLIP_WEIGHTS_PARAM)) for p in presets}
    clip = param(CLIP_WEIGHTS_PARAM, "random", "CLIP RN50 weights (open_clip state dict, e.g. converted OpenAI RN50): path or s3:// URI", "value")
    intro = f"""WorkflowTemplate saliencylab-hsi-study: the HSI study of lib/saliencylab/pipeline.py (hsi_study_steps)
as an Argo DAG, one entrypoint per preset ({', '.join(presets)}; default {presets[0]}). Pseudo labels from
SALICON + COCO, pre-training, {HSI_FOLDS}-fold fine-tuning on HSB (the folds are hsi-train's shards: with
hsi-train-shards = {HSI_FOLDS} they train at once, one GPU worker each), the held-out prediction of each
fold (one hsi-predict task per fold, in parallel) compared with the HSB maps, report. Every task calls
the `sharded` template of its stage's WorkflowTemplate (k8s/stages/) by templateRef and writes <run>/<step>."""
    submit = f"""Submit: argo submit -n saliencylab --from workflowtemplate/saliencylab-hsi-study \\
    -p salicon=s3://.../salicon -p coco=s3://.../coco -p hsb=s3://.../hsb -p run=s3://saliencylab/runs/<name> \\
    -p {CLIP_WEIGHTS_PARAM}=s3://.../RN50-openai.safetensors
The DAG fine-tunes {HSI_FOLDS} folds (the paper's; fixed by the wiring); fewer hsi-train-shards train them in turns."""
    return _render_dag_template(
        "saliencylab-hsi-study",
        steps_by_preset,
        HSI_PRESETS,
        intro,
        submit,
        "The HSI study: pseudo labels, pre-training, k-fold fine-tuning, held-out predictions, compare, report.",
        [clip],
        externals_help={
            "salicon": "SALICON folder: images/<split>/*.jpg and fixations/<split>/*.mat",
            "coco": "folder with the COCO instances JSON of those images",
            "hsb": "HSB folder with its manifest (hsb.csv or --set ingest.manifest), docs/hsi.md",
        },
        workers={"hsi-train": HSI_FOLDS},
    )


PIPELINE_FILES = {  # beside k8s/pipeline.yaml (the empirical study)
    "k8s/pipelines/augmentation-study.yaml": render_augmentation_pipeline,
    "k8s/pipelines/xai-benchmark.yaml": render_xai_pipeline,
    "k8s/pipelines/hsi-study.yaml": render_hsi_pipeline,
}
