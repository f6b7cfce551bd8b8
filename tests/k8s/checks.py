"""Offline checks of the cluster files: strict Argo schema by hera round-trip, structural checks of core
kinds, a semantic lint of Argo templates, and the Dockerfile's stage targets.

Each check returns a list of problems (empty = fine), so a test can show all of them at once and the
planted-typo tests can assert that a given problem is found.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from hera.workflows import models
from pydantic import BaseModel, ValidationError

REPO = Path(__file__).resolve().parents[2]
ARGO_MODELS: dict[str, type[BaseModel]] = {
    "Workflow": models.Workflow,
    "WorkflowTemplate": models.WorkflowTemplate,
    "ClusterWorkflowTemplate": models.ClusterWorkflowTemplate,
    "CronWorkflow": models.CronWorkflow,
}


def manifest_paths() -> list[Path]:
    return sorted((REPO / "k8s").rglob("*.yaml"))


def load_documents(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster on pipeline.yaml
    return [d for d in yaml.load_all(path.read_text(), Loader=loader) if d is not None]


# ------------------------------------------------------------------------------------ strict schema


def dropped_keys(original: Any, dumped: Any, path: str = "") -> list[str]:
    """Every key of `original` (recursively) that is missing from `dumped`: a field the model does not know."""
    if isinstance(original, dict) and isinstance(dumped, dict):
        return [
            problem
            for key, value in original.items()
            for problem in ([f"{path}.{key}".lstrip(".")] if key not in dumped else dropped_keys(value, dumped[key], f"{path}.{key}"))
        ]
    if isinstance(original, list) and isinstance(dumped, list):
        return [p for i, (a, b) in enumerate(zip(original, dumped)) for p in dropped_keys(a, b, f"{path}[{i}]")]
    return []


def roundtrip(model: type[BaseModel], data: Any, where: str = "") -> list[str]:
    """Validate `data` with a hera model and report what did not survive the dump (unknown keys)."""
    try:
        dumped = model.model_validate(data).model_dump(mode="json", by_alias=True, exclude_none=True)
    except ValidationError as e:
        return [f"{where}: invalid {model.__name__}: {e}"]
    return [f"{where}: unknown key {key}" for key in dropped_keys(data, dumped)]


def check_argo(doc: dict[str, Any], where: str) -> list[str]:
    return roundtrip(ARGO_MODELS[doc["kind"]], doc, where)


# --------------------------------------------------------------------------------------- core kinds

TOP = {"apiVersion", "kind", "metadata"}
CORE_KEYS: dict[str, set[str]] = {
    "Namespace": TOP,
    "ServiceAccount": TOP | {"automountServiceAccountToken", "imagePullSecrets"},
    "ConfigMap": TOP | {"data", "binaryData", "immutable"},
    "Secret": TOP | {"type"},  # only token Secrets that the API server fills: never data in a file
    "NetworkPolicy": TOP | {"spec"},
    "Role": TOP | {"rules"},
    "RoleBinding": TOP | {"roleRef", "subjects"},
    "Deployment": TOP | {"spec"},
    "Service": TOP | {"spec"},
    "Job": TOP | {"spec"},
    "PersistentVolumeClaim": TOP | {"spec"},
    "Kustomization": {"apiVersion", "kind", "namespace", "resources", "configurations", "images", "labels", "patches"},
}
SPEC_KEYS = {
    "Deployment": {"replicas", "selector", "strategy", "template", "revisionHistoryLimit", "minReadySeconds", "progressDeadlineSeconds"},
    "Job": {"backoffLimit", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "completions", "parallelism", "template"},
    "Service": {"type", "selector", "ports", "clusterIP", "sessionAffinity", "externalTrafficPolicy"},
    "NetworkPolicy": {"podSelector", "policyTypes", "ingress", "egress"},
}
POD_SPEC_KEYS = {
    "affinity", "automountServiceAccountToken", "containers", "dnsPolicy", "enableServiceLinks", "hostAliases",
    "imagePullSecrets", "initContainers", "nodeSelector", "priorityClassName", "restartPolicy", "schedulerName",
    "securityContext", "serviceAccountName", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
}  # fmt: skip
RULE_KEYS = {"apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"}


def _unknown(data: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}: unknown key {k}" for k in data if k not in allowed]


def check_pod_spec(pod: dict[str, Any], where: str) -> list[str]:
    problems = _unknown(pod, POD_SPEC_KEYS, where)
    problems += [p for i, c in enumerate(pod.get("containers", [])) for p in roundtrip(models.Container, c, f"{where}.containers[{i}]")]
    problems += [p for i, v in enumerate(pod.get("volumes", [])) for p in roundtrip(models.Volume, v, f"{where}.volumes[{i}]")]
    if "securityContext" in pod:
        problems += roundtrip(models.PodSecurityContext, pod["securityContext"], f"{where}.securityContext")
    return problems


def check_core(doc: dict[str, Any], where: str) -> list[str]:
    """A structural check for kinds hera has no model of: known keys, and hera's models for the parts it has."""
    kind = doc["kind"]
    if kind not in CORE_KEYS:
        return [f"{where}: no check for kind {kind}"]
    problems = _unknown(doc, CORE_KEYS[kind], where)
    if kind == "Kustomization":
        return problems + [p for i, e in enumerate(doc.get("images", [])) for p in _unknown(e, {"name", "newName", "newTag", "digest"}, f"{where}.images[{i}]")]
    problems += roundtrip(models.ObjectMeta, doc.get("metadata", {}), f"{where}.metadata")
    if not doc.get("metadata", {}).get("name"):
        problems.append(f"{where}: metadata.name is missing")
    spec = doc.get("spec", {})
    if kind == "PersistentVolumeClaim":
        problems += roundtrip(models.PersistentVolumeClaimSpec, spec, f"{where}.spec")
    if kind in SPEC_KEYS:
        problems += _unknown(spec, SPEC_KEYS[kind], f"{where}.spec")
    if kind in ("Deployment", "Job"):
        template = spec.get("template", {})
        problems += _unknown(template, {"metadata", "spec"}, f"{where}.spec.template")
        problems += check_pod_spec(template.get("spec", {}), f"{where}.spec.template.spec")
    if kind == "NetworkPolicy":
        problems += roundtrip(models.LabelSelector, spec.get("podSelector", {}), f"{where}.spec.podSelector")
        for i, rule in enumerate(spec.get("ingress", [])):
            problems += _unknown(rule, {"from", "ports"}, f"{where}.spec.ingress[{i}]")
            for j, peer in enumerate(rule.get("from", [])):
                problems += _unknown(peer, {"podSelector", "namespaceSelector", "ipBlock"}, f"{where}.spec.ingress[{i}].from[{j}]")
                problems += [p for k in ("podSelector", "namespaceSelector") if k in peer for p in roundtrip(models.LabelSelector, peer[k], f"{where}.ingress[{i}].from[{j}].{k}")]
            problems += [p for j, port in enumerate(rule.get("ports", [])) for p in _unknown(port, {"protocol", "port", "endPort"}, f"{where}.ingress[{i}].ports[{j}]")]
    if kind == "Service":
        problems += [p for i, port in enumerate(spec.get("ports", [])) for p in roundtrip(models.ServicePort, port, f"{where}.spec.ports[{i}]")]
    if kind == "Role":
        problems += [p for i, rule in enumerate(doc.get("rules", [])) for p in _unknown(rule, RULE_KEYS, f"{where}.rules[{i}]")]
    if kind == "ConfigMap":
        problems += [f"{where}: data.{k} is not a string" for k, v in doc.get("data", {}).items() if not isinstance(v, str)]
    return problems


def check_document(doc: dict[str, Any], where: str) -> list[str]:
    if "kind" not in doc or "apiVersion" not in doc:
        return [f"{where}: not a Kubernetes object (no apiVersion/kind)"]
    return check_argo(doc, where) if doc["kind"] in ARGO_MODELS else check_core(doc, where)


# ------------------------------------------------------------------------------------ semantic lint

REF = re.compile(r"\{\{\s*(inputs\.parameters|inputs\.artifacts|workflow\.parameters|tasks)\.([A-Za-z0-9_-]+)")
DEPENDS_NAME = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:\.[A-Za-z]+)?")


def _names(entries: list[dict[str, Any]] | None) -> set[str]:
    return {e["name"] for e in entries or []}


def _required(params: list[dict[str, Any]] | None) -> set[str]:
    return {p["name"] for p in params or [] if "default" not in p and "value" not in p}


def lint_argo(docs: list[dict[str, Any]]) -> list[str]:
    """Cross-reference checks of Workflows and WorkflowTemplates that no schema can do."""
    library = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "WorkflowTemplate"}
    problems: list[str] = []
    for doc in (d for d in docs if d.get("kind") in ("Workflow", "WorkflowTemplate")):
        spec, where = doc["spec"], f"{doc['kind']}/{doc['metadata'].get('name') or doc['metadata'].get('generateName')}"
        args = spec.get("arguments", {}).get("parameters", [])
        templates = {t["name"]: t for t in spec.get("templates", [])}
        declared, base_spec = _names(args), {}
        if "workflowTemplateRef" in spec:
            base = library.get(spec["workflowTemplateRef"]["name"])
            if base is None:
                problems.append(f"{where}: workflowTemplateRef {spec['workflowTemplateRef']['name']!r} does not exist")
                continue
            base_args = base["spec"].get("arguments", {}).get("parameters", [])
            problems += [f"{where}: passes unknown parameter {n!r}" for n in sorted(declared - _names(base_args))]
            problems += [f"{where}: does not pass required parameter {n!r}" for n in sorted(_required(base_args) - declared)]
            base_spec = base["spec"]
            templates, declared = {t["name"]: t for t in base_spec["templates"]}, declared | _names(base_args)
        for key in ("entrypoint", "onExit"):
            name = spec.get(key) or base_spec.get(key)
            if name and name not in templates:
                problems.append(f"{where}: {key} {name!r} is not a template")
        entry = templates.get(spec.get("entrypoint") or base_spec.get("entrypoint", ""), {})
        problems += [f"{where}: entrypoint input {n!r} has no workflow argument" for n in sorted(_required(entry.get("inputs", {}).get("parameters")) - declared)]
        if "workflowTemplateRef" not in spec:
            problems += [p for t in templates.values() for p in _lint_template(t, templates, library, declared, f"{where}/{t['name']}")]
    return problems


def _lint_template(template: dict, local: dict, library: dict, workflow_params: set[str], where: str) -> list[str]:
    inputs = template.get("inputs", {})
    params, artifacts = _names(inputs.get("parameters")), _names(inputs.get("artifacts"))
    tasks = template.get("dag", {}).get("tasks", [])
    task_names = {t["name"] for t in tasks}
    problems = []
    for scope, name in REF.findall(json.dumps(template)):
        known = {"inputs.parameters": params, "inputs.artifacts": artifacts, "workflow.parameters": workflow_params, "tasks": task_names}[scope]
        if name not in known:
            problems.append(f"{where}: {{{{{scope}.{name}}}}} is not declared")
    for task in tasks:
        at = f"{where}/{task['name']}"
        if "templateRef" in task:
            ref = task["templateRef"]
            callee = next((t for t in library.get(ref["name"], {}).get("spec", {}).get("templates", []) if t["name"] == ref["template"]), None)
        else:
            callee = local.get(task.get("template", ""))
        if callee is None:
            problems.append(f"{at}: calls unknown template {task.get('templateRef') or task.get('template')}")
            continue
        for dep in DEPENDS_NAME.findall(task.get("depends", "")):
            if dep not in task_names or dep == task["name"]:
                problems.append(f"{at}: depends on unknown task {dep!r}")
        if "{{item" in json.dumps(task) and not any(k in task for k in ("withItems", "withParam", "withSequence")):
            problems.append(f"{at}: uses {{{{item}}}} without withItems/withParam/withSequence")
        passed = _names(task.get("arguments", {}).get("parameters"))
        wanted = callee.get("inputs", {}).get("parameters", [])
        problems += [f"{at}: does not pass required input {n!r}" for n in sorted(_required(wanted) - passed)]
        problems += [f"{at}: passes unknown input {n!r}" for n in sorted(passed - _names(wanted))]
    return problems


# ------------------------------------------------------------------------------------------- images


def dockerfile_targets(text: str) -> list[str]:
    """The names of the `FROM image AS name` stages of a Dockerfile, in order."""
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)


def dockerfile_bases(text: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
