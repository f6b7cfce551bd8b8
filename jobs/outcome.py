"""`saliencylab outcome`: the exit handler of the cluster runs; records a run's outcome next to it.

Argo runs it when a workflow ends, whatever its status (k8s/, template `outcome`): it writes
<run>/_outcome/<workflow>.json (saliencylab.outcome.run_outcome) and, with --numbers-dir, one
file per total (artifacts, shards, samples, quarantined, failed-steps) for the template's output
parameters and Prometheus gauges.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from saliencylab.outcome import outcome_key, parse_failures, run_outcome
from saliencylab.storage import join_uri, open_storage

from jobs.common import USER_ERRORS, fail


def _seconds(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # Argo left {{workflow.duration}} unresolved: the record says unknown


def command(
    run: Annotated[str, typer.Option("--run", help="Run root: the pipeline's run URI, or a stage run's output URI.")],
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow's name ({{workflow.name}}).")],
    status: Annotated[str, typer.Option("--status", help="Its final status ({{workflow.status}}).")],
    failures: Annotated[str, typer.Option("--failures", help="Its failed nodes as JSON ({{workflow.failures}}).")] = "",
    duration: Annotated[str, typer.Option("--duration", help="Its duration in seconds ({{workflow.duration}}).")] = "",
    numbers_dir: Annotated[Optional[Path], typer.Option("--numbers-dir", help="Also write each total to a file here.")] = None,
) -> None:
    """Write <run>/_outcome/<workflow>.json: status, failed steps, every artifact with its shards and quarantined items."""
    try:
        key = outcome_key(workflow)
        root = open_storage(run)
        outcome = run_outcome(root, workflow, status, parse_failures(failures), _seconds(duration))
        root.write_bytes(key, json.dumps(outcome, indent=2, sort_keys=True).encode() + b"\n")
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    if numbers_dir is not None:
        numbers_dir.mkdir(parents=True, exist_ok=True)
        for name, value in outcome["totals"].items():
            (numbers_dir / name).write_text(f"{value}\n")
    totals = ", ".join(f"{v} {k}" for k, v in outcome["totals"].items())
    print(f"outcome {workflow}: {status}; {totals} -> {join_uri(run, key)}", file=sys.stderr)
