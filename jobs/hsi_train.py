"""Stage `hsi-train`: HSI pre-training on pseudo labels, or k-fold fine-tuning on HSB -> weights, curves, folds.

Input `train`: labelled saliency samples (image.png, saliency.npy, fixations.npy, meta.json with a
label): `hsi-labels` output for `--mode pretrain` (its passive, unlabelled samples are passed
over), `ingest --format hsb` output for `--mode finetune`. Optional `val` (pretrain): a
validation artifact (SALICON val through hsi-labels); without it `val_fraction` of the training
images is held out (seeded). Optional `init` (finetune): an hsi-train pretrain artifact whose
best weights start every fold; without it the folds start from `clip_weights` and a fresh decoder
(Table 3 of the paper compares the two).

One shard task per training unit: `pretrain`, or `fold-<k>` for k < folds, so `--shard i/n`
(and Argo) trains folds in parallel. Each unit writes under `<output>/<unit>/` its checkpoints,
curves and weights (training/hsi_session.py) and resumes from them. Its shard holds one sample
`<unit>` (unit.json: training and validation sizes, a fold's held-out keys) and one per epoch `<unit>-e<NNN>`
(curve.json: losses, lr, best). At merge: `curves.csv`, `folds.json` (finetune) and the summary,
whose `weights` map names what `hsi-predict --weights hsi-train:<URI>#<name>` loads: `best` and
`last` (pretrain; best = lowest validation loss), `fold-<k>` (finetune: the last epoch, because
the held-out fold is the test set and must not pick the epoch). Design: docs/hsi.md.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal

import typer

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.config import config_to_dict, field
from saliencylab.csvfiles import csv_bytes
from saliencylab.hsi.folds import assign_folds, fold_split
from saliencylab.hsi.recipe import LOSS_WEIGHTS, PAPER_DECAY_EPOCH, PAPER_DECAY_FACTOR, PAPER_EPOCHS, PAPER_LR
from saliencylab.hsi.spec import FEATURES
from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP, numpy_generator
from saliencylab.shards import read_shard, shard_name
from saliencylab.stages import get_stage
from saliencylab.storage import Storage
from saliencylab.weights import RANDOM, load_weights, random_weights_warning

from jobs.common import Job, Prepared, stage_command
from jobs.hsi_predict import model_spec  # the model fields of both stages are the same

VERSION = "1"
CURVE_COLUMNS = ("unit", "epoch", "steps", "lr", "train_loss", "val_loss", "best")


@dataclass(frozen=True)
class HSITrainConfig:
    """Parameters of the hsi-train stage (recipe: HSI paper; open choices: docs/hsi.md)."""

    mode: Literal["pretrain", "finetune"] = field("pretrain", "pretrain on pseudo labels (best epoch on validation) or k-fold finetune on HSB.")
    folds: int = field(5, "finetune: cross-validation folds, one shard task each (paper: 5); every fold must hold every class.")
    val_fraction: float = field(0.1, "pretrain without a val input: share of training images held out for validation (seeded).")
    clip_weights: str = field(RANDOM, "CLIP start weights without an init input (open_clip state dict, e.g. converted OpenAI RN50), or 'random'.")
    clip_model: str = field("RN50-quickgelu", "open_clip config; OpenAI's RN50 weights need RN50-quickgelu (QuickGELU).")
    dense: Literal["denseclip", "maskclip"] = field("denseclip", "Dense embedding z: denseclip or maskclip.")
    features: tuple[str, ...] = field(FEATURES, "Decoder inputs, a subset of u4,u5,z,a in order; u4,u5,z = no-text baseline.")
    prompt: str = field("a photo of a {label}", "Prompt template of the label (HSI paper).")
    decoder_channels: int = field(256, "Channels after the decoder's 3x3 conv (our choice).")
    image_size: int = field(224, "Input and output side in pixels (paper: 224; smaller for smoke runs).")
    epochs: int = field(PAPER_EPOCHS, "Epochs (paper: 20).")
    lr: float = field(PAPER_LR, "Adam learning rate (paper: 1e-4).")
    decay_epoch: int = field(PAPER_DECAY_EPOCH, "Epochs before the learning rate is multiplied by decay_factor (paper: 10; 0 = never).")
    decay_factor: float = field(PAPER_DECAY_FACTOR, "Learning-rate decay factor (paper: divided by 10).")
    batch_size: int = field(8, "Samples per Adam step (not given by the paper; our choice).")
    loss_weights: tuple[float, ...] = field(LOSS_WEIGHTS, "λ for KL, CC, NSS (paper: 1,-1,-1).")
    trainable: Literal["all", "decoder"] = field("all", "Parameters trained: all (CLIP and decoder) or the decoder only (CLIP frozen).")
    label_field: str = field("label", "Key of the label in each sample's meta.json.")
    shuffle_buffer: int = field(1000, "Shuffle buffer, samples (shard order is shuffled too).")
    checkpoint_every: int = field(200, "Checkpoint every N steps (0 = only at epoch ends, which always happen).")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


PRESETS = {
    # seconds on a CPU: 64 px, decoder only, 2 epochs of batch 2
    "smoke": {"image_size": 64, "trainable": "decoder", "epochs": 2, "batch_size": 2, "decay_epoch": 1, "checkpoint_every": 1},
}


@dataclass(frozen=True)
class DataIndex:
    """The usable labelled samples of an artifact, from one pass over its meta.json files."""

    labels: dict[str, str]  # key -> label
    images: dict[str, str]  # key -> source image (groups the labels of one image for the validation split)
    unlabelled: int  # samples without a label (passive hsi-labels samples), passed over
    excluded: tuple[tuple[str, str, str], ...]  # (key, source, reason) of unusable samples


def _check(config: HSITrainConfig, inputs: dict[str, str]) -> None:
    if config.epochs < 1 or config.batch_size < 1 or config.shuffle_buffer < 1 or config.checkpoint_every < 0:
        raise ValueError("need epochs >= 1, batch_size >= 1, shuffle_buffer >= 1 and checkpoint_every >= 0")
    if len(config.loss_weights) != 3:
        raise ValueError(f"loss_weights needs 3 values (KL, CC, NSS), got {list(config.loss_weights)}")
    if config.mode == "pretrain" and inputs.get("init"):
        raise ValueError("the init input is for --mode finetune (the pretrain output that starts the folds)")
    if config.mode == "finetune" and inputs.get("val"):
        raise ValueError("--mode finetune validates on the held-out folds; it takes no val input")
    if config.mode == "pretrain" and not inputs.get("val") and not 0 < config.val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1) without a val input, got {config.val_fraction}")
    if inputs.get("init") and config.clip_weights != RANDOM:
        raise ValueError("give either the init input (a whole pretrained HSI model) or --clip-weights, not both")


def scan(artifact: Artifact, config: HSITrainConfig) -> DataIndex:
    """Which samples of `artifact` can be trained on; the others are excluded with the reason."""
    needed = ("image.png", "saliency.npy", "meta.json") + (("fixations.npy",) if config.loss_weights[2] else ())
    labels, images, unlabelled, excluded = {}, {}, 0, []
    for shard in artifact.manifest.shards:
        for sample in artifact.samples(shard.name, decode=False):
            key, source = sample["__key__"], f"{artifact.storage.uri}/{shard.name}"
            meta = json.loads(sample["meta.json"]) if "meta.json" in sample else {}
            label = meta.get(config.label_field)
            if "meta.json" in sample and label is None:
                unlabelled += 1
                continue
            missing = [f for f in needed if f not in sample]
            if missing or not isinstance(label, str) or not label.strip():
                reason = f"sample lacks {missing}" if missing else f"label {label!r} is not a non-empty string"
                excluded.append((key, source, f"{reason}; a training sample needs {list(needed)} and a label"))
                continue
            labels[key], images[key] = label, str(meta.get("image", key))
    return DataIndex(labels, images, unlabelled, tuple(excluded))


def holdout(index: DataIndex, fraction: float, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training keys, validation keys): ceil(fraction x images) source images held out, drawn by the stream ("holdout",)."""
    groups = sorted(set(index.images.values()))
    if len(groups) < 2:
        raise StageError(f"a validation split needs at least 2 source images, the training set has {len(groups)}; give a val input")
    count = min(len(groups) - 1, max(1, math.ceil(fraction * len(groups))))
    chosen = {groups[int(i)] for i in numpy_generator(seed, "holdout").permutation(len(groups))[:count]}
    val = tuple(sorted(k for k, g in index.images.items() if g in chosen))
    return tuple(sorted(k for k in index.labels if k not in set(val))), val


def _units(config: HSITrainConfig, index: DataIndex, val: DataIndex | None) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """unit -> (training keys, validation keys)."""
    if config.mode == "pretrain":
        if val is not None:
            return {"pretrain": (tuple(sorted(index.labels)), tuple(sorted(val.labels)))}
        return {"pretrain": holdout(index, config.val_fraction, config.seed)}
    try:
        assignment = assign_folds(index.labels, config.folds, config.seed)
    except ValueError as e:
        raise StageError(f"cannot split the training set into {config.folds} folds: {e}") from None
    return {f"fold-{k}": fold_split(assignment, k) for k in range(config.folds)}


def _start(inputs: dict[str, str], config: HSITrainConfig) -> tuple[dict, dict | None, dict | None, list[str]]:
    """(input specs, whole start state dict or None, CLIP start state dict or None, warnings)."""
    from saliencylab.training.hsi_session import trained_weights  # deferred: torch, not needed by --help

    if inputs.get("init"):
        state, artifact = trained_weights(inputs["init"], "best")
        if artifact.manifest.params.get("mode") != "pretrain":
            raise ValueError(f"the init input {inputs['init']} is a {artifact.manifest.params.get('mode')} output; give a pretrain output")
        return {"init": artifact.input_spec}, state, None, list(artifact.manifest.warnings)
    clip = load_weights(config.clip_weights)
    what = "CLIP and the decoder" if clip is None else "the decoder"
    return {}, None, clip, [random_weights_warning("hsi-train", f"{what} (started from random weights)")]


def prepare(inputs: dict[str, str], config: HSITrainConfig, out: Storage) -> Prepared:
    from saliencylab.training.hsi_session import UnitPlan, run_unit  # deferred: torch, not needed by --help
    from saliencylab.training.loop import NonFiniteLossError

    _check(config, inputs)
    model_spec(config)  # refuses a bad model configuration before anything is read
    train = open_artifact(inputs["train"])
    val_artifact = open_artifact(inputs["val"]) if inputs.get("val") else None
    index = scan(train, config)
    val_index = scan(val_artifact, config) if val_artifact else None
    for artifact, found in ((train, index), (val_artifact, val_index)):
        if found is not None and not found.labels:
            raise StageError(
                f"no labelled training sample in {artifact.storage.uri} ({len(found.excluded)} unusable, "
                f"{found.unlabelled} unlabelled); docs/hsi.md lists the fields a sample needs"
            )
    units = _units(config, index, val_index)
    specs, start, clip_start, warnings = _start(inputs, config)
    specs = {"train": train.input_spec} | ({"val": val_artifact.input_spec} if val_artifact else {}) | specs
    params = config_to_dict(config)
    run = sha256_hex(canonical_json({"stage_version": VERSION, "params": params, "inputs": {k: v["digest"] for k, v in specs.items()}}))
    excluded = index.excluded + (val_index.excluded if val_index else ())
    if excluded:
        warnings.append(f"hsi-train: {len(excluded)} samples cannot be trained on (quarantined), e.g. {[e[0] for e in excluded[:5]]}")

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (unit,) = task.items
        if task.index == 0:
            for key, source, reason in excluded:
                policy.record(key, source, ValueError(reason))
        train_keys, val_keys = units[unit]
        plan = UnitPlan(
            unit=unit, run=run, output_uri=out.uri, train_uri=train.storage.uri,
            val_uri=(val_artifact or train).storage.uri, train_keys=train_keys, val_keys=val_keys,
            spec=model_spec(config), start=start, clip_start=clip_start,
            loss_weights=tuple(config.loss_weights), keep_best=config.mode == "pretrain", **{k: params[k] for k in (
                "epochs", "lr", "decay_epoch", "decay_factor", "batch_size", "trainable", "label_field",
                "shuffle_buffer", "checkpoint_every", "seed", "device")},
        )  # fmt: skip
        try:
            epochs = run_unit(plan, on_record=_progress)
        except NonFiniteLossError as e:
            raise StageError(f"{unit}: {e}. Its last checkpoint under {out.uri}/{unit}/ is intact; lower lr or check those samples") from None
        about = {"unit": unit, "train": len(train_keys), "validation": len(val_keys)}
        if config.mode == "finetune":
            about["held_out"] = list(val_keys)
        return [{"__key__": unit, "unit.json": about}] + [{"__key__": f"{unit}-e{e['epoch']:03d}", "curve.json": e} for e in epochs]

    tasks = tuple(ShardTask(i, shard_name(i), (unit,), expected=config.epochs + 1) for i, unit in enumerate(units))  # unit.json + epochs
    return Prepared(specs, tasks, process, tuple(list(train.manifest.warnings) + warnings))


def _progress(record: dict[str, Any]) -> None:
    if record["step"] % 20 == 0:
        print(canonical_json({"stage": "hsi-train", **{k: record[k] for k in ("unit", "epoch", "step", "loss")}}).decode(), file=sys.stderr)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """curves.csv, folds.json (finetune) and the summary: weights per unit, selection, folds, epochs, recipe, model."""
    from saliencylab.training.hsi_session import BEST, LAST  # deferred: the module imports torch

    config = HSITrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in request.params.items()})
    samples = [s for record in records for s in read_shard(out.read_bytes(record.name), record.name)]
    curves = [s["curve.json"] for s in samples if "curve.json" in s]
    units = {s["unit.json"]["unit"]: s["unit.json"] for s in samples if "unit.json" in s}
    if config.mode == "pretrain":
        weights = {"best": f"pretrain/{BEST}", "last": f"pretrain/{LAST}"}
        best = min(curves, key=lambda c: (c["val_loss"], c["epoch"]))
        selection = {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"]}
    else:
        weights = {unit: f"{unit}/{LAST}" for unit in units}
        selection = {"per_fold": "last epoch (the held-out fold is the test set)"}
    recipe = ("epochs", "lr", "decay_epoch", "decay_factor", "batch_size", "loss_weights", "trainable", "seed")
    summary = {
        "mode": config.mode,
        "model": asdict(model_spec(config)) | {"features": list(config.features)},
        "start": "init input (best)" if "init" in request.inputs else {"clip_weights": config.clip_weights},
        "recipe": {k: request.params[k] for k in recipe},
        "weights": weights,
        "selection": selection,
        "units": {unit: {"train": about["train"], "validation": about["validation"]} for unit, about in units.items()},
        "epochs": curves,
        "curves": "curves.csv",
    }
    files = {"curves.csv": csv_bytes(curves, CURVE_COLUMNS)}
    if config.mode == "finetune":
        folds = {key: int(unit.removeprefix("fold-")) for unit, about in units.items() for key in about["held_out"]}
        sizes = [units[f"fold-{k}"]["validation"] for k in range(config.folds)]
        summary["folds"] = {"file": "folds.json", "count": config.folds, "seed": config.seed, "sizes": sizes}
        files["folds.json"] = canonical_json(dict(sorted(folds.items())))
    return summary, files


JOB = Job(
    spec=get_stage("hsi-train"), version=VERSION, config_cls=HSITrainConfig, prepare=prepare,
    presets=PRESETS, finalize=finalize, prepare_takes_output=True,
)  # fmt: skip
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
