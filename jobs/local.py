"""The local runner: run pipeline steps in order, in this process, against local folders or S3."""

from __future__ import annotations

import importlib
import sys

from saliencylab.config import resolve_config
from saliencylab.manifests import Manifest
from saliencylab.pipeline import Step, check_order
from saliencylab.storage import join_uri

from jobs.common import Job, execute


def job_for(stage: str) -> Job:
    """The `Job` declared by the job module of `stage`."""
    from saliencylab.stages import get_stage

    return importlib.import_module(get_stage(stage).module).JOB


def stage_overrides(sets: dict[str, str], steps: tuple[Step, ...]) -> dict[str, dict[str, str]]:
    """`--set stage.key=value` pairs as {stage: {key: value}}, each checked against the stage's config.

    Raises:
        ValueError: a key without `stage.`, a stage that no step runs, or a key or value the
            stage's config refuses; the message lists the valid stages or keys.
    """
    stages = list(dict.fromkeys(step.stage for step in steps))
    out: dict[str, dict[str, str]] = {}
    for key, value in sets.items():
        stage, _, name = key.partition(".")
        if stage not in stages or not name:
            raise ValueError(f"--set {key}={value}: expected <stage>.<key> with a stage of this pipeline: {stages}")
        try:
            resolve_config(job_for(stage).config_cls, {name: value})
        except ValueError as e:
            raise ValueError(f"--set {key}={value}: {e}") from None
        out.setdefault(stage, {})[name] = value
    return out


def run_steps(steps: tuple[Step, ...], root: str, externals: dict[str, str], force: bool = False) -> dict[str, Manifest]:
    """Run `steps` under the run root `root`; `externals` resolves `@name` inputs. Returns each step's manifest.

    Every step's parameters are resolved before the first step runs, so a bad value stops the
    run before anything is written.
    """
    check_order(steps)
    configs = [resolve_config(job_for(step.stage).config_cls, step.params) for step in steps]
    manifests: dict[str, Manifest] = {}
    for number, (step, config) in enumerate(zip(steps, configs), 1):
        job = job_for(step.stage)
        inputs = {}
        for name, source in step.inputs.items():
            if source.startswith("@"):
                if externals.get(source[1:]):
                    inputs[name] = externals[source[1:]]
            else:
                inputs[name] = join_uri(root, source)
        output = join_uri(root, step.name)
        print(f"[{number}/{len(steps)}] {step.stage} -> {output}", file=sys.stderr)
        manifests[step.name] = execute(job, inputs, output, config, force=force)
    return manifests
