"""The `saliencylab` command: one sub-command per stage, plus merge, demo and the stage list."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from saliencylab.stages import STAGES, get_stage
from saliencylab.storage import join_uri, open_storage

from jobs.common import USER_ERRORS, fail, stage_command

app = typer.Typer(
    help="Measure and improve how human-like the saliency maps of vision models are.\n\n"
    "Every stage reads sharded artifacts and writes shards plus a _manifest.json; see docs/architecture.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for _spec in STAGES:
    app.command(_spec.name, help=_spec.summary)(stage_command(importlib.import_module(_spec.module).JOB))


@app.command("merge")
def merge_command(
    output: Annotated[str, typer.Option("--output", "-o", help="Output URI of a stage run split with --shard i/n.")],
) -> None:
    """Write the _manifest.json of a sharded stage run once all its workers have finished."""
    from saliencylab.runner import RUN_KEY, RunRequest, merge

    from jobs.local import job_for

    try:
        storage = open_storage(output)
        stage = RunRequest.from_json(storage.read_bytes(RUN_KEY)).stage if storage.exists(RUN_KEY) else None
        manifest = merge(storage, finalize=job_for(stage).finalize if stage else None)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    print(f"merged {manifest.stage}: {manifest.num_samples} samples in {len(manifest.shards)} shards -> {output}", file=sys.stderr)


@app.command("stages")
def stages_command() -> None:
    """List the stages with their inputs (one per line, tab-separated)."""
    for spec in STAGES:
        print(f"{spec.name}\t{','.join(spec.inputs)}\t{'gpu' if spec.gpu else 'cpu'}\t{spec.summary}")


@app.command("demo")
def demo_command(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the demo data and the run go.")] = Path("demo-run"),
    output: Annotated[Optional[str], typer.Option("--output", help="Run root (default WORKDIR/run); may be s3://.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute steps whose parameters changed.")] = False,
) -> None:
    """Run every built stage of the study on the bundled demo photographs, on CPU, with local storage."""
    from saliencylab.demo import write_demo_dataset
    from saliencylab.pipeline import study_steps

    from jobs.local import run_steps

    try:
        voc, masks = write_demo_dataset(workdir / "data")
        root = output or str((workdir / "run").resolve())
        steps = study_steps({"size": 256, "shard_size": 2})
        manifests = run_steps(steps, root, {"images": str(voc), "masks": str(masks)}, force=force)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    print("\nDemo finished. Outputs:")
    for name, manifest in manifests.items():
        print(f"  {name:<24} {manifest.num_samples:>4} samples  {join_uri(root, name)}")
    for warning in sorted({w for m in manifests.values() for w in m.warnings}):
        print(f"  WARNING: {warning}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
