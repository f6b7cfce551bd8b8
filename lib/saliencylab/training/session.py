"""One epoch of fine-tuning against storage: the data index, state from the last checkpoint, the loop, checkpoints.

`run_epoch(plan, epoch, group)` is what a single process runs, and what each process of a
`torchrun` launch runs in step with the others. It reads the training artifact shard by shard, continues
from `checkpoints/latest.json` when there is one, and writes (main process only):

    checkpoints/...                    every `checkpoint_every` iterations and at the end of the epoch
    weights/epoch-<e>.safetensors      the model after epoch e (1-based in the name)
    curves/epoch-<e>.json              the epoch's per-iteration records and data counters

An epoch already finished (the checkpoint is past it) is not rerun: its records are read back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.devices import pick_device
from saliencylab.manifests import canonical_json
from saliencylab.seeding import derive_seed
from saliencylab.shards import decode_field
from saliencylab.storage import Storage, open_storage
from saliencylab.training.checkpoint import (
    Checkpoint,
    Position,
    checkpoint_position,
    encode_weights,
    load_checkpoint,
    model_state,
    save_checkpoint,
)
from saliencylab.training.distributed import Group
from saliencylab.training.loop import train_step
from saliencylab.training.model import build_finetune_model
from saliencylab.training.recipe import Recipe, build_optimizer, learning_rate, set_learning_rate
from saliencylab.training.stream import epoch_stream, global_batches, iterations_per_epoch
from saliencylab.training.targets import NUM_CLASSES, VOC_LABEL_IDS, BoxCounts, build_target
from saliencylab.weights import load_weights

INDEX_KEY = "data/index.json"


@dataclass(frozen=True)
class TrainingPlan:
    """Everything an epoch needs, resolved from the stage's parameters and inputs."""

    train_uri: str  # the training-set artifact
    output_uri: str  # where checkpoints, weights and curves go
    run: str  # fingerprint of params + input digest: checkpoints of another run are ignored
    architecture: str
    weights: str  # COCO-layout weights spec (weights.py) or "random"
    min_size: int
    max_size: int
    recipe: Recipe
    difficult: str  # keep | drop (targets.py)
    outside: str  # clip | drop
    empty_images: str  # keep (negatives) | skip
    shuffle_buffer: int
    checkpoint_every: int  # iterations; 0 = only at epoch ends
    seed: int
    device: str


@dataclass(frozen=True)
class DataIndex:
    """The usable samples of a training set, found by one pass over its meta.json files."""

    keys: tuple[str, ...]  # trained on, sorted
    samples: int  # in the artifact
    negatives: int  # usable images without a box (kept as negatives)
    skipped_empty: int  # images without a box, skipped (empty_images="skip")
    excluded: tuple[str, ...]  # bad items (quarantined with --on-error skip)
    boxes: BoxCounts

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "keys"} | {"images": len(self.keys)}


def _sample_size(sample: dict[str, Any], meta: dict[str, Any]) -> tuple[int, int]:
    if "size" in meta:
        return int(meta["size"][0]), int(meta["size"][1])
    image = decode_field("image.png", sample["image.png"])
    return int(image.shape[0]), int(image.shape[1])


def scan_training_set(artifact: Artifact, plan: TrainingPlan, record: Callable[[str, str, Exception], None]) -> DataIndex:
    """Check every sample's fields and labels and count what box cleaning will do; bad items go to `record`."""
    keys, excluded, negatives, skipped, samples, boxes = [], [], 0, 0, 0, BoxCounts()
    for shard in artifact.manifest.shards:
        for sample in artifact.samples(shard.name, decode=False):
            samples += 1
            key = sample["__key__"]
            try:
                missing = [f for f in ("image.png", "meta.json") if f not in sample]
                if missing:
                    raise ValueError(f"sample has no {missing}; a training set needs image.png and meta.json")
                meta = json.loads(sample["meta.json"])
                target = build_target(meta, _sample_size(sample, meta), difficult=plan.difficult, outside=plan.outside)
            except ValueError as e:
                excluded.append(key)
                record(key, f"{artifact.storage.uri}/{shard.name}", e)
                continue
            boxes = boxes + target.counts
            if target.counts.kept == 0 and plan.empty_images == "skip":
                skipped += 1
                continue
            negatives += target.counts.kept == 0
            keys.append(key)
    return DataIndex(tuple(sorted(keys)), samples, negatives, skipped, tuple(sorted(excluded)), boxes)


def write_index(out: Storage, run: str, index: DataIndex) -> None:
    out.write_bytes(INDEX_KEY, canonical_json({"run": run, "index": asdict(index)}))


def read_index(out: Storage, run: str) -> DataIndex:
    """The index written by `write_index` for `run`; ValueError if it is missing or from another run."""
    body = json.loads(out.read_bytes(INDEX_KEY)) if out.exists(INDEX_KEY) else {}
    if body.get("run") != run:
        raise ValueError(f"{out.uri}/{INDEX_KEY} is missing or belongs to another run; rerun the stage")
    index = body["index"]
    return DataIndex(**{**index, "keys": tuple(index["keys"]), "excluded": tuple(index["excluded"]), "boxes": BoxCounts(**index["boxes"])})


def decode_sample(sample: dict[str, Any], plan: TrainingPlan, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """An undecoded training sample -> ((3, H, W) float32 RGB in [0, 1], target dict) on `device`."""
    image = decode_field("image.png", sample["image.png"])
    meta = json.loads(sample["meta.json"])
    target = build_target(meta, image.shape[:2], difficult=plan.difficult, outside=plan.outside)
    tensor = torch.as_tensor(image.copy()).permute(2, 0, 1).to(device=device, dtype=torch.float32) / 255  # HWC -> CHW
    return tensor, {k: v.to(device) for k, v in target.as_dict().items()}


def weights_metadata(plan: TrainingPlan, epoch: int) -> dict[str, Any]:
    """Metadata of a fine-tuned model file: what is needed to rebuild the model around it."""
    return {
        "architecture": plan.architecture,
        "num_classes": NUM_CLASSES,
        "classes": list(VOC_LABEL_IDS),  # ids 1..20 in this order; 0 is the background
        "min_size": plan.min_size,
        "max_size": plan.max_size,
        "epoch": epoch + 1,
    }


def weights_key(epoch: int) -> str:
    return f"weights/epoch-{epoch + 1}.safetensors"


def curve_key(epoch: int) -> str:
    return f"curves/epoch-{epoch + 1}.json"


def finished_epoch(out: Storage, run: str, epoch: int) -> tuple[dict[str, Any], ...] | None:
    """The records of `epoch` if run `run` has finished it (its checkpoint is past it), else None."""
    position = checkpoint_position(out, run)
    if position is None or position.epoch <= epoch:
        return None
    return tuple(json.loads(out.read_bytes(curve_key(epoch)))["records"])


class _Trainer:
    """The model, optimizer and RNG of one process, restored from a checkpoint or freshly built."""

    def __init__(self, plan: TrainingPlan, group: Group, checkpoint: Checkpoint | None) -> None:
        self.plan, self.group = plan, group
        self.device = pick_device(plan.device)
        if self.device.type == "cuda" and group.world_size > 1:
            self.device = torch.device("cuda", group.local_rank)
        start = None if checkpoint else load_weights(plan.weights)
        model = build_finetune_model(plan.architecture, start, min_size=plan.min_size, max_size=plan.max_size, seed=plan.seed)
        if checkpoint:
            load_state_dict_strict(model, checkpoint.model)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, plan.recipe)
        if checkpoint:
            self.optimizer.load_state_dict(checkpoint.optimizer)
        self.network = self.model
        if group.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    def restore_rng(self, checkpoint: Checkpoint | None) -> None:
        """Set this process's torch RNG (the RPN and ROI samplers draw from it) from the checkpoint or the seed."""
        if checkpoint is None:
            torch.manual_seed(derive_seed(self.plan.seed, "sampling", self.group.rank))
            return
        torch.set_rng_state(checkpoint.rng_cpu[self.group.rank])
        if self.device.type == "cuda" and checkpoint.rng_cuda:
            torch.cuda.set_rng_state(checkpoint.rng_cuda[self.group.rank], self.device)

    def save(self, out: Storage, position: Position) -> None:
        """A checkpoint at `position` (a collective: every process calls it; the main one writes)."""
        rng_cpu = self.group.gather(torch.get_rng_state(), self.device if self.device.type == "cuda" else torch.device("cpu"))
        rng_cuda = self.group.gather(torch.cuda.get_rng_state(self.device), self.device) if self.device.type == "cuda" else []
        if self.group.is_main:
            save_checkpoint(out, self.plan.run, position, self.model, self.optimizer, rng_cpu, rng_cuda)
        self.group.barrier()


def run_epoch(
    plan: TrainingPlan, epoch: int, group: Group = Group(), on_record: Callable[[dict[str, Any]], None] = lambda r: None
) -> tuple[dict[str, Any], ...]:
    """Train epoch `epoch` (0-based) from the last checkpoint, or return its records if it is done.

    Returns the epoch's per-iteration records: epoch, iteration, global_step, lr, images, keys
    (the whole global batch) and the losses averaged over processes (loop.LOSS_NAMES and "loss").

    Raises:
        ValueError: when an earlier epoch is not finished, or the data index is missing.
        NonFiniteLossError: the loss became NaN/inf; the last checkpoint is left as it was.
    """
    out, train = open_storage(plan.output_uri), open_artifact(plan.train_uri)
    done = finished_epoch(out, plan.run, epoch)
    if done is not None:
        return done
    index = read_index(out, plan.run)
    checkpoint = load_checkpoint(out, plan.run)
    position = checkpoint.position if checkpoint else Position(0, 0, 0)
    if position.epoch < epoch:
        raise ValueError(f"epoch {epoch + 1} needs epoch {position.epoch + 1} finished first; finetune cannot be split with --shard")
    trainer = _Trainer(plan, group, checkpoint)
    total = iterations_per_epoch(len(index.keys), plan.recipe.batch_size, group.world_size)
    usable = frozenset(index.keys)
    stream = epoch_stream(
        [s.name for s in train.manifest.shards],
        lambda shard: train.samples(shard, decode=False),
        usable.__contains__,
        seed=plan.seed,
        epoch=epoch,
        buffer=plan.shuffle_buffer,
    )
    records, step = list(position.curve), position.global_step
    cuda = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        trainer.restore_rng(checkpoint)
        for iteration, batch in global_batches(stream, plan.recipe.batch_size, total, start=position.iteration):
            pairs = [decode_sample(s, plan, trainer.device) for s in batch[group.rank :: group.world_size]]
            lr = learning_rate(plan.recipe, epoch, iteration, total)
            set_learning_rate(trainer.optimizer, lr)
            keys = [s["__key__"] for s in batch]
            losses = train_step(
                trainer.network, trainer.optimizer, [p[0] for p in pairs], [p[1] for p in pairs],
                iteration=step, keys=keys, average=group.average,
            )  # fmt: skip
            step += 1
            record = {"epoch": epoch + 1, "iteration": iteration, "global_step": step, "lr": lr, "images": len(batch), "keys": keys}
            records.append(record | losses)
            on_record(records[-1])
            if plan.checkpoint_every and (iteration + 1) % plan.checkpoint_every == 0 and iteration + 1 < total:
                trainer.save(out, Position(epoch, iteration + 1, step, tuple(records)))
        if group.is_main:
            out.write_bytes(weights_key(epoch), encode_weights(model_state(trainer.model), weights_metadata(plan, epoch)))
            out.write_bytes(curve_key(epoch), canonical_json({"epoch": epoch + 1, "iterations": total, "records": records}))
        trainer.save(out, Position(epoch + 1, 0, step))
    return tuple(records)

