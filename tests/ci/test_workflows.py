"""The GitHub workflows in .github/workflows/, validated offline, and the e2e run's helpers.

- Schema: every workflow passes the GitHub-workflow JSON schema vendored in check-jsonschema
  (`--builtin-schema vendor.github-workflows`, no network); a planted typo fails it.
- Security: `zizmor --offline` reports nothing above low; a planted unpinned action and template
  injection are reported.
- Registry: the image matrices list exactly the bake targets, and every stage's image is built.
- e2e: the overlay of tests/ci/e2e_study.py keeps every object `kubectl apply -k k8s/` installs and
  changes only image, CPU request and GPU limit; the submitted template, entrypoint and parameters
  exist in the installed templates; the run check passes on equal runs (local and S3) and names
  each planted difference.

With CI=true a missing tool (check-jsonschema, zizmor, kubectl: test extras) fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from saliencylab.manifests import Manifest, ShardRecord, QuarantineRecord
from saliencylab.stages import STAGES
from saliencylab.storage import open_storage

from jobs.cli import app
from tests.ci import e2e_study
from tests.k8s.checks import REPO
from tests.k8s.test_manifests import load_bake
from tests.k8s.test_policies import kustomize

WORKFLOWS = REPO / ".github" / "workflows"
E2E_SCRIPT = REPO / ".github" / "scripts" / "e2e-kind.sh"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def tool(name: str) -> str:
    """The executable `name`, next to this interpreter (the venv's bin) or on PATH."""
    found = shutil.which(name, path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {name} (a test extra) is missing")
        pytest.skip(f"{name} is not installed")
    return found


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def load_workflow(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); nothing here needs it
    return yaml.safe_load((WORKFLOWS / name).read_text())


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess:
    command = [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def zizmor(*paths: Path) -> list[dict]:
    command = [tool("zizmor"), "--offline", "--no-config", "--min-severity", "medium", "--format", "json", *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def test_the_three_workflows_exist():
    assert {p.name for p in workflow_files()} >= {"e2e.yml", "images.yml", "test.yml"}


def test_workflows_pass_the_vendored_github_schema(tmp_path):
    result = check_jsonschema(*workflow_files())
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "test.yml"
    broken.write_text((WORKFLOWS / "test.yml").read_text().replace("runs-on:", "run-on:"))
    assert check_jsonschema(broken).returncode != 0


def test_zizmor_reports_nothing_above_low(tmp_path):
    findings = zizmor(*workflow_files())
    assert findings == [], [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in findings]
    planted = tmp_path / ".github" / "workflows" / "planted.yml"
    planted.parent.mkdir(parents=True)
    planted.write_text(
        "on: issues\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    permissions: {}\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - run: echo '${{ github.event.issue.title }}'\n"
    )
    idents = {f["ident"] for f in zizmor(planted)}
    assert {"unpinned-uses", "template-injection"} <= idents


def uses_lines() -> list[tuple[str, str]]:
    return [(p.name, line.strip()) for p in workflow_files() for line in p.read_text().splitlines() if line.strip().startswith(("uses:", "- uses:"))]


def test_every_action_is_pinned_by_commit_with_its_version():
    lines = uses_lines()
    assert lines
    for name, line in lines:
        ref, _, comment = line.removeprefix("- ").removeprefix("uses:").strip().partition("#")
        assert PINNED.match(ref.strip()), f"{name}: {line} is not pinned by a full commit SHA"
        assert re.fullmatch(r"\s*v\d+\.\d+\.\d+", comment), f"{name}: {line} lacks its `# vX.Y.Z` comment"


def test_permissions_are_empty_at_the_top_and_least_per_job():
    for path in workflow_files():
        workflow = load_workflow(path.name)
        assert workflow["permissions"] == {}, path.name
        assert workflow["concurrency"]["cancel-in-progress"] is True, path.name
        for job_name, job in workflow["jobs"].items():
            granted = {k for k, v in job["permissions"].items() if v == "write"}
            pushes = any(step.get("with", {}).get("push") for step in job["steps"])
            attests = any("attest-build-provenance" in step.get("uses", "") for step in job["steps"])
            assert ("packages" in granted) == pushes, f"{path.name}/{job_name}: packages: write only where images are pushed"
            assert ("id-token" in granted) == attests, f"{path.name}/{job_name}: id-token: write only for attestations"


def bake_targets() -> list[str]:
    bake = load_bake()
    (group,) = [body for block in bake["group"] for name, body in block.items() if name == "default"]
    return list(group["targets"])


def test_image_matrices_follow_the_bake_targets_and_every_stage_image_is_built():
    images = load_workflow("images.yml")
    targets = bake_targets()
    for job in ("build", "publish"):
        assert images["jobs"][job]["strategy"]["matrix"]["target"] == targets, f"images.yml {job}: bake targets {targets}"
    built = {f"saliencylab-{t}" for t in targets}
    for spec in STAGES:  # the committed templates equal a fresh render (tests/k8s/test_render.py)
        text = (REPO / "k8s" / "stages" / f"{spec.name}.yaml").read_text()
        used = {ref.rsplit("/", 1)[-1].split(":")[0] for ref in re.findall(r"image: (\S+)", text)}
        assert used and used <= built, f"stage {spec.name} runs {sorted(used - built)}, which images.yml does not build"
    e2e = load_workflow("e2e.yml")["jobs"]["kind"]
    (bake,) = [s for s in e2e["steps"] if "bake-action" in s.get("uses", "")]
    assert bake["with"]["targets"] in targets and e2e["env"]["IMAGE"].split("/")[-1].startswith(f"saliencylab-{bake['with']['targets']}:")


def test_every_script_a_workflow_runs_exists_and_is_executable():
    scripts = {m for p in workflow_files() for m in re.findall(r"(\.github/scripts/[\w.-]+)", p.read_text())}
    assert {".github/scripts/smoke-image.sh", ".github/scripts/e2e-kind.sh", ".github/scripts/install-e2e-tools.sh"} <= scripts
    for script in sorted(scripts):
        path = REPO / script
        assert path.is_file() and os.access(path, os.X_OK), f"{script}: missing or not executable"
        assert path.read_text().startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in path.read_text(), script


def test_test_workflow_runs_the_readme_command():
    steps = load_workflow("test.yml")["jobs"]["test"]["steps"]
    assert steps[-1]["run"] == ".ci/run"
    assert "make test" in (REPO / ".ci" / "run").read_text() and "make test" in (REPO / "README.md").read_text()


def installed() -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in kustomize(REPO / "k8s")}


def strip_e2e_fields(document: dict) -> dict:
    """`document` without the fields the e2e overlay sets: images, CPU requests, GPU resources."""
    text = json.dumps(document)
    document = json.loads(text)
    for template in document.get("spec", {}).get("templates", ()) if document["kind"] == "WorkflowTemplate" else ():
        for _, container in e2e_study.containers(template):
            container.pop("image", None)
            for part in ("requests", "limits"):
                container.get("resources", {}).get(part, {}).pop("cpu", None)
                container.get("resources", {}).get(part, {}).pop(e2e_study.GPU_RESOURCE, None)
    return document


def test_e2e_overlay_installs_what_kubectl_apply_k_installs_on_the_cpu_image(tmp_path):
    image = "localhost:5000/saliencylab-cpu:" + "0" * 40
    e2e_study.write_overlay(tmp_path / "overlay", image)
    base, overlay = installed(), {(d["kind"], d["metadata"]["name"]): d for d in kustomize(tmp_path / "overlay")}
    assert overlay.keys() == base.keys()
    assert any(kind == "WorkflowTemplate" for kind, _ in base)
    for key, document in overlay.items():
        assert strip_e2e_fields(document) == strip_e2e_fields(base[key]), key
        if key[0] != "WorkflowTemplate":
            assert document == base[key], key
            continue
        for template in document["spec"]["templates"]:
            for _, container in e2e_study.containers(template):
                resources = container.get("resources", {})
                assert container["image"] == image, (key, template["name"])
                assert resources.get("requests", {}).get("cpu") in (None, e2e_study.E2E_CPU), (key, template["name"])
                assert e2e_study.GPU_RESOURCE not in resources.get("limits", {}), (key, template["name"])


def submitted() -> tuple[str, str, set[str]]:
    """The template, entrypoint and parameter names e2e-kind.sh passes to `argo submit`."""
    text = E2E_SCRIPT.read_text().replace("\\\n", " ")
    (command,) = [line for line in text.splitlines() if line.strip().startswith("argo submit")]
    template = re.search(r"--from workflowtemplate/(\S+)", command).group(1)
    entrypoint = re.search(r"--entrypoint (\S+)", command).group(1)
    return template, entrypoint, set(re.findall(r"-p ([\w-]+)=", command))


def test_e2e_submits_an_installed_template_with_its_declared_parameters():
    template, entrypoint, parameters = submitted()
    assert {"images", "masks", "run"} <= parameters
    documents = installed()
    assert ("WorkflowTemplate", template) in documents, f"e2e-kind.sh submits {template}, which `kubectl apply -k k8s/` does not install"
    spec = documents["WorkflowTemplate", template]["spec"]
    assert entrypoint in {t["name"] for t in spec["templates"]}
    declared = {p["name"] for p in spec["arguments"]["parameters"]}
    assert parameters <= declared, f"undeclared parameters {sorted(parameters - declared)}"
    workflow = load_workflow("e2e.yml")
    assert any(step.get("run") == ".github/scripts/e2e-kind.sh" for step in workflow["jobs"]["kind"]["steps"])


# ---- the run check ------------------------------------------------------------------------------


def write_artifact(root: Path, folder: str, stage: str, shards: list[tuple[str, list[str]]], **extra) -> None:
    records = tuple(ShardRecord(name, len(keys), "0" * 64, 1, tuple(keys)) for name, keys in shards)
    manifest = Manifest(stage, "1", "0.1.0+test", "run", {"seed": 0}, {}, records, **extra)
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "_manifest.json").write_bytes(manifest.to_json())


def write_run(root: Path) -> Path:
    write_artifact(root, "ingest", "ingest", [("shard-000000.tar", ["a", "b"]), ("shard-000001.tar", ["c"])])
    write_artifact(root, "cam/ssdlite", "cam", [("shard-000000.tar", ["a", "b"]), ("shard-000001.tar", ["c"])])
    write_artifact(root, "report", "report", [])
    for name in e2e_study.REPORT_FILES:
        (root / "report" / name).write_text("report")
    return root


def test_the_run_check_accepts_an_equal_run_and_names_each_difference(tmp_path):
    expected = open_storage(write_run(tmp_path / "local"))
    assert e2e_study.compare_runs(expected, open_storage(write_run(tmp_path / "same"))) == []

    missing = write_run(tmp_path / "missing")
    (missing / "cam/ssdlite/_manifest.json").unlink()
    (missing / "report/report.html").unlink()
    assert e2e_study.compare_runs(expected, open_storage(missing)) == [
        "cam/ssdlite: no _manifest.json in the cluster run",
        "report/report.html: missing",
    ]
    other = write_run(tmp_path / "other")
    write_artifact(other, "ingest", "ingest", [("shard-000000.tar", ["a", "b", "c"])])
    quarantine = (QuarantineRecord("c", "x.jpg", "bad", "shard-000001.tar"),)
    write_artifact(other, "cam/ssdlite", "cam", [("shard-000000.tar", ["a", "b"]), ("shard-000001.tar", ["c"])], quarantine=quarantine)
    problems = e2e_study.compare_runs(expected, open_storage(other))
    assert len(problems) == 2 and problems[0].startswith("cam/ssdlite: 1 quarantined") and problems[1].startswith("ingest: 1 shards with 3")
    nothing = [f"{folder}: no _manifest.json in the cluster run" for folder in ("cam/ssdlite", "ingest", "report")]
    assert e2e_study.compare_runs(expected, open_storage(tmp_path / "empty")) == nothing + ["report/report.md: missing", "report/report.html: missing"]


def test_the_outcome_check_wants_the_exit_handlers_success(tmp_path):
    run = open_storage(write_run(tmp_path / "run"))
    assert e2e_study.check_outcome(run, "wf") == [f"{run.uri}/_outcome/wf.json: missing (the exit handler did not run or could not write)"]
    exit_handler = ["outcome", "--run", run.uri, "--workflow", "wf", "--duration", "12"]
    result = CliRunner().invoke(app, [*exit_handler, "--status", "Succeeded", "--failures", "{{workflow.failures}}"])
    assert result.exit_code == 0, result.output
    assert e2e_study.check_outcome(run, "wf") == []
    failed = [{"displayName": "cam-ssdlite", "templateName": "worker", "phase": "Failed", "message": "OOMKilled", "podName": "p"}]
    result = CliRunner().invoke(app, [*exit_handler, "--status", "Failed", "--failures", json.dumps(failed)])
    assert result.exit_code == 0, result.output
    problems = e2e_study.check_outcome(run, "wf")
    assert problems[0] == "outcome status 'Failed', expected 'Succeeded'" and "cam-ssdlite" in problems[1] and len(problems) == 2


def test_upload_and_check_through_s3(tmp_path, s3_env):
    local = write_run(tmp_path / "local")
    prefix = f"s3://{s3_env.bucket}/e2e/run"
    assert e2e_study.upload(local, prefix) == 5
    assert e2e_study.compare_runs(open_storage(local), open_storage(prefix)) == []
    copied = e2e_study.copy_reports(open_storage(prefix), open_storage(local), tmp_path / "report")
    assert sorted(p.relative_to(tmp_path / "report").as_posix() for p in copied) == ["report/report.html", "report/report.md"]
    assert e2e_study.main(["check", "--expected", str(local), "--run", prefix, "--workflow", "wf", "--report-to", str(tmp_path / "r")]) == 1
