"""The kind end-to-end run of .github/workflows/e2e.yml: its kustomize overlay, its data upload and its check.

Run by .github/scripts/e2e-kind.sh inside the CPU image (which holds the package, boto3 and
PyYAML), with this checkout mounted read-only; tests/ci/test_workflows.py runs the same functions
offline. Three subcommands:

    overlay --image REF --out DIR [--base PATH]
                                    a kustomize overlay of k8s/ for a one-node CPU cluster: every
                                    container of every WorkflowTemplate runs REF (the CPU image
                                    loaded with `kind load`), requests E2E_CPU cores and no GPU
    upload SRC DEST                 copy a local folder (the demo data) to an s3:// prefix
    check --expected DIR --run URI --workflow NAME --report-to DIR
                                    compare the cluster run at URI with the same study run locally
                                    (`saliencylab demo`) in DIR: every artifact present, same
                                    stage, parameters, shards, samples and keys; nothing quarantined;
                                    the report written; the exit handler's outcome Succeeded

The overlay keeps every object of `kubectl apply -k k8s/` and changes only those three fields:
the templates that run are the templates the cluster delivery installs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from saliencylab.manifests import MANIFEST_KEY, Manifest
from saliencylab.outcome import OUTCOME_PREFIX
from saliencylab.storage import Storage, open_storage

REPO = Path(__file__).resolve().parents[2]
E2E_CPU = "100m"  # per container: a 4-core runner holds the ~16 pods the study runs at once
GPU_RESOURCE = "nvidia.com/gpu"  # kind has no GPU: the GPU stages run on CPU in the CPU image
CONTAINER_LISTS = ("initContainers", "sidecars")
REPORT_FILES = ("report.md", "report.html")


def containers(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON-pointer suffix, container) for every container an Argo template runs."""
    for key in ("container", "script"):
        if isinstance(template.get(key), dict):
            yield key, template[key]
    for key in CONTAINER_LISTS:
        for i, container in enumerate(template.get(key) or ()):
            yield f"{key}/{i}", container


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def workflow_template_files(k8s: Path) -> list[Path]:
    """The files of k8s/kustomization.yaml's resources that hold WorkflowTemplates, in its order."""
    resources = yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"]
    files = [k8s / r for r in resources if r.endswith((".yaml", ".yml"))]
    return [f for f in files if any(d and d.get("kind") == "WorkflowTemplate" for d in yaml.safe_load_all(f.read_text()))]


def template_patches(document: dict[str, Any], image: str, cpu: str = E2E_CPU) -> list[dict[str, Any]]:
    """JSON-patch operations that make one WorkflowTemplate run `image` with `cpu` and no GPU.

    Args:
        document: the WorkflowTemplate as parsed from its file (not modified).
        image: the image reference every container gets.
        cpu: the CPU request every container gets (Kubernetes quantity).
    """
    ops: list[dict[str, Any]] = []
    for i, template in enumerate(document["spec"].get("templates", ())):
        for suffix, container in containers(template):
            base = f"/spec/templates/{i}/{suffix}"
            ops.append({"op": "replace" if "image" in container else "add", "path": f"{base}/image", "value": image})
            resources = container.get("resources") or {}
            if "requests" in resources and "cpu" in resources["requests"]:
                ops.append({"op": "replace", "path": f"{base}/resources/requests/cpu", "value": cpu})
            if GPU_RESOURCE in (resources.get("limits") or {}):
                ops.append({"op": "remove", "path": f"{base}/resources/limits/{_pointer(GPU_RESOURCE)}"})
            if GPU_RESOURCE in (resources.get("requests") or {}):
                ops.append({"op": "remove", "path": f"{base}/resources/requests/{_pointer(GPU_RESOURCE)}"})
    return ops


def write_overlay(out: Path, image: str, k8s: Path = REPO / "k8s", cpu: str = E2E_CPU, base: str | None = None) -> Path:
    """Write `out`/kustomization.yaml: k8s/ with every WorkflowTemplate patched by template_patches.

    Args:
        base: how the overlay names k8s/ (kustomize resolves it from `out`); default the relative
            path from `out` to `k8s`. Give it when the overlay is applied where k8s/ lies elsewhere
            (e2e-kind.sh writes it in a container and applies it on the host).
    """
    if not image or any(c.isspace() for c in image):
        raise ValueError(f"--image {image!r} must be an image reference such as localhost:5000/saliencylab-cpu:<commit>")
    patches = []
    for path in workflow_template_files(k8s):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "WorkflowTemplate":
                target = {"group": "argoproj.io", "kind": "WorkflowTemplate", "name": document["metadata"]["name"]}
                patches.append({"target": target, "patch": json.dumps(template_patches(document, image, cpu))})
    out.mkdir(parents=True, exist_ok=True)
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base or os.path.relpath(k8s.resolve(), out.resolve())],
        "patches": patches,
    }
    header = "# Written by tests/ci/e2e_study.py for the kind e2e run (.github/workflows/e2e.yml); not committed.\n"
    (out / "kustomization.yaml").write_text(header + yaml.safe_dump(overlay, sort_keys=False))
    return out / "kustomization.yaml"


def upload(source: Path, dest: str) -> int:
    """Copy every file under `source` to the storage at `dest` (same relative keys); return the count."""
    storage = open_storage(dest)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{source} holds no file to upload; run `saliencylab demo` first")
    for path in files:
        storage.write_bytes(path.relative_to(source).as_posix(), path.read_bytes())
    return len(files)


def manifests(storage: Storage) -> dict[str, Manifest]:
    """{artifact folder relative to the run root: its manifest} for every artifact of a run."""
    found = {}
    for key in storage.list():
        if key == MANIFEST_KEY or key.endswith("/" + MANIFEST_KEY):
            folder = key[: -len(MANIFEST_KEY)].rstrip("/")
            found[folder] = Manifest.from_json(storage.read_bytes(key), f"{storage.uri}/{key}")
    return found


def compare_runs(expected: Storage, actual: Storage) -> list[str]:
    """Every way the run at `actual` differs from the same study at `expected`; [] when they agree.

    Compared per artifact: presence, stage, parameters, shard names, and samples and keys per shard
    (not bytes: CPU float results may differ with the thread count). Also: no quarantined item,
    and the report's files present.
    """
    want, got = manifests(expected), manifests(actual)
    if not want:
        return [f"{expected.uri} holds no artifact: the local reference run did not finish"]
    problems = [f"{folder or '.'}: no {MANIFEST_KEY} in the cluster run" for folder in sorted(set(want) - set(got))]
    problems += [f"{folder or '.'}: an artifact the local run does not have" for folder in sorted(set(got) - set(want))]
    for folder in sorted(set(want) & set(got)):
        a, b = want[folder], got[folder]
        if (a.stage, a.params) != (b.stage, b.params):
            problems.append(f"{folder}: stage/params {b.stage} {b.params} differ from the local run's {a.stage} {a.params}")
        shards_a = [(s.name, s.samples, s.keys) for s in a.shards]
        shards_b = [(s.name, s.samples, s.keys) for s in b.shards]
        if shards_a != shards_b:
            problems.append(
                f"{folder}: {len(b.shards)} shards with {b.num_samples} samples, expected {len(a.shards)} with {a.num_samples}"
                " (or the same counts with other names or keys)"
            )
        if b.quarantine:
            problems.append(f"{folder}: {len(b.quarantine)} quarantined items, first {b.quarantine[0]}")
    reports = [f for f, m in want.items() if m.stage == "report"]
    problems += [f"{f}/{name}: missing" for f in reports for name in REPORT_FILES if not actual.exists(f"{f}/{name}".lstrip("/"))]
    return problems


def check_outcome(run: Storage, workflow: str) -> list[str]:
    """The exit handler's record of `workflow`: present, Succeeded, no failed step, nothing unfinished."""
    key = f"{OUTCOME_PREFIX}/{workflow}.json"
    if not run.exists(key):
        return [f"{run.uri}/{key}: missing (the exit handler did not run or could not write)"]
    record = json.loads(run.read_bytes(key))
    problems = [] if record.get("status") == "Succeeded" else [f"outcome status {record.get('status')!r}, expected 'Succeeded'"]
    problems += [f"failed step {step}" for step in record.get("failed_steps") or ()]
    problems += [f"unfinished output {uri}" for uri in record.get("unfinished") or ()]
    return problems


def copy_reports(run: Storage, expected: Storage, out: Path) -> list[Path]:
    """Copy the report files of the run (the folders whose stage is report) to `out`, for the job's artifacts."""
    copied = []
    for folder, manifest in manifests(expected).items():
        for name in REPORT_FILES if manifest.stage == "report" else ():
            key = f"{folder}/{name}".lstrip("/")
            if run.exists(key):
                target = out / key
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(run.read_bytes(key))
                copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e_study", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    overlay = commands.add_parser("overlay", help="write the e2e kustomize overlay of k8s/")
    overlay.add_argument("--image", required=True)
    overlay.add_argument("--out", type=Path, required=True)
    overlay.add_argument("--cpu", default=E2E_CPU)
    overlay.add_argument("--base", help="k8s/ as the overlay names it (default: relative to --out)")
    send = commands.add_parser("upload", help="copy a folder to an s3:// prefix")
    send.add_argument("source", type=Path)
    send.add_argument("dest")
    check = commands.add_parser("check", help="compare the cluster run with the local run of the same study")
    check.add_argument("--expected", required=True, help="the local run root of `saliencylab demo`")
    check.add_argument("--run", required=True, help="the cluster run root (s3://...)")
    check.add_argument("--workflow", required=True, help="the Workflow's name (its outcome record)")
    check.add_argument("--report-to", type=Path, required=True, help="where the report files are copied")
    args = parser.parse_args(argv)
    try:
        if args.command == "overlay":
            print(write_overlay(args.out, args.image, cpu=args.cpu, base=args.base))
            return 0
        if args.command == "upload":
            print(f"uploaded {upload(args.source, args.dest)} files to {args.dest}")
            return 0
        run, expected = open_storage(args.run), open_storage(args.expected)
        copy_reports(run, expected, args.report_to)
        problems = check_outcome(run, args.workflow) + compare_runs(expected, run)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"e2e_study {args.command}: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"e2e check: {problem}", file=sys.stderr)
    if not problems:
        print(f"e2e check: {len(manifests(run))} artifacts match the local run; report and outcome present")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
