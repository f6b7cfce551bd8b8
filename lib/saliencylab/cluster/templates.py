"""k8s/stages/<stage>.yaml: the Argo WorkflowTemplate of each stage (worker, merge, sharded fan-out)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from saliencylab.cluster.common import CPU_IMAGE, image_name, render_yaml, template_name
from saliencylab.cluster.pods import POD_SECURITY, S3_ENV, S3_SECRET, container, metric, scratch
from saliencylab.cluster.runs import WORKFLOW_DEADLINE_S, run_spec
from saliencylab.stages import StageSpec

PARAMS_FILE = "/etc/saliencylab/params.yaml"
SEMAPHORES = "saliencylab-semaphores"
MERGE_DEADLINE_S = 3600
GPU_POD_PATCH = json.dumps({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
# A merge reads part records and runs the stage's finalize (summaries; the report renders there):
# one core, no GPU, and at most this much memory whatever the workers need.
MERGE_CPU, MERGE_MEMORY_CAP_GI = "1", 4
# Retries. What is retried: Argo errors (pod deleted, node lost), evictions and node shutdowns (by
# their message), SIGTERM (143: a drain or preemption stopping the pod) and the exit codes a stage
# declares transient (StageSpec.retry_exit_codes). Never an OOM kill: the same limits would fail
# the same way (no retry on a message naming OOMKilled, whatever its exit code); rerun with a larger
# `memory` parameter instead, and the finished shards are kept. Exit 1 (a bug) and 2 (bad input,
# storage refusing after boto3's own retries) fail at once. Retries may run on any node, the failed
# one included: a one-GPU-node cluster must be able to reschedule. `retry-other-node: true` picks
# the worker variant whose retries avoid the hosts that failed (Argo's nodeAntiAffinity, a hard rule).
TRANSIENT_EXIT_CODES = (143,)
TRANSIENT_MESSAGES = "Evicted|evicted|low on resource|node shutdown|pod deleted|Pod was terminated|preempt"
OOM_MESSAGE = "OOMKilled"
RETRY_LIMIT = "3"
BACKOFF = {"duration": "30s", "factor": "2", "maxDuration": "30m"}
DURATION_BUCKETS = [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0]
RESERVED = {"output", "shard", "shards", "params", "on-error", "pod-spec-patch", "memory", "retry-other-node"}


def param(name: str, default: str | None = None, description: str = "", key: str = "default", enum: list[str] | None = None) -> dict[str, Any]:
    """An Argo parameter; `key` is where the default goes ("default", or "value" for workflow arguments)."""
    entry: dict[str, Any] = {"name": name}
    if default is not None:
        entry[key] = default
    if enum:
        entry["enum"] = enum
    if description:
        entry["description"] = description
    return entry


def stage_inputs(spec: StageSpec, fan: str, key: str = "default") -> list[dict[str, Any]]:
    """Input parameters of a stage's worker (`fan` = "shard") or sharded template (`fan` = "shards")."""
    params = [
        param(n, "" if n in spec.optional_inputs else None, f"URI of input {n!r}" + (" (may be empty)" if n in spec.optional_inputs else ""), key)
        for n in spec.inputs
    ]
    params.append(param("output", None, "output URI (local path or s3://bucket/prefix)", key))
    if fan == "shard":
        params.append(param("shard", "0/1", "this worker's slice, i/n", key))
    else:
        params.append(param("shards", "1", "workers to fan out over; each takes the shards with index % n == i", key))
    params.append(param("params", "", "stage parameters as `key: value` pairs, comma-separated, e.g. size: 256, limit: 8", key))
    params.append(param("on-error", "fail", "fail or skip (quarantine bad items)", key))
    params.append(param("memory", spec.memory, "memory request and limit of each worker; raise it to rerun after an OOM kill", key))
    if fan == "shards":
        params.append(param("retry-other-node", "false", "true: a retried worker avoids the nodes it failed on", key, ["false", "true"]))
    if spec.gpu:
        params.append(param("pod-spec-patch", GPU_POD_PATCH, "podSpecPatch placing GPU pods: tolerations, nodeSelector", key))
    if RESERVED & set(spec.inputs):
        raise ValueError(f"stage {spec.name}: input names {sorted(RESERVED & set(spec.inputs))} clash with template parameters")
    return params


def retry_expression(exit_codes: tuple[int, ...]) -> str:
    """The retryStrategy.expression: transient causes only, never an OOM kill."""
    codes = ", ".join(str(c) for c in sorted({*TRANSIENT_EXIT_CODES, *exit_codes}))
    return (
        f"!(lastRetry.message contains '{OOM_MESSAGE}') && (lastRetry.status == 'Error'"
        f" || lastRetry.message matches '{TRANSIENT_MESSAGES}' || asInt(lastRetry.exitCode) in [{codes}])"
    )


def retry_strategy(spec: StageSpec, other_node: bool = False) -> dict[str, Any]:
    strategy: dict[str, Any] = {
        "limit": RETRY_LIMIT,
        "retryPolicy": "Always",
        "expression": retry_expression(spec.retry_exit_codes),
        "backoff": BACKOFF,
    }
    if other_node:
        strategy["affinity"] = {"nodeAntiAffinity": {}}
    return strategy


def duration_metric(spec: StageSpec, kind: str) -> dict[str, Any]:
    """A Prometheus histogram of the pod's duration, by stage, template and outcome."""
    labels = {"stage": spec.name, "template": kind, "status": "{{status}}"}
    histogram = {"value": "{{duration}}", "buckets": DURATION_BUCKETS}
    return {"prometheus": [metric("saliencylab_pod_duration_seconds", "Duration of a saliencylab worker or merge pod, by stage and status", labels, histogram=histogram)]}


def _memory_gi(quantity: str) -> float | None:
    return float(quantity[:-2]) if quantity.endswith("Gi") and quantity[:-2].replace(".", "", 1).isdigit() else None


def merge_memory(spec: StageSpec) -> str:
    gi = _memory_gi(spec.memory)
    return spec.memory if gi is not None and gi <= MERGE_MEMORY_CAP_GI else f"{MERGE_MEMORY_CAP_GI}Gi"


def worker_command(spec: StageSpec) -> list[str]:
    """`saliencylab <stage>`; under torchrun, one process per GPU of the pod, when the stage has gpus > 1.

    torchrun sets RANK, LOCAL_RANK and WORLD_SIZE for each process (saliencylab.training.distributed).
    """
    if spec.gpu and spec.gpus > 1:
        return ["torchrun", "--standalone", f"--nproc-per-node={spec.gpus}", "--no-python", "saliencylab", spec.name]
    return ["saliencylab", spec.name]


def workflow_deadline(spec: StageSpec) -> int:
    """The deadline of a stage run alone: the usual one, or longer for stages with long workers."""
    return max(WORKFLOW_DEADLINE_S, spec.worker_hours * 3600 + MERGE_DEADLINE_S + 3600)


def _worker(spec: StageSpec, params: list[dict], args: list[str], other_node: bool) -> dict[str, Any]:
    volumes, mounts, ephemeral = scratch("worker", spec.gpus if spec.gpu else 0)
    main = container(image_name(spec), worker_command(spec), args, spec.cpu, "{{inputs.parameters.memory}}", mounts, ephemeral)
    if spec.gpu:
        main["resources"]["limits"]["nvidia.com/gpu"] = str(spec.gpus)
    # Argo cannot split one parameter into several argv entries, so stage parameters travel as the
    # entries of a YAML flow mapping, written to a file by a raw input artifact (no repository involved).
    raw = {"name": "params-file", "path": PARAMS_FILE, "raw": {"data": "{ {{inputs.parameters.params}} }"}}
    template: dict[str, Any] = {
        "name": "worker-other-node" if other_node else "worker",
        "inputs": {"parameters": params, "artifacts": [raw]},
        "metadata": {"labels": {"app.kubernetes.io/name": "saliencylab", "saliencylab/stage": spec.name}},
        "retryStrategy": retry_strategy(spec, other_node),
        "activeDeadlineSeconds": spec.worker_hours * 3600,
        "metrics": duration_metric(spec, "worker"),
    }
    if spec.gpu:
        template["podSpecPatch"] = "{{inputs.parameters.pod-spec-patch}}"
        template["synchronization"] = {"semaphores": [{"configMapKeyRef": {"name": SEMAPHORES, "key": "gpu"}}]}
    template.update(securityContext=POD_SECURITY, volumes=volumes, container=main)
    return template


def _merge(spec: StageSpec) -> dict[str, Any]:
    volumes, mounts, ephemeral = scratch("merge", 0)
    main = container(CPU_IMAGE, ["saliencylab", "merge"], ["--output", "{{inputs.parameters.output}}"], MERGE_CPU, merge_memory(spec), mounts, ephemeral)
    return {
        "name": "merge",
        "inputs": {"parameters": [param("output", None, "output URI of the sharded run")]},
        "metadata": {"labels": {"app.kubernetes.io/name": "saliencylab", "saliencylab/stage": spec.name}},
        "retryStrategy": retry_strategy(spec),
        "activeDeadlineSeconds": MERGE_DEADLINE_S,
        "metrics": duration_metric(spec, "merge"),
        "securityContext": POD_SECURITY,
        "volumes": volumes,
        "container": main,
    }


def _forward(params: list[dict[str, Any]], **values: str) -> dict[str, Any]:
    return {"parameters": [{"name": p["name"], "value": values.get(p["name"], f"{{{{inputs.parameters.{p['name']}}}}}")} for p in params]}


def stage_templates(spec: StageSpec) -> list[dict[str, Any]]:
    """The templates of a stage: sharded (the DAG), worker and worker-other-node (one --shard slice), merge."""
    worker_params, sharded_params = stage_inputs(spec, "shard"), stage_inputs(spec, "shards")
    args = [a for n in spec.inputs for a in ("--input", f"{n}={{{{inputs.parameters.{n}}}}}")]
    args += ["--output", "{{inputs.parameters.output}}", "--shard", "{{inputs.parameters.shard}}", "--config", PARAMS_FILE]
    args += ["--on-error", "{{inputs.parameters.on-error}}"]
    fan_out = {"withSequence": {"count": "{{inputs.parameters.shards}}"}, "arguments": _forward(worker_params, shard="{{item}}/{{inputs.parameters.shards}}")}
    sharded = {
        "name": "sharded",
        "inputs": {"parameters": sharded_params},
        "dag": {
            "tasks": [
                {"name": "worker", "template": "worker", "when": "{{inputs.parameters.retry-other-node}} == false", **fan_out},
                {"name": "worker-other-node", "template": "worker-other-node", "when": "{{inputs.parameters.retry-other-node}} == true", **fan_out},
                # a task left out by its `when` counts as done: merge waits for whichever variant ran
                {"name": "merge", "template": "merge", "depends": "worker && worker-other-node", "arguments": _forward([param("output")])},
            ]
        },
    }
    return [sharded, _worker(spec, worker_params, args, False), _worker(spec, worker_params, args, True), _merge(spec)]


def template_metadata(name: str, component: str, description: str) -> dict[str, Any]:
    """Name, labels and description annotation of a WorkflowTemplate."""
    return {
        "name": name,
        "labels": {"app.kubernetes.io/name": "saliencylab", "app.kubernetes.io/component": component},
        "annotations": {"workflows.argoproj.io/description": description, "workflows.argoproj.io/version": ">= 3.6.0"},
    }


def workflow_spec(
    name: str, entrypoint: str, parameters: list[dict[str, Any]], templates: list[dict[str, Any]], run: str = "run", deadline_s: int = WORKFLOW_DEADLINE_S, **extra: Any
) -> dict:
    """The spec of WorkflowTemplate `name` with the settings every one of ours shares; `run` names the run-root parameter.

    See saliencylab.cluster.runs.run_spec: identity without a token, deadline, GC, TTL, priority,
    disruption budget, Prometheus metrics and the exit handler that records the run's outcome.
    """
    return run_spec(name, entrypoint, parameters, templates, run, deadline_s, **extra)


IO_NOTE = f"""Data is not passed as Argo artifacts: each stage reads and writes the s3:// URIs it is given
with boto3, exactly as `make run-stage` and the local runner do (no executor size limits,
resumable shards; the Argo UI does not list the data, the _manifest.json files in the bucket do).
Credentials come from the Secret {S3_SECRET}, AWS_ENDPOINT_URL_S3 from the ConfigMap
{S3_ENV}, both through envFrom."""


def render_stage(spec: StageSpec) -> str:
    workflow_args = stage_inputs(spec, "shards", key="value")
    if spec.gpu:
        gpus = f"nvidia.com/gpu: {spec.gpus}" + (f", torchrun with {spec.gpus} processes" if spec.gpus > 1 else "")
        placement = f"On a GPU node ({gpus}; podSpecPatch from pod-spec-patch), at most as many at once\nas the `gpu` key of the ConfigMap {SEMAPHORES} allows."
    else:
        placement = "On any node (CPU only)."
    header = f"""{textwrap.fill(f"WorkflowTemplate {template_name(spec)}: {spec.summary}", 98)}
Image {image_name(spec)} (merge and exit handler: {CPU_IMAGE}); each worker runs
  {' '.join(worker_command(spec))} {' '.join(f'--input {n}=URI' for n in spec.inputs)} --output URI --shard i/n --config {PARAMS_FILE}
{placement}

  sharded:  worker (--shard 0/n) ──┐
            worker (--shard 1/n) ──┼──▶ merge (saliencylab merge --output URI)
            ...  withSequence: n ──┘
  (worker-other-node instead of worker with -p retry-other-node=true)
  onExit:   outcome (saliencylab outcome): <output>/_outcome/<workflow>.json

Submit alone:  argo submit -n saliencylab --from workflowtemplate/{template_name(spec)} \\
  {' '.join(f'-p {n}=s3://...' for n in spec.inputs if n not in spec.optional_inputs)} -p output=s3://... -p shards=4
{IO_NOTE}"""
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": template_metadata(template_name(spec), "stage", spec.summary),
        "spec": workflow_spec(template_name(spec), "sharded", workflow_args, stage_templates(spec), run="output", deadline_s=workflow_deadline(spec)),
    }
    return render_yaml(header, doc)
