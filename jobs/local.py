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


def run_steps(steps: tuple[Step, ...], root: str, externals: dict[str, str], force: bool = False) -> dict[str, Manifest]:
    """Run `steps` under the run root `root`; `externals` resolves `@name` inputs. Returns each step's manifest.

    Every step's parameters are resolved before the first step runs, so a bad value stops the
    run before anything is written.
    """
    check_order(steps)
    configs = [resolve_config(job_for(step.stage).config_cls, step.params) for step in steps]
    manifests: dict[str, Manifest] = {}
    shown: set[str] = set()  # each warning printed once per pipeline run, by the first step that raises it
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
        manifests[step.name] = execute(job, inputs, output, config, force=force, shown=shown)
    return manifests
