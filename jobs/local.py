"""The local runner: run pipeline steps in order, in this process, against local folders or S3."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from saliencylab.config import resolve_config
from saliencylab.manifests import Manifest
from saliencylab.pipeline import Step, check_order
from saliencylab.progress import Progress
from saliencylab.storage import join_uri

from jobs.common import Job, execute


def job_for(stage: str) -> Job:
    """The `Job` declared by the job module of `stage`."""
    from saliencylab.stages import get_stage

    return importlib.import_module(get_stage(stage).module).JOB


def run_steps(
    steps: tuple[Step, ...],
    root: str,
    externals: dict[str, str],
    force: bool = False,
    progress: Callable[[Step], Progress] | None = None,
) -> dict[str, Manifest]:
    """Run `steps` under the run root `root`; `externals` resolves `@name` inputs. Returns each step's manifest.

    Every step's parameters are resolved before the first step runs, so a bad value stops the
    run before anything is written. `progress`, if given, makes each step's progress reporter
    (called as the step starts; bench/bench_study.py times the steps with it); default: the
    stage's own bar or JSON lines.
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
        reporter = progress(step) if progress else None
        manifests[step.name] = execute(job, inputs, output, config, force=force, progress=reporter, shown=shown)
    return manifests
