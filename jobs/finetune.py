"""Stage `finetune`: Faster R-CNN fine-tuned on a training-set artifact -> weights per epoch, final weights, curves.

Input `train`: a training-set artifact (`ingest --resize none`, or the output of erase, inpaint or
augment). One shard task per epoch; epoch e's shard holds one sample per optimizer step,
`e<epoch>-i<iteration>` with `loss.json` (lr, the four Faster R-CNN losses and their sum, the
batch's sample keys). While an epoch runs, checkpoints go to `checkpoints/` in the output (every
`checkpoint_every` iterations and at each epoch end), so a killed run resumes where it stopped.
Next to the shards: `weights/epoch-<n>.safetensors` and, at merge, `weights/final.safetensors`,
`curves.csv` (per iteration) and `epochs.csv` (per epoch). The summary lists the weights (what
`weights.load_finetuned` reads), the classes, the resolved recipe and the data counters.
Design, recipe and cost: docs/finetune.md.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import typer

from saliencylab.artifacts import open_artifact
from saliencylab.config import config_to_dict, field
from saliencylab.csvfiles import csv_bytes
from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP
from saliencylab.shards import read_shard, shard_name
from saliencylab.stages import get_stage
from saliencylab.storage import Storage
from saliencylab.training import defaults as paper
from saliencylab.training.defaults import ARCHITECTURE_NAMES, LOSS_NAMES, PAPER_ARCHITECTURE, TORCHVISION_MAX_SIZE, TORCHVISION_MIN_SIZE
from saliencylab.weights import FINETUNE_FINAL, RANDOM

from jobs.common import Job, Prepared, stage_command

if TYPE_CHECKING:
    import torch

    from saliencylab.training.recipe import Recipe

VERSION = "1"
FINAL_WEIGHTS = "weights/final.safetensors"
CURVE_COLUMNS = ("epoch", "iteration", "global_step", "lr", "images", *LOSS_NAMES, "loss")


@dataclass(frozen=True)
class FinetuneConfig:
    """Parameters of the finetune stage (defaults: the paper's recipe, research notes §1.5)."""

    architecture: str = field(PAPER_ARCHITECTURE, f"Detector: {', '.join(ARCHITECTURE_NAMES)} (paper: the first).")
    weights: str = field(RANDOM, "COCO weights of the architecture: path, s3:// URI, torchvision:<Weights>.<NAME> in the cache, or 'random'.")
    min_size: int = field(TORCHVISION_MIN_SIZE, "Shorter image side after the model's internal resize, pixels (torchvision: 800).")
    max_size: int = field(TORCHVISION_MAX_SIZE, "Longest image side after the internal resize, pixels (torchvision: 1333).")
    epochs: int = field(paper.PAPER_EPOCHS, "Epochs (paper: 5).")
    lr: float = field(paper.PAPER_LR, "SGD learning rate for the global batch (paper: 0.005).")
    momentum: float = field(paper.PAPER_MOMENTUM, "SGD momentum (paper: 0.9).")
    weight_decay: float = field(paper.PAPER_WEIGHT_DECAY, "SGD weight decay (paper: 5e-4).")
    lr_step: int = field(paper.PAPER_LR_STEP, "StepLR: epochs between learning-rate decays (paper: 2).")
    lr_gamma: float = field(paper.PAPER_LR_GAMMA, "StepLR decay factor (paper: 0.1).")
    batch_size: int = field(paper.PAPER_BATCH_SIZE, "Images per optimizer step over all processes (paper: 4).")
    warmup: bool = field(True, "torchvision reference warm-up in epoch 0 (the paper's code ran it).")
    warmup_factor: float = field(paper.REFERENCE_WARMUP_FACTOR, "Warm-up start factor (reference: 0.001).")
    warmup_iters: int = field(paper.REFERENCE_WARMUP_ITERS, "Warm-up length cap, iterations (reference: min(1000, iterations-1)).")
    difficult: Literal["keep", "drop"] = field("keep", "Difficult objects: keep as ground truth (paper) or drop from the targets.")
    outside: Literal["clip", "drop"] = field("clip", "Boxes reaching outside the image: clip to it, or drop (degenerate boxes are always dropped).")
    empty_images: Literal["keep", "skip"] = field("keep", "Images without a box (after cleaning): keep as negatives, or skip.")
    shuffle_buffer: int = field(1000, "Shuffle buffer, samples (shard order is shuffled too).")
    checkpoint_every: int = field(500, "Checkpoint every N iterations (0 = only at epoch ends, which always happen).")
    processes: int = field(1, "Processes (one per GPU) sharing each batch with DistributedDataParallel; must equal torchrun's WORLD_SIZE.")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N]; under torchrun each process takes cuda:LOCAL_RANK.")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


PRESETS = {
    # the paper's run: COCO R50-FPN from the local torchvision cache, recipe as above
    "paper": {"architecture": "fasterrcnn_resnet50_fpn", "weights": "torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1"},
    # seconds on a CPU: the tiny test detector (random weights) at 128 px, 2 epochs of batch 2
    "smoke": {"architecture": "fasterrcnn_tiny", "min_size": 128, "max_size": 128, "epochs": 2, "batch_size": 2, "checkpoint_every": 2},
}


def recipe_of(config: FinetuneConfig) -> Recipe:
    from saliencylab.training.recipe import Recipe  # deferred, as everything that imports torch: --help must not

    fields = ("epochs", "lr", "momentum", "weight_decay", "lr_step", "lr_gamma", "batch_size", "warmup", "warmup_factor", "warmup_iters")
    return Recipe(**{name: getattr(config, name) for name in fields})


def run_fingerprint(params: dict[str, Any], train_digest: str) -> str:
    """What a checkpoint must belong to: this stage version, these params, this training set."""
    return sha256_hex(canonical_json({"stage_version": VERSION, "params": params, "train": train_digest}))


def _check(config: FinetuneConfig) -> torch.device:
    import torch

    from saliencylab.devices import pick_device
    from saliencylab.training.model import get_architecture

    get_architecture(config.architecture)
    device = pick_device(config.device)
    if config.processes < 1 or config.batch_size % config.processes:
        raise ValueError(f"processes must be >= 1 and divide batch_size (the global batch); got processes={config.processes}, batch_size={config.batch_size}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if config.processes != world_size:
        raise ValueError(
            f"processes={config.processes} but this is one of {world_size} processes; start N processes with "
            f"`torchrun --standalone --nproc-per-node=N --no-python saliencylab finetune ... --processes N`"
        )
    if device.type == "cuda" and config.processes > torch.cuda.device_count():
        raise ValueError(f"processes={config.processes} needs as many GPUs; this node has {torch.cuda.device_count()}")
    if config.shuffle_buffer < 1 or config.checkpoint_every < 0 or config.min_size < 1 or config.max_size < config.min_size:
        raise ValueError("need shuffle_buffer >= 1, checkpoint_every >= 0 and 1 <= min_size <= max_size")
    return device


def prepare(inputs: dict[str, str], config: FinetuneConfig, out: Storage) -> Prepared:
    from saliencylab.training.checkpoint import LATEST_KEY, checkpoint_position
    from saliencylab.training.distributed import Group, join_group
    from saliencylab.training.loop import NonFiniteLossError
    from saliencylab.training.session import TrainingPlan, finished_epoch, run_epoch, scan_training_set, write_index
    from saliencylab.training.stream import iterations_per_epoch

    train = open_artifact(inputs["train"])
    if train.manifest.num_samples == 0:
        raise StageError(f"the training set {train.storage.uri} has no images; nothing to fine-tune on")
    device = _check(config)
    group = join_group(device.type) if config.processes > 1 else Group()
    plan = TrainingPlan(
        train_uri=train.storage.uri,
        output_uri=out.uri,
        run=run_fingerprint(config_to_dict(config), train.digest),
        recipe=recipe_of(config),
        device=str(device) if config.processes == 1 else device.type,  # each process takes cuda:LOCAL_RANK
        **{k: getattr(config, k) for k in ("architecture", "weights", "min_size", "max_size", "difficult", "outside",
                                             "empty_images", "shuffle_buffer", "checkpoint_every", "seed")},
    )  # fmt: skip

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (epoch,) = task.items
        index = None
        if epoch == 0 or not _index_ok(out, plan.run):  # epoch 1 always checks, so its part lists the bad items
            index = scan_training_set(train, plan, policy.record if epoch == 0 else lambda *a: None)
            if iterations_per_epoch(len(index.keys), config.batch_size, config.processes) == 0:
                raise StageError(
                    f"{train.storage.uri}: {len(index.keys)} usable training image(s) among {index.samples} samples "
                    f"({index.skipped_empty} without boxes skipped by empty_images=skip, {len(index.excluded)} bad); "
                    f"{config.processes} process(es) need at least as many"
                )
        records = finished_epoch(out, plan.run, epoch)  # read, without collectives: rank 0 may have skipped it
        if records is None:
            if index is not None and group.is_main:
                write_index(out, plan.run, index)
            group.barrier()
            try:
                records = run_epoch(plan, epoch, group, on_record=_progress if group.is_main else lambda r: None)
            except NonFiniteLossError as e:
                kept = f"the last good checkpoint ({out.uri}/{LATEST_KEY}) is intact" if checkpoint_position(out, plan.run) else "no checkpoint was written yet"
                raise StageError(f"{e}. Stopped before that step; {kept}. Lower lr or check those samples") from None
        return [{"__key__": f"e{r['epoch']:03d}-i{r['iteration']:06d}", "loss.json": r} for r in records]

    warnings = list(train.manifest.warnings)
    if config.weights == RANDOM:
        warnings.append(f"finetune: {config.architecture} started from RANDOM weights, not COCO; its detections and maps mean nothing")
    tasks = tuple(ShardTask(e, shard_name(e), (e,)) for e in range(config.epochs))
    return Prepared({"train": train.input_spec}, tasks, process, tuple(warnings), follower=not group.is_main)


def _index_ok(out: Storage, run: str) -> bool:
    from saliencylab.training.session import read_index

    try:
        read_index(out, run)
    except ValueError:
        return False
    return True


def _progress(record: dict[str, Any]) -> None:
    if record["iteration"] % 20 == 0:
        print(canonical_json({"stage": "finetune", "epoch": record["epoch"], "iteration": record["iteration"], "loss": record["loss"]}).decode(), file=sys.stderr)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Final weights, curves.csv and epochs.csv; the summary with the weights, recipe and data counters."""
    from saliencylab.training.recipe import warmup_length
    from saliencylab.training.session import read_index, weights_key
    from saliencylab.training.stream import iterations_per_epoch
    from saliencylab.training.targets import NUM_CLASSES, VOC_LABEL_IDS

    config = FinetuneConfig(**request.params)
    rows = [s["loss.json"] for record in records for s in read_shard(out.read_bytes(record.name), record.name)]
    epochs = []
    for epoch in range(config.epochs):
        mine = [r for r in rows if r["epoch"] == epoch + 1]
        means = {name: sum(r[name] for r in mine) / len(mine) for name in (*LOSS_NAMES, "loss")}
        epochs.append({"epoch": epoch + 1, "iterations": len(mine), "lr_first": mine[0]["lr"], "lr_last": mine[-1]["lr"]} | means)
    index = read_index(out, run_fingerprint(request.params, request.inputs["train"]["digest"]))
    recipe = recipe_of(config)
    per_epoch = iterations_per_epoch(len(index.keys), recipe.batch_size, config.processes)
    weights = {FINETUNE_FINAL: FINAL_WEIGHTS} | {f"epoch-{e + 1}": weights_key(e) for e in range(config.epochs)}
    summary = {
        "architecture": config.architecture,
        "num_classes": NUM_CLASSES,
        "classes": ["__background__", *VOC_LABEL_IDS],  # index = label id
        "input_size": {"min_size": config.min_size, "max_size": config.max_size},
        "start_weights": config.weights,
        "weights": weights,
        "recipe": asdict(recipe) | {"iterations_per_epoch": per_epoch, "warmup_iterations": warmup_length(recipe, per_epoch), "processes": config.processes},
        "data": index.summary(),
        "epochs": epochs,
        "curves": {"iterations": "curves.csv", "epochs": "epochs.csv"},
    }
    files = {
        FINAL_WEIGHTS: out.read_bytes(weights_key(config.epochs - 1)),
        "curves.csv": csv_bytes(rows, CURVE_COLUMNS),
        "epochs.csv": csv_bytes(epochs, ("epoch", "iterations", "lr_first", "lr_last", *LOSS_NAMES, "loss")),
    }
    return summary, files


JOB = Job(
    spec=get_stage("finetune"), version=VERSION, config_cls=FinetuneConfig, prepare=prepare,
    presets=PRESETS, finalize=finalize, prepare_takes_output=True,
)  # fmt: skip
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
