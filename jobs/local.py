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
    """Run `steps` under the run root `root`; `externals` resolves `@name` inputs. Returns each step's manifest."""
    check_order(steps)
    manifests: dict[str, Manifest] = {}
    for number, step in enumerate(steps, 1):
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
        config = resolve_config(job.config_cls, step.params)
        manifests[step.name] = execute(job, inputs, output, config, force=force)
    return manifests
