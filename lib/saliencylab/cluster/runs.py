"""The workflow-level settings every saliencylab WorkflowTemplate shares, and its exit handler.

A run's pods carry no Kubernetes token (automountServiceAccountToken: false); only Argo's
executor containers get one, of the ServiceAccount saliencylab-executor, whose Role allows task
results and nothing else. Each run has a deadline, pod GC and a TTL, a priority class and a
disruption budget (both parameters), Prometheus metrics, and an exit handler (`outcome`) that
writes the run's outcome next to it: <run>/_outcome/<workflow name>.json.
"""

from __future__ import annotations

from typing import Any

from saliencylab.cluster.common import CPU_IMAGE
from saliencylab.cluster.pods import POD_SECURITY, container, metric, scratch

SERVICE_ACCOUNT = "saliencylab-workflow"  # the pods' identity: no Role, no token mounted
EXECUTOR_SERVICE_ACCOUNT = "saliencylab-executor"  # Argo's init/wait containers: workflowtaskresults only
ARTIFACT_REPOSITORY = {"configMap": "artifact-repositories", "key": "default-v1"}
WORKFLOW_DEADLINE_S, EXIT_DEADLINE_S = 48 * 3600, 900
OUTCOME_TEMPLATE, OUTCOME_DIR = "outcome", "/tmp/outcome"
OUTCOME_NUMBERS = ("artifacts", "shards", "samples", "quarantined", "failed-steps")  # files the command writes there


def run_parameters() -> list[dict[str, Any]]:
    """The workflow arguments of every run: pod priority and the voluntary-disruption budget."""
    return [
        {
            "name": "priority-class",
            "value": "",
            "description": "PriorityClass of every pod of the run (empty: the cluster's default)",
        },
        {
            "name": "disruption-budget",
            "value": "0%",
            "description": "minAvailable of the run's PodDisruptionBudget, a percentage: 100% keeps drains from evicting its pods",
        },
    ]


def _outcome_template(name: str, run: str) -> dict[str, Any]:
    volumes, mounts, ephemeral = scratch("exit", 0)
    args = [
        "--run", f"{{{{workflow.parameters.{run}}}}}",
        "--workflow", "{{workflow.name}}",
        "--status", "{{workflow.status}}",
        "--failures", "{{workflow.failures}}",
        "--duration", "{{workflow.duration}}",
        "--numbers-dir", OUTCOME_DIR,
    ]  # fmt: skip
    numbers = [{"name": n, "valueFrom": {"path": f"{OUTCOME_DIR}/{n}"}} for n in OUTCOME_NUMBERS]
    gauges = [
        metric(
            f"saliencylab_run_{n.replace('-', '_')}",
            f"{n.replace('-', ' ').capitalize()} of the last finished saliencylab run, by template",
            {"workflow_template": name},
            gauge={"value": f"{{{{outputs.parameters.{n}}}}}", "realtime": False},
        )
        for n in OUTCOME_NUMBERS
    ]
    return {
        "name": OUTCOME_TEMPLATE,
        "metadata": {"labels": {"app.kubernetes.io/name": "saliencylab", "saliencylab/stage": "outcome"}},
        "outputs": {"parameters": numbers},
        "metrics": {"prometheus": gauges},
        # only Argo errors: an outcome that cannot be written is a storage problem worth seeing
        "retryStrategy": {"limit": "2", "retryPolicy": "OnError", "backoff": {"duration": "10s", "factor": "2"}},
        "activeDeadlineSeconds": EXIT_DEADLINE_S,
        "securityContext": POD_SECURITY,
        "volumes": volumes,
        "container": container(CPU_IMAGE, ["saliencylab", "outcome"], args, "1", "1Gi", mounts, ephemeral),
    }


def _workflow_metrics(name: str) -> dict[str, Any]:
    labels = {"workflow_template": name, "status": "{{workflow.status}}"}
    duration = {"value": "{{workflow.duration}}", "realtime": False}
    return {
        "prometheus": [
            metric("saliencylab_run_duration_seconds", "Duration of the last finished saliencylab run, by template and status", labels, gauge=duration),
            metric("saliencylab_runs_total", "Finished saliencylab runs, by template and status", labels, counter={"value": "1"}),
        ]
    }


def run_spec(
    name: str, entrypoint: str, parameters: list[dict[str, Any]], templates: list[dict[str, Any]], run: str, deadline_s: int, **extra: Any
) -> dict[str, Any]:
    """A WorkflowTemplate spec: `templates` plus the exit handler, with the shared run settings.

    Args:
        name: the WorkflowTemplate's name (the metrics' workflow_template label).
        entrypoint: the default entrypoint template.
        parameters: the workflow arguments; the run parameters (run_parameters) are appended.
        templates: the templates; the exit handler `outcome` is appended.
        run: the argument holding the run root, where the outcome is written (must be in `parameters`).
        deadline_s: the run's activeDeadlineSeconds (the exit handler still runs after it).
        extra: further spec fields (e.g. parallelism), placed before the shared ones.
    """
    if run not in {p["name"] for p in parameters}:
        raise ValueError(f"run parameter {run!r} is not among the workflow arguments")
    return {
        "entrypoint": entrypoint,
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "executor": {"serviceAccountName": EXECUTOR_SERVICE_ACCOUNT},
        "arguments": {"parameters": [*parameters, *run_parameters()]},
        **extra,
        "activeDeadlineSeconds": deadline_s,
        "podGC": {"strategy": "OnPodSuccess"},  # failed pods stay for `kubectl logs`
        "ttlStrategy": {"secondsAfterSuccess": 86400, "secondsAfterFailure": 7 * 86400},
        "podPriorityClassName": "{{workflow.parameters.priority-class}}",
        "podDisruptionBudget": {"minAvailable": "{{workflow.parameters.disruption-budget}}"},
        "onExit": OUTCOME_TEMPLATE,
        "metrics": _workflow_metrics(name),
        "artifactRepositoryRef": ARTIFACT_REPOSITORY,  # for archived logs only; data goes through boto3
        "templates": [*templates, _outcome_template(name, run)],
    }
