"""The study pipeline as data: which stage runs on which outputs, in dependency order.

A run lives under one root (a local folder or `s3://bucket/runs/<run>`); each step writes to
`<root>/<step name>` (e.g. `ingest`, `cam/faster_rcnn`). Step inputs name either an earlier step
or an external input given as `@name` (e.g. `@images`, the raw dataset). The local runner
(`saliencylab demo`, `saliencylab study`, `saliencylab augmentation-study`) and the Argo DAGs
(k8s/pipeline.yaml, k8s/pipelines/) all follow these declarations: `study_steps` (the empirical
study), `augmentation_steps` (the augmentation study: four training sets, fine-tuned, evaluated
and compared), `xai_benchmark_steps` (GBP, Grad-CAM, RISE against HSI maps) and
`hsi_study_steps` (HSI: pseudo labels, pre-training, k-fold fine-tuning, held-out scores).

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
    fixed: tuple[str, ...] = ()  # params set by the wiring that a stage-wide override must not change (e.g. a split)


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


AUGMENTATION_VARIANTS: tuple[str, ...] = ("baseline", "erase", "inpaint", "augment")
AUGMENTATION_TRAINING_SETS = {"baseline": "ingest/train", "erase": "erase", "inpaint": "inpaint", "augment": "augment"}
AUGMENTATION_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # the test set as the corrected empirical study ingests it; erase, inpaint, augment and finetune
    # default to the paper's settings (docs/augment.md, docs/finetune.md)
    "paper": {"ingest": {"size": 512, "duplicate_masks": "max"}, "report": {"protocol": "paper"}},
}
CAM_DETECTOR = "faster_rcnn"  # the fine-tuned detector's CAM; it reads only the architecture below
CAM_ARCHITECTURE = "fasterrcnn_resnet50_fpn"
# seconds-scale settings for the demo and the end-to-end test: 64 px, 1 epoch, 5 DIP iterations
AUGMENTATION_DEMO: dict[str, dict[str, Any]] = {
    "ingest": {"size": 64, "shard_size": 4},
    "cam": {"batch_size": 4},
    "finetune": {"epochs": 1, "batch_size": 2, "min_size": 64, "max_size": 64, "checkpoint_every": 0, "warmup": False},
    "inpaint": {"iterations": 5, "width": 8, "depth": 2, "input_channels": 8, "batch_size": 4},
    "evaluate": {"batch_size": 4},
    "compare": {"bootstrap": 100},
}
AUGMENTATION_DEMO_TRAIN_SIZE = 64


def augmentation_steps(
    preset: str = "paper",
    overrides: dict[str, dict[str, Any]] | None = None,
    coco_weights: str = "random",
    train_size: int = 512,
) -> tuple[Step, ...]:
    """The augmentation study (paper A's second question): do training sets derived from attention
    make the fine-tuned detector's saliency more human-like, and at what cost in mAP?

    Training data (the VOC ids without a human mask, `@images` + `@masks`):
    `ingest/train` at native size; `ingest/train-<train_size>` squashed, same shard size; on the
    latter the COCO detector's CAM (`cam/train`) and DeepGaze (`deepgaze/train`); `erase` (native
    images, that CAM, that DeepGaze), `inpaint` (the erased set), `augment` (the native set).
    Each of the four training sets (AUGMENTATION_VARIANTS: the native set is the baseline) is
    fine-tuned (`finetune/<variant>`), evaluated on the test set (`evaluate/<variant>`), and its
    CAM on the test set (`cam/<variant>`, reading the fine-tune as its `model` input) is compared
    with DeepGaze on the test set (`compare/<variant>-deepgaze`) and with the human masks
    (`compare/<variant>-human`). Test data: `ingest/test`, the ids with a mask, squashed (the
    paper's 898 images). Then `report` over the run root.

    Args:
        preset: a key of AUGMENTATION_PRESETS.
        overrides: stage name -> parameters layered over the preset, for every step of that stage
            (e.g. AUGMENTATION_DEMO); a step's own wiring keys (split, resize, detector, map_size,
            architecture, weights) win over them.
        coco_weights: weights spec of COCO Faster R-CNN R50-FPN: the start of every fine-tune and
            the detector of the erase CAM (`random` for tests).
        train_size: side in pixels of the squashed training ingest and of the maps erase reads
            (paper: 512).
    """
    if preset not in AUGMENTATION_PRESETS:
        raise ValueError(f"unknown augmentation study preset {preset!r}; valid: {sorted(AUGMENTATION_PRESETS)}")
    overrides = overrides or {}
    if overrides.get("finetune", {}).get("architecture", CAM_ARCHITECTURE) != CAM_ARCHITECTURE:
        raise ValueError(f"the study's CAM ({CAM_DETECTOR}) reads only {CAM_ARCHITECTURE} fine-tunes; leave finetune.architecture unset")
    for stage, key in (("cam", "weights"), ("cam", "detector"), ("finetune", "weights")):
        if key in overrides.get(stage, {}):
            raise ValueError(f"{stage}.{key} is set by the study's wiring (COCO weights option, fine-tuned models); do not override it")

    step = _step_maker(AUGMENTATION_PRESETS[preset], overrides)
    raw = {"images": "@images", "masks": "@masks"}
    train_maps = f"ingest/train-{train_size}"
    steps = [
        step("ingest/train", "ingest", raw, split="unmasked", resize="none"),
        step(train_maps, "ingest", raw, split="unmasked", resize="squash", size=train_size),
        step("ingest/test", "ingest", raw, split="masked", resize="squash"),
        step("cam/train", "cam", {"images": train_maps}, detector=CAM_DETECTOR, weights=coco_weights),
        step("deepgaze/train", "deepgaze", {"images": train_maps}),
        step("erase", "erase", {"images": "ingest/train", "cam": "cam/train", "deepgaze": "deepgaze/train"}, map_size=train_size),
        step("inpaint", "inpaint", {"images": "erase"}),
        step("augment", "augment", {"images": "ingest/train"}),
    ]
    for variant in AUGMENTATION_VARIANTS:
        train = {"train": AUGMENTATION_TRAINING_SETS[variant]}
        steps.append(step(f"finetune/{variant}", "finetune", train, architecture=CAM_ARCHITECTURE, weights=coco_weights))
    for variant in AUGMENTATION_VARIANTS:
        steps.append(step(f"evaluate/{variant}", "evaluate", {"model": f"finetune/{variant}", "images": "ingest/test"}))
    steps.append(step("deepgaze/test", "deepgaze", {"images": "ingest/test"}))
    for variant in AUGMENTATION_VARIANTS:
        cam = f"cam/{variant}"
        steps.append(step(cam, "cam", {"images": "ingest/test", "model": f"finetune/{variant}"}, detector=CAM_DETECTOR))
        steps.append(step(f"compare/{variant}-deepgaze", "compare", {"pred": cam, "target": "deepgaze/test"}))
        steps.append(step(f"compare/{variant}-human", "compare", {"pred": cam, "target": "ingest/test"}))
    steps.append(step("report", "report", {"run": "@run"}))
    result = tuple(steps)
    check_order(result)
    return result


XAI_METHODS: tuple[str, ...] = ("gbp", "gradcam", "rise")
XAI_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"xai": {"target": "label"}, "report": {"protocol": "paper"}},  # the label's class, RISE N=4000, s=7, p1=0.5
    "notebook": {"xai": {"target": "label", "rise_masks": 6000, "rise_cells": 8, "rise_p1": 0.1}, "report": {"protocol": "paper"}},
}


def xai_benchmark_steps(
    preset: str = "paper",
    overrides: dict[str, dict[str, Any]] | None = None,
    hsi_weights: str = "random",
    classifier_weights: str = "random",
) -> tuple[Step, ...]:
    """The explanation-method benchmark (HSI paper, Table 4): GBP, Grad-CAM and RISE against HSI maps.

    `@images` is a labelled image artifact (samples with image.png and a label in meta.json: an
    `ingest --format hsb` output, or `hsi-labels` output; ImageNet validation in the paper).
    `hsi-predict` maps it with the HSI model; `xai/<method>` explains the classifier's decision for
    each label with each of XAI_METHODS; `compare/<method>-hsi` scores each method's maps against
    the HSI maps; `report` over the run root.

    Args:
        preset: a key of XAI_PRESETS (paper: RISE defaults; notebook: the authors' notebook's RISE).
        overrides: stage name -> parameters over the preset for every step of that stage.
        hsi_weights: weights spec of the HSI model (`hsi-train:<URI>#best`, a path, or `random`).
        classifier_weights: weights spec of the explained ResNet (`random` for tests).
    """
    if preset not in XAI_PRESETS:
        raise ValueError(f"unknown xai benchmark preset {preset!r}; valid: {sorted(XAI_PRESETS)}")
    overrides = overrides or {}
    for stage, key in (("xai", "method"), ("xai", "weights"), ("hsi-predict", "weights")):
        if key in overrides.get(stage, {}):
            raise ValueError(f"{stage}.{key} is set by the benchmark's wiring (one step per method, the weights options); do not override it")
    step = _step_maker(XAI_PRESETS[preset], overrides)
    steps = [step("hsi-predict", "hsi-predict", {"images": "@images"}, weights=hsi_weights)]
    for method in XAI_METHODS:
        steps.append(step(f"xai/{method}", "xai", {"images": "@images"}, method=method, weights=classifier_weights))
        steps.append(step(f"compare/{method}-hsi", "compare", {"pred": f"xai/{method}", "target": "hsi-predict"}))
    steps.append(step("report", "report", {"run": "@run"}))
    result = tuple(steps)
    check_order(result)
    return result


HSI_FOLDS = 5  # the HSI paper's cross-validation
HSI_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"report": {"protocol": "paper"}},  # hsi-labels, hsi-train, hsi-predict at their paper defaults (docs/hsi.md)
}
HSI_BASELINE_FEATURES = ("u4", "u5", "z")  # the no-text baseline of the HSI paper (Table 2): no text score map
# the fine-tunes of the study: name -> (pretrain step it starts from or None for CLIP + a fresh decoder, decoder features or None)
HSI_FINETUNES: dict[str, tuple[str | None, tuple[str, ...] | None]] = {
    "finetune": ("hsi-train/pretrain", None),  # the full model (Tables 1-3)
    "finetune-clip": (None, None),  # Table 3: random (CLIP-only) initialisation
    "finetune-baseline": ("hsi-train/pretrain-baseline", HSI_BASELINE_FEATURES),  # Table 2: no-text baseline
}
# seconds-scale settings for the end-to-end test: 32 px, a 16-channel decoder, 1 epoch of batch 2
HSI_DEMO: dict[str, dict[str, Any]] = {
    "ingest": {"size": 32},
    "hsi-train": {"image_size": 32, "decoder_channels": 16, "trainable": "decoder", "epochs": 1, "batch_size": 2, "checkpoint_every": 0},
    "compare": {"bootstrap": 50},
}


def hsi_study_steps(
    preset: str = "paper",
    overrides: dict[str, dict[str, Any]] | None = None,
    folds: int = HSI_FOLDS,
    clip_weights: str = "random",
    random_init: bool = True,
    baseline: bool = True,
) -> tuple[Step, ...]:
    """The HSI study (HSI paper, Tables 1-3): pseudo labels, pre-training, k-fold fine-tuning, held-out scores.

    `hsi-labels` turns SALICON (`@salicon`) and COCO (`@coco`) into pseudo conditional labels;
    `hsi-train/pretrain` pre-trains on them; `ingest/hsb` reads the human saliency benchmark
    (`@hsb`, a folder with its manifest: `ingest --format hsb`); `hsi-train/finetune` fine-tunes
    the pre-trained model on HSB with `folds` folds, one shard each (Argo fans them out as the
    stage's workers). `hsi-predict/pretrain` maps every HSB image with the pre-trained model
    (Table 1, without fine-tuning); per fine-tune and fold k, `hsi-predict/<fine-tune>/fold-<k>`
    maps fold k's held-out images with fold k's weights (its `model` input and `fold`), and
    `compare/<...>` scores each prediction against the HSB maps and fixations (`ingest/hsb`).
    Optional fine-tunes (HSI_FINETUNES): `finetune-clip` from CLIP with a fresh decoder
    (Table 3), `finetune-baseline` of the no-text baseline, pre-trained as
    `hsi-train/pretrain-baseline` (Table 2). Then `report` over the run root.

    Args:
        preset: a key of HSI_PRESETS.
        overrides: stage name -> parameters over the preset for every step of that stage (e.g.
            HSI_DEMO); hsi-predict takes the network from the hsi-train artifact it reads, so the
            model fields are set once, on hsi-train.
        folds: cross-validation folds (paper: 5; every fold must hold every class).
        clip_weights: CLIP weights (open_clip state dict) that every pre-training and the
            random-init fine-tune start from (`random` for tests).
        random_init: add the Table 3 fine-tune from CLIP with a fresh decoder.
        baseline: add the Table 2 no-text baseline (its own pre-training and fine-tune).
    """
    if preset not in HSI_PRESETS:
        raise ValueError(f"unknown HSI study preset {preset!r}; valid: {sorted(HSI_PRESETS)}")
    if folds < 2:
        raise ValueError(f"the HSI study needs at least 2 folds, got {folds}")
    overrides = overrides or {}
    for stage, key in (("hsi-train", "mode"), ("hsi-train", "folds"), ("hsi-train", "clip_weights"), ("hsi-train", "features"),
                       ("hsi-predict", "fold"), ("hsi-predict", "weights"), ("ingest", "format")):  # fmt: skip
        if key in overrides.get(stage, {}):
            raise ValueError(f"{stage}.{key} is set by the study's wiring (modes, folds, the weights option, the variants); do not override it")
    step = _step_maker(HSI_PRESETS[preset], overrides)
    features = {"features": HSI_BASELINE_FEATURES}
    steps = [
        step("hsi-labels", "hsi-labels", {"salicon": "@salicon", "coco": "@coco"}),
        step("hsi-train/pretrain", "hsi-train", {"train": "hsi-labels"}, mode="pretrain", clip_weights=clip_weights),
    ]
    if baseline:
        steps.append(step("hsi-train/pretrain-baseline", "hsi-train", {"train": "hsi-labels"}, mode="pretrain", clip_weights=clip_weights, **features))
    steps.append(step("ingest/hsb", "ingest", {"images": "@hsb"}, format="hsb"))
    chosen = [name for name in HSI_FINETUNES if (name != "finetune-clip" or random_init) and (name != "finetune-baseline" or baseline)]
    for name in chosen:
        init, own = HSI_FINETUNES[name]
        inputs = {"train": "ingest/hsb", **({"init": init} if init else {})}
        start = {} if init else {"clip_weights": clip_weights}
        steps.append(step(f"hsi-train/{name}", "hsi-train", inputs, mode="finetune", folds=folds, **start, **({"features": own} if own else {})))
    predictions = {"hsi-predict/pretrain": ("hsi-train/pretrain", -1)}
    predictions.update({f"hsi-predict/{name}/fold-{k}": (f"hsi-train/{name}", k) for name in chosen for k in range(folds)})
    for name, (model, fold) in predictions.items():
        own = features if model.endswith("-baseline") else {}  # the report reads the features from the parameters
        steps.append(step(name, "hsi-predict", {"images": "ingest/hsb", "model": model}, fold=fold, **own))
        steps.append(step(name.replace("hsi-predict/", "compare/", 1), "compare", {"pred": name, "target": "ingest/hsb"}))
    steps.append(step("report", "report", {"run": "@run"}))
    result = tuple(steps)
    check_order(result)
    return result


def _step_maker(layer: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]]):
    """A Step factory: parameters = the preset's `layer` < `overrides` < the step's own keyword keys (its `fixed`)."""

    def step(name: str, stage: str, inputs: dict[str, str], **own: Any) -> Step:
        return Step(name, stage, inputs, {**layer.get(stage, {}), **overrides.get(stage, {}), **own}, tuple(own))

    return step


def stages_of(steps: tuple[Step, ...]) -> list[str]:
    """The stages `steps` run, each once, in order of first use."""
    return list(dict.fromkeys(step.stage for step in steps))


def check_order(steps: tuple[Step, ...]) -> None:
    """Raise ValueError if a step reads a step that does not come before it, or names an unknown stage."""
    done: set[str] = set()
    for step in steps:
        get_stage(step.stage)
        for source in step.inputs.values():
            if not source.startswith("@") and source not in done:
                raise ValueError(f"step {step.name!r} reads {source!r}, which does not run before it")
        if step.name in done:
            raise ValueError(f"two steps write {step.name!r}")
        done.add(step.name)
