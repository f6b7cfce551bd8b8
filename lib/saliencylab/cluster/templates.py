"""k8s/stages/<stage>.yaml: the Argo WorkflowTemplate of each stage (worker, merge, sharded fan-out)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from saliencylab import __version__
from saliencylab.cluster.common import UID, image_name, render_yaml, template_name
from saliencylab.stages import StageSpec

PARAMS_FILE = "/etc/saliencylab/params.yaml"
S3_SECRET, S3_ENV = "saliencylab-s3", "saliencylab-s3-env"
SEMAPHORES = "saliencylab-semaphores"
SERVICE_ACCOUNT = "saliencylab-workflow"
ARTIFACT_REPOSITORY = {"configMap": "artifact-repositories", "key": "default-v1"}
WORKER_DEADLINE_S, MERGE_DEADLINE_S, WORKFLOW_DEADLINE_S = 6 * 3600, 3600, 48 * 3600
GPU_POD_PATCH = json.dumps({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
# The root filesystem is read-only: /tmp and the model/matplotlib caches are emptyDirs; /dev/shm is
# memory-backed for DataLoader workers (it counts against the memory limit).
VOLUMES = [
    {"name": "tmp", "emptyDir": {}},
    {"name": "cache", "emptyDir": {}},
    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
]
MOUNTS = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "cache", "mountPath": "/cache"}, {"name": "dshm", "mountPath": "/dev/shm"}]
# Retry what is not our code's verdict: Argo errors (pod deleted, node lost, eviction) and kills by
# signal (preemption, OOM). Exit 1 (a bug) and 2 (bad input, storage refused after boto3's own
# retries) fail at once. Shards are idempotent, so a retried worker resumes where it stopped.
RETRY = {
    "limit": "3",
    "retryPolicy": "Always",
    "expression": 'lastRetry.status == "Error" || asInt(lastRetry.exitCode) not in [1, 2]',
    "backoff": {"duration": "30s", "factor": "2", "maxDuration": "30m"},
    "affinity": {"nodeAntiAffinity": {}},
}


def param(name: str, default: str | None = None, description: str = "", key: str = "default") -> dict[str, Any]:
    """An Argo parameter; `key` is where the default goes ("default", or "value" for workflow arguments)."""
    entry: dict[str, Any] = {"name": name}
    if default is not None:
        entry[key] = default
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
    if spec.gpu:
        params.append(param("pod-spec-patch", GPU_POD_PATCH, "podSpecPatch placing GPU pods: tolerations, nodeSelector", key))
    reserved = {"output", "shard", "shards", "params", "on-error", "pod-spec-patch"}
    if reserved & set(spec.inputs):
        raise ValueError(f"stage {spec.name}: input names {sorted(reserved & set(spec.inputs))} clash with template parameters")
    return params


def _container_template(spec: StageSpec, name: str, command: list[str], args: list[str], inputs: dict, gpu: bool, deadline: int) -> dict:
    cpu = spec.cpu if name == "worker" else "1"  # merge only reads part records and runs the stage's finalize
    if not cpu.isdigit():
        raise ValueError(f"stage {spec.name}: cpu must be a whole number of cores (it sets the thread counts), got {cpu!r}")
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}}
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = "1"
    template: dict[str, Any] = {
        "name": name,
        "inputs": inputs,
        "metadata": {"labels": {"app.kubernetes.io/name": "saliencylab", "saliencylab/stage": spec.name}},
        "retryStrategy": RETRY,
        "activeDeadlineSeconds": deadline,
    }
    if gpu:
        template["podSpecPatch"] = "{{inputs.parameters.pod-spec-patch}}"
        template["synchronization"] = {"semaphores": [{"configMapKeyRef": {"name": SEMAPHORES, "key": "gpu"}}]}
    template.update(
        securityContext=POD_SECURITY,
        volumes=VOLUMES,
        container={
            "image": f"{image_name(spec)}:{__version__}",
            "command": command,
            "args": args,
            # torch (OMP_NUM_THREADS) and numba would otherwise start one thread per node core
            "env": [{"name": "OMP_NUM_THREADS", "value": cpu}, {"name": "NUMBA_NUM_THREADS", "value": cpu}],
            "envFrom": [{"configMapRef": {"name": S3_ENV}}, {"secretRef": {"name": S3_SECRET}}],
            "resources": resources,
            "securityContext": CONTAINER_SECURITY,
            "volumeMounts": MOUNTS,
        },
    )
    return template


def _forward(params: list[dict[str, Any]], **values: str) -> dict[str, Any]:
    return {"parameters": [{"name": p["name"], "value": values.get(p["name"], f"{{{{inputs.parameters.{p['name']}}}}}")} for p in params]}


def stage_templates(spec: StageSpec) -> list[dict[str, Any]]:
    """The three templates of a stage: worker (one --shard slice), merge, sharded (the DAG of both)."""
    worker_params, sharded_params = stage_inputs(spec, "shard"), stage_inputs(spec, "shards")
    args = [a for n in spec.inputs for a in ("--input", f"{n}={{{{inputs.parameters.{n}}}}}")]
    args += ["--output", "{{inputs.parameters.output}}", "--shard", "{{inputs.parameters.shard}}", "--config", PARAMS_FILE]
    args += ["--on-error", "{{inputs.parameters.on-error}}"]
    # Argo cannot split one parameter into several argv entries, so stage parameters travel as the
    # entries of a YAML flow mapping, written to a file by a raw input artifact (no repository involved).
    raw = {"name": "params-file", "path": PARAMS_FILE, "raw": {"data": "{ {{inputs.parameters.params}} }"}}
    worker = _container_template(
        spec, "worker", ["saliencylab", spec.name], args, {"parameters": worker_params, "artifacts": [raw]}, spec.gpu, WORKER_DEADLINE_S
    )
    merge = _container_template(
        spec, "merge", ["saliencylab", "merge"], ["--output", "{{inputs.parameters.output}}"],
        {"parameters": [param("output", None, "output URI of the sharded run")]}, False, MERGE_DEADLINE_S,
    )  # fmt: skip
    sharded = {
        "name": "sharded",
        "inputs": {"parameters": sharded_params},
        "dag": {
            "tasks": [
                {
                    "name": "worker",
                    "template": "worker",
                    "withSequence": {"count": "{{inputs.parameters.shards}}"},
                    "arguments": _forward(worker_params, shard="{{item}}/{{inputs.parameters.shards}}"),
                },
                {"name": "merge", "template": "merge", "depends": "worker", "arguments": _forward([param("output")])},
            ]
        },
    }
    return [sharded, worker, merge]


def workflow_spec(entrypoint: str, parameters: list[dict[str, Any]], templates: list[dict[str, Any]], **extra: Any) -> dict:
    """A WorkflowTemplate spec with the settings every one of ours shares (account, GC, TTL, deadline)."""
    return {
        "entrypoint": entrypoint,
        "serviceAccountName": SERVICE_ACCOUNT,
        "arguments": {"parameters": parameters},
        **extra,
        "activeDeadlineSeconds": WORKFLOW_DEADLINE_S,
        "podGC": {"strategy": "OnPodSuccess"},  # failed pods stay for `kubectl logs`
        "ttlStrategy": {"secondsAfterSuccess": 86400, "secondsAfterFailure": 7 * 86400},
        "artifactRepositoryRef": ARTIFACT_REPOSITORY,  # for archived logs only; data goes through boto3
        "templates": templates,
    }


def template_metadata(name: str, component: str, description: str) -> dict[str, Any]:
    """Name, labels and description annotation of a WorkflowTemplate."""
    return {
        "name": name,
        "labels": {"app.kubernetes.io/name": "saliencylab", "app.kubernetes.io/component": component},
        "annotations": {"workflows.argoproj.io/description": description, "workflows.argoproj.io/version": ">= 3.6.0"},
    }


IO_NOTE = f"""Data is not passed as Argo artifacts: each stage reads and writes the s3:// URIs it is given
with boto3, exactly as `make run-stage` and the local runner do (no executor size limits,
resumable shards; the Argo UI does not list the data, the _manifest.json files in the bucket do).
Credentials come from the Secret {S3_SECRET}, AWS_ENDPOINT_URL_S3 from the ConfigMap
{S3_ENV}, both through envFrom."""


def render_stage(spec: StageSpec) -> str:
    workflow_args = stage_inputs(spec, "shards", key="value")
    placement = (
        f"On a GPU node (nvidia.com/gpu: 1; podSpecPatch from pod-spec-patch), at most as many at once\n"
        f"as the `gpu` key of the ConfigMap {SEMAPHORES} allows."
        if spec.gpu
        else "On any node (CPU only)."
    )
    header = f"""{textwrap.fill(f"WorkflowTemplate {template_name(spec)}: {spec.summary}", 98)}
Image {image_name(spec)}; each worker runs
  saliencylab {spec.name} {' '.join(f'--input {n}=URI' for n in spec.inputs)} --output URI --shard i/n --config {PARAMS_FILE}
{placement}

  sharded:  worker (--shard 0/n) ──┐
            worker (--shard 1/n) ──┼──▶ merge (saliencylab merge --output URI)
            ...  withSequence: n ──┘

Submit alone:  argo submit -n saliencylab --from workflowtemplate/{template_name(spec)} \\
  {' '.join(f'-p {n}=s3://...' for n in spec.inputs if n not in spec.optional_inputs)} -p output=s3://... -p shards=4
{IO_NOTE}"""
    doc = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": template_metadata(template_name(spec), "stage", spec.summary),
        "spec": workflow_spec("sharded", workflow_args, stage_templates(spec)),
    }
    return render_yaml(header, doc)
