"""The study pipeline as data: which stage runs on which outputs, in dependency order.

A run lives under one root (a local folder or `s3://bucket/runs/<run>`); each step writes to
`<root>/<step name>` (e.g. `ingest`, `cam/faster_rcnn`). Step inputs name either an earlier step
or an external input given as `@name` (e.g. `@images`, the raw dataset). The local runner
(`saliencylab demo`, `saliencylab pipeline`) and the Argo DAG both follow this declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from saliencylab.stages import get_stage


@dataclass(frozen=True)
class Step:
    """One stage invocation: output path under the run root, stage name, wired inputs and parameters."""

    name: str
    stage: str
    inputs: dict[str, str]  # stage input name -> step name or "@external"
    params: dict[str, Any] = field(default_factory=dict)


def study_steps(ingest_params: dict[str, Any] | None = None) -> tuple[Step, ...]:
    """The empirical study's steps, in an order where every step comes after the steps it reads."""
    steps = (Step("ingest", "ingest", {"images": "@images", "masks": "@masks"}, dict(ingest_params or {})),)
    check_order(steps)
    return steps


def check_order(steps: tuple[Step, ...]) -> None:
    """Raise ValueError if a step reads a step that does not come before it, or names an unknown stage."""
    done: set[str] = set()
    for step in steps:
        get_stage(step.stage)
        for source in step.inputs.values():
            if not source.startswith("@") and source not in done:
                raise ValueError(f"step {step.name!r} reads {source!r}, which does not run before it")
        done.add(step.name)
