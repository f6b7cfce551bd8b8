"""The outcome of one cluster run: its status, failed steps and every artifact under its run root.

Written by the exit handler of the WorkflowTemplates (`saliencylab outcome`, jobs/outcome.py) to
<run>/_outcome/<workflow>.json, next to the artifacts it describes, so a run's record survives
the workflow's TTL. Reads manifests only; writes nothing itself.
"""

from __future__ import annotations

import json
from typing import Any

from saliencylab.manifests import MANIFEST_KEY, Manifest
from saliencylab.runner import RUN_KEY
from saliencylab.storage import Storage, join_uri

SCHEMA = "saliencylab.outcome/1"
OUTCOME_PREFIX = "_outcome"


def parse_failures(text: str) -> list[dict[str, str]]:
    """The failed steps from Argo's `{{workflow.failures}}` (a JSON list of failed nodes).

    An empty value, "null" or an unresolved `{{...}}` (Argo leaves it when nothing failed) give [].
    Each entry keeps name, template, phase, message and pod, as Argo reports them.

    Raises:
        ValueError: the text is neither of those nor a JSON list.
    """
    text = text.strip()
    if not text or text == "null" or text.startswith("{{"):
        return []
    try:
        nodes = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--failures is not the JSON list of {{{{workflow.failures}}}}: {e}") from None
    if not isinstance(nodes, list):
        raise ValueError(f"--failures must be a JSON list, got {type(nodes).__name__}")
    fields = {"displayName": "name", "templateName": "template", "phase": "phase", "message": "message", "podName": "pod"}
    return [{ours: str(node.get(theirs, "")) for theirs, ours in fields.items()} for node in nodes if isinstance(node, dict)]


def _artifact(root: Storage, prefix: str) -> dict[str, Any]:
    key = f"{prefix}/{MANIFEST_KEY}" if prefix else MANIFEST_KEY
    uri = join_uri(root.uri, prefix) if prefix else root.uri
    try:
        manifest = Manifest.from_json(root.read_bytes(key), f"{uri}/{MANIFEST_KEY}")
    except ValueError as e:
        return {"uri": uri, "error": str(e)}
    return {
        "uri": uri,
        "stage": manifest.stage,
        "samples": manifest.num_samples,
        "shards": len(manifest.shards),
        "quarantined": len(manifest.quarantine),
        "code_version": manifest.code_version,
    }


def run_outcome(root: Storage, workflow: str, status: str, failures: list[dict[str, str]], duration_s: float | None) -> dict[str, Any]:
    """The outcome record of the run whose root is `root`.

    Args:
        root: the run root (a pipeline's `run`, or a single stage's `output`).
        workflow, status: the Argo workflow's name and final status (Succeeded, Failed, Error).
        failures: parse_failures() of `{{workflow.failures}}`.
        duration_s: the workflow's duration in seconds, if known.

    Returns:
        A JSON-ready dict: the run's identity and status, its failed steps, its finished artifacts
        (URI, stage, samples, shards, quarantined items, code version; or the error reading one),
        the outputs that were started but have no manifest (`unfinished`), and `totals`.
    """
    keys = root.list()
    finished = sorted(k[: -len(MANIFEST_KEY)].rstrip("/") for k in keys if k == MANIFEST_KEY or k.endswith(f"/{MANIFEST_KEY}"))
    started = sorted(k[: -len(RUN_KEY)].rstrip("/") for k in keys if k == RUN_KEY or k.endswith(f"/{RUN_KEY}"))
    artifacts = [_artifact(root, p) for p in finished if not p.startswith(OUTCOME_PREFIX)]
    readable = [a for a in artifacts if "error" not in a]
    totals = {
        "artifacts": len(readable),
        "shards": sum(a["shards"] for a in readable),
        "samples": sum(a["samples"] for a in readable),
        "quarantined": sum(a["quarantined"] for a in readable),
        "failed-steps": len(failures),
    }
    return {
        "schema": SCHEMA,
        "workflow": workflow,
        "status": status,
        "duration_s": duration_s,
        "run": root.uri,
        "failed_steps": failures,
        "artifacts": artifacts,
        "unfinished": [join_uri(root.uri, p) if p else root.uri for p in started if p not in finished],
        "totals": totals,
    }


def outcome_key(workflow: str) -> str:
    """Where the outcome of `workflow` goes, relative to the run root."""
    if not workflow or "/" in workflow or workflow.startswith("."):
        raise ValueError(f"workflow name {workflow!r} cannot name a file")
    return f"{OUTCOME_PREFIX}/{workflow}.json"
