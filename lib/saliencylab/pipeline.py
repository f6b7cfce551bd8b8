"""The study pipeline as data: which stage runs on which outputs, in dependency order.

A run lives under one root (a local folder or `s3://bucket/runs/<run>`); each step writes to
`<root>/<step name>` (e.g. `ingest`, `cam/faster_rcnn`). Step inputs name either an earlier step
or an external input given as `@name` (e.g. `@images`, the raw dataset). The local runner
(`saliencylab demo`, `saliencylab study`) and the Argo DAG both follow this declaration.

Two named configurations of the empirical study (`STUDY_PRESETS`):
- `paper`: the protocol of the source study as it was meant (512x512 squash, the paper's layers,
  its top-10 % threshold with its tie behaviour as the headline IoU, the last mask of a duplicate id);
- `corrected`: the same with every fix of docs/protocols.md (tie-robust IoU as the headline,
  duplicate masks merged by max). Bugs of the original code (DeepGaze fed [0, 1], MAE on raw
  0-255 masks, pairing by directory order) are fixed in both and listed there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from saliencylab.stages import get_stage

STUDY_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"ingest": {"size": 512, "resize": "squash", "duplicate_masks": "last"}, "report": {"protocol": "paper"}},
    "corrected": {"ingest": {"size": 512, "resize": "squash", "duplicate_masks": "max"}, "report": {"protocol": "corrected"}},
}


@dataclass(frozen=True)
class Step:
    """One stage invocation: output path under the run root, stage name, wired inputs and parameters."""

    name: str
    stage: str
    inputs: dict[str, str]  # stage input name -> step name or "@external"
    params: dict[str, Any] = field(default_factory=dict)


def study_steps(
    detectors: tuple[str, ...],
    preset: str = "corrected",
    overrides: dict[str, dict[str, Any]] | None = None,
    human_masks: bool = True,
) -> tuple[Step, ...]:
    """The empirical study: ingest -> CAM per detector -> DeepGaze -> compare -> report.

    Args:
        detectors: registry names of the detectors to study (fanned out).
        preset: `paper` or `corrected` (see the module docstring).
        overrides: stage name -> parameters layered over the preset (e.g. demo sizes), plus
            `cam_weights`: detector -> weights spec for that detector's CAM step.
        human_masks: whether the image set has human attention masks; without them the
            compare-against-human branch is left out and the report says so.
    """
    if preset not in STUDY_PRESETS:
        raise ValueError(f"unknown study preset {preset!r}; valid: {sorted(STUDY_PRESETS)}")
    overrides = overrides or {}
    unknown = set(overrides.get("cam_weights", {})) - set(detectors)
    if unknown:
        raise ValueError(f"weights given for detectors that are not studied: {sorted(unknown)}")

    def params(stage: str, **extra: Any) -> dict[str, Any]:
        return {**STUDY_PRESETS[preset].get(stage, {}), **overrides.get(stage, {}), **extra}

    ingest_inputs = {"images": "@images", "masks": "@masks"} if human_masks else {"images": "@images"}
    steps = [Step("ingest", "ingest", ingest_inputs, params("ingest")), Step("deepgaze", "deepgaze", {"images": "ingest"}, params("deepgaze"))]
    for detector in detectors:
        weights = overrides.get("cam_weights", {}).get(detector)
        cam_params = params("cam", detector=detector, **({"weights": weights} if weights else {}))
        steps.append(Step(f"cam/{detector}", "cam", {"images": "ingest"}, cam_params))
        steps.append(Step(f"compare/{detector}-deepgaze", "compare", {"pred": f"cam/{detector}", "target": "deepgaze"}, params("compare")))
        if human_masks:
            steps.append(Step(f"compare/{detector}-human", "compare", {"pred": f"cam/{detector}", "target": "ingest"}, params("compare")))
    steps.append(Step("report", "report", {"run": "@run"}, params("report")))
    result = tuple(steps)
    check_order(result)
    return result


def check_order(steps: tuple[Step, ...]) -> None:
    """Raise ValueError if a step reads a step that does not come before it, or names an unknown stage."""
    done: set[str] = set()
    for step in steps:
        get_stage(step.stage)
        for source in step.inputs.values():
            if not source.startswith("@") and source not in done:
                raise ValueError(f"step {step.name!r} reads {source!r}, which does not run before it")
        done.add(step.name)
