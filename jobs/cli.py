"""The `saliencylab` command: one sub-command per stage, plus merge, demo and the stage list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from saliencylab.cam.names import DETECTOR_NAMES
from saliencylab.stages import STAGES
from saliencylab.storage import join_uri, open_storage

from jobs import outcome, render
from jobs.common import ALLOW_MIXED_CODE_HELP, USER_ERRORS, fail
from jobs.lazy import StageGroup

DETECTORS_HELP = f"Comma-separated detector names of {', '.join(DETECTOR_NAMES)}; all when omitted."

app = typer.Typer(
    help="Measure and improve how human-like the saliency maps of vision models are.\n\n"
    "Every stage reads sharded artifacts and writes shards plus a _manifest.json; see docs/architecture.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=StageGroup,  # one sub-command per registered stage, its job module imported only when used
)


@app.command("merge")
def merge_command(
    output: Annotated[str, typer.Option("--output", "-o", help="Output URI of a stage run split with --shard i/n.")],
    allow_mixed_code: Annotated[bool, typer.Option("--allow-mixed-code", help=ALLOW_MIXED_CODE_HELP)] = False,
) -> None:
    """Write the _manifest.json of a sharded stage run once all its workers have finished.

    Every shard is checked against its part record (size and sha256) first.
    """
    from saliencylab.runner import RUN_KEY, RunRequest, merge

    from jobs.local import job_for

    try:
        storage = open_storage(output)
        stage = RunRequest.from_json(storage.read_bytes(RUN_KEY)).stage if storage.exists(RUN_KEY) else None
        manifest = merge(storage, finalize=job_for(stage).finalize if stage else None, allow_mixed_code=allow_mixed_code)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    print(f"merged {manifest.stage}: {manifest.num_samples} samples in {len(manifest.shards)} shards -> {output}", file=sys.stderr)


app.command("render-cluster")(render.command)
app.command("outcome")(outcome.command)


@app.command("stages")
def stages_command() -> None:
    """List the stages with their inputs (one per line, tab-separated)."""
    for spec in STAGES:
        print(f"{spec.name}\t{','.join(spec.inputs)}\t{'gpu' if spec.gpu else 'cpu'}\t{spec.summary}")


def _print_outputs(root: str, manifests: dict) -> None:
    print("\nOutputs:")
    for name, manifest in manifests.items():
        print(f"  {name:<28} {manifest.num_samples:>5} samples  {join_uri(root, name)}")
    if "report" in manifests:
        print(f"\nReport: {join_uri(root, 'report', 'report.html')}  (and report.md)")
    for warning in sorted({w for m in manifests.values() for w in m.warnings}):
        print(f"  WARNING: {warning}")


def _weights_overrides(cam_weights: list[str], deepgaze_weights: str | None, centerbias: str | None) -> dict:
    overrides: dict = {"cam_weights": {}}
    for pair in cam_weights:
        detector, sep, uri = pair.partition("=")
        if not sep:
            raise ValueError(f"--cam-weights expects detector=URI, got {pair!r}")
        overrides["cam_weights"][detector] = uri
    overrides["deepgaze"] = _deepgaze_params(deepgaze_weights, centerbias)
    return overrides


def _deepgaze_params(weights: str | None, centerbias: str | None) -> dict:
    return {k: v for k, v in {"weights": weights, "centerbias": centerbias}.items() if v}


def _checked_run(steps: tuple, output: str, externals: dict[str, str], force: bool) -> dict:
    """Check every step's parameters, weights and external inputs before anything runs, then run the steps."""
    from saliencylab.plan import check_plan

    from jobs.common import stage_params
    from jobs.local import run_steps

    check_plan(steps, stage_params, externals)
    return run_steps(steps, output, externals, force=force)


@app.command("study")
def study_command(
    images: Annotated[str, typer.Option("--images", help="Raw images: a VOCdevkit folder (or an image folder with --set ingest.format=folder).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run root: a local folder or s3://bucket/runs/<name>.")],
    masks: Annotated[Optional[str], typer.Option("--masks", help="Human attention masks folder; without it the human branch is skipped.")] = None,
    preset: Annotated[str, typer.Option("--preset", help="Study configuration: paper or corrected (docs/protocols.md).")] = "corrected",
    detectors: Annotated[Optional[str], typer.Option("--detectors", help=DETECTORS_HELP)] = None,
    cam_weights: Annotated[list[str], typer.Option("--cam-weights", help="detector=weights for a detector (path, s3:// or torchvision:<name>); default random.")] = [],
    deepgaze_weights: Annotated[Optional[str], typer.Option("--deepgaze-weights", help="deepgaze2e.pth as a path or s3:// URI; default random.")] = None,
    centerbias: Annotated[Optional[str], typer.Option("--centerbias", help="centerbias_mit1003.npy as a path or s3:// URI; default uniform.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="stage.key=value for every step of that stage, e.g. ingest.split=masked.")] = [],
    force: Annotated[bool, typer.Option("--force", help="Recompute steps whose parameters changed.")] = False,
) -> None:
    """Run the empirical study end to end: ingest, CAMs, DeepGaze, compare, report."""
    from saliencylab.config import parse_sets
    from saliencylab.pipeline import stages_of, study_steps
    from saliencylab.plan import split_sets, unknown_name

    try:
        overrides = _weights_overrides(cam_weights, deepgaze_weights, centerbias)
        chosen = tuple(d.strip() for d in detectors.split(",")) if detectors else DETECTOR_NAMES
        for name in chosen:
            if name not in DETECTOR_NAMES:
                raise ValueError("--detectors: " + unknown_name("detector", name, DETECTOR_NAMES))
        for stage, values in split_sets(parse_sets(set_), stages_of(study_steps(chosen[:1], preset))).items():
            overrides.setdefault(stage, {}).update(values)
        steps = study_steps(chosen, preset, overrides, human_masks=bool(masks))
        manifests = _checked_run(steps, output, {"images": images, "masks": masks or "", "run": output}, force)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    _print_outputs(output, manifests)


@app.command("augmentation-study")
def augmentation_study_command(
    images: Annotated[str, typer.Option("--images", help="Raw images: a VOCdevkit folder (VOC 2012 with boxes).")],
    masks: Annotated[str, typer.Option("--masks", help="Human attention masks: their ids are the test set, all other ids the training set.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run root: a local folder or s3://bucket/runs/<name>.")],
    preset: Annotated[str, typer.Option("--preset", help="Study configuration (saliencylab.pipeline.AUGMENTATION_PRESETS): paper.")] = "paper",
    coco_weights: Annotated[
        str, typer.Option("--coco-weights", help="COCO Faster R-CNN R50-FPN weights (path, s3:// or torchvision:<name>): fine-tune start and erase CAM.")
    ] = "random",
    deepgaze_weights: Annotated[Optional[str], typer.Option("--deepgaze-weights", help="deepgaze2e.pth as a path or s3:// URI; default random.")] = None,
    centerbias: Annotated[Optional[str], typer.Option("--centerbias", help="centerbias_mit1003.npy as a path or s3:// URI; default uniform.")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="stage.key=value for every step of that stage, e.g. finetune.epochs=3.")] = [],
    force: Annotated[bool, typer.Option("--force", help="Recompute steps whose parameters changed.")] = False,
) -> None:
    """Run the augmentation study: erase, inpaint, augment; fine-tune x4, evaluate x4, CAM x4, compare x8, report."""
    from saliencylab.config import parse_sets
    from saliencylab.pipeline import augmentation_steps, stages_of
    from saliencylab.plan import split_sets

    try:
        overrides = split_sets(parse_sets(set_), stages_of(augmentation_steps()))
        overrides["deepgaze"] = {**overrides.get("deepgaze", {}), **_deepgaze_params(deepgaze_weights, centerbias)}
        steps = augmentation_steps(preset, overrides, coco_weights=coco_weights)
        manifests = _checked_run(steps, output, {"images": images, "masks": masks, "run": output}, force)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    _print_outputs(output, manifests)


@app.command("xai-benchmark")
def xai_benchmark_command(
    images: Annotated[str, typer.Option("--images", help="A labelled image artifact: ingest --format hsb output, or hsi-labels output.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run root: a local folder or s3://bucket/runs/<name>.")],
    preset: Annotated[str, typer.Option("--preset", help="Benchmark configuration (saliencylab.pipeline.XAI_PRESETS): paper or notebook.")] = "paper",
    hsi_weights: Annotated[str, typer.Option("--hsi-weights", help="HSI model: hsi-train:<artifact URI>#best, a path or s3:// URI; default random.")] = "random",
    classifier_weights: Annotated[
        str, typer.Option("--classifier-weights", help="ResNet weights: path, s3:// URI or torchvision:ResNet50_Weights.IMAGENET1K_V1; default random.")
    ] = "random",
    set_: Annotated[list[str], typer.Option("--set", help="stage.key=value for every step of that stage, e.g. xai.arch=resnet18.")] = [],
    force: Annotated[bool, typer.Option("--force", help="Recompute steps whose parameters changed.")] = False,
) -> None:
    """Run the explanation-method benchmark: HSI maps, GBP / Grad-CAM / RISE maps, compare each with HSI, report."""
    from saliencylab.config import parse_sets
    from saliencylab.pipeline import stages_of, xai_benchmark_steps
    from saliencylab.plan import split_sets

    try:
        overrides = split_sets(parse_sets(set_), stages_of(xai_benchmark_steps()))
        steps = xai_benchmark_steps(preset, overrides, hsi_weights=hsi_weights, classifier_weights=classifier_weights)
        manifests = _checked_run(steps, output, {"images": images, "run": output}, force)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    _print_outputs(output, manifests)


@app.command("hsi-study")
def hsi_study_command(
    salicon: Annotated[str, typer.Option("--salicon", help="SALICON folder: images/<split>/*.jpg and fixations/<split>/*.mat (docs/hsi.md).")],
    coco: Annotated[str, typer.Option("--coco", help="Folder with the COCO instances JSON of those images.")],
    hsb: Annotated[str, typer.Option("--hsb", help="HSB folder with its manifest (hsb.csv: image, label, map, fixations; docs/hsi.md).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run root: a local folder or s3://bucket/runs/<name>.")],
    preset: Annotated[str, typer.Option("--preset", help="Study configuration (saliencylab.pipeline.HSI_PRESETS): paper.")] = "paper",
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds on HSB (paper: 5); every fold must hold every class.")] = 5,
    clip_weights: Annotated[
        str, typer.Option("--clip-weights", help="CLIP RN50 weights (open_clip state dict, e.g. converted OpenAI RN50; path or s3://); default random.")
    ] = "random",
    random_init: Annotated[bool, typer.Option("--random-init/--no-random-init", help="Add the fine-tune from CLIP with a fresh decoder (Table 3).")] = True,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="Add the no-text baseline, pre-trained and fine-tuned (Table 2).")] = True,
    set_: Annotated[list[str], typer.Option("--set", help="stage.key=value for every step of that stage, e.g. hsi-train.epochs=3.")] = [],
    force: Annotated[bool, typer.Option("--force", help="Recompute steps whose parameters changed.")] = False,
) -> None:
    """Run the HSI study: pseudo labels, pre-training, k-fold fine-tuning on HSB, held-out predictions, compare, report."""
    from saliencylab.config import parse_sets
    from saliencylab.pipeline import hsi_study_steps, stages_of
    from saliencylab.plan import split_sets

    try:
        overrides = split_sets(parse_sets(set_), stages_of(hsi_study_steps()))
        steps = hsi_study_steps(preset, overrides, folds=folds, clip_weights=clip_weights, random_init=random_init, baseline=baseline)
        manifests = _checked_run(steps, output, {"salicon": salicon, "coco": coco, "hsb": hsb, "run": output}, force)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    _print_outputs(output, manifests)


def _augmentation_demo(workdir: Path, output: str | None, force: bool) -> tuple[str, dict]:
    from saliencylab.demo import write_training_demo_dataset
    from saliencylab.pipeline import AUGMENTATION_DEMO, AUGMENTATION_DEMO_TRAIN_SIZE, augmentation_steps

    from jobs.local import run_steps

    voc, masks = write_training_demo_dataset(workdir / "augmentation-data")
    root = output or str((workdir / "augmentation-run").resolve())
    steps = augmentation_steps("paper", AUGMENTATION_DEMO, train_size=AUGMENTATION_DEMO_TRAIN_SIZE)
    return root, run_steps(steps, root, {"images": str(voc), "masks": str(masks), "run": root}, force=force)


@app.command("demo")
def demo_command(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the demo data and the run go.")] = Path("demo-run"),
    output: Annotated[Optional[str], typer.Option("--output", help="Run root (default WORKDIR/run, or WORKDIR/augmentation-run); may be s3://.")] = None,
    detectors: Annotated[Optional[str], typer.Option("--detectors", help=DETECTORS_HELP)] = None,
    study: Annotated[
        str, typer.Option("--study", help="empirical: the detectors vs attention study; augmentation: the four training sets, fine-tuned (64 px, 1 epoch).")
    ] = "empirical",
    force: Annotated[bool, typer.Option("--force", help="Recompute steps whose parameters changed.")] = False,
) -> None:
    """Run a whole study on demo data: CPU, local storage, random weights (empirical: the bundled photographs at 256x256)."""
    from saliencylab.demo import write_demo_dataset
    from saliencylab.pipeline import study_steps

    from jobs.local import run_steps

    if study not in ("empirical", "augmentation"):
        raise fail(f"--study {study!r}: valid studies are 'empirical' and 'augmentation'")
    if study == "augmentation" and detectors:
        raise fail("--detectors applies to the empirical study; the augmentation study studies the fine-tuned faster_rcnn")
    try:
        if study == "augmentation":
            root, manifests = _augmentation_demo(workdir, output, force)
        else:
            voc, masks = write_demo_dataset(workdir / "data")
            root = output or str((workdir / "run").resolve())
            chosen = tuple(d.strip() for d in detectors.split(",")) if detectors else DETECTOR_NAMES
            demo_sizes = {"ingest": {"size": 256, "shard_size": 2}, "cam": {"batch_size": 2}, "compare": {"bootstrap": 200}}
            steps = study_steps(chosen, "corrected", demo_sizes)
            manifests = run_steps(steps, root, {"images": str(voc), "masks": str(masks), "run": root}, force=force)
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    print("\nDemo finished.")
    _print_outputs(root, manifests)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
