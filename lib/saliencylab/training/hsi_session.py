"""One HSI training unit against storage (pre-training, or one cross-validation fold): resumable from its checkpoints.

`run_unit(plan)` trains one model from its start weights (or its last checkpoint) for
`plan.epochs` epochs and writes, under `<output>/<plan.unit>/` (e.g. `pretrain/`, `fold-2/`):

    checkpoints/...                 (training/checkpoint.py) every `checkpoint_every` steps and at
                                    each epoch end: the trained part of the model (all, or only
                                    the decoder: the frozen CLIP is rebuilt from the start
                                    weights), Adam state, torch RNG, position
    curves/epoch-<e>.json           the epoch's per-step records and its summary (train and
                                    validation loss, lr)
    weights/best.safetensors        the model of the epoch with the lowest validation loss so far
                                    (with `keep_best`)
    weights/last.safetensors        the model after the last epoch

The learning rate is a closed form of the epoch (hsi/training.py), so the position is the
scheduler state. The data order of an epoch is a pure function of (seed, unit, epoch), so a run
killed anywhere and resumed writes the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.devices import pick_device
from saliencylab.hsi.clip_weights import load_clip_state, load_hsi_state
from saliencylab.hsi.model import HSIModel, HSISpec, build_hsi_model
from saliencylab.hsi.training import FrozenText, batch_loss, learning_rate, resize_fixations, train_step, trainable_parameters
from saliencylab.images import resize
from saliencylab.manifests import canonical_json
from saliencylab.metrics import resize_to
from saliencylab.seeding import derive_seed
from saliencylab.shards import decode_field
from saliencylab.storage import Storage, open_storage
from saliencylab.training.checkpoint import Position, encode_weights, load_checkpoint, model_state, save_checkpoint
from saliencylab.training.recipe import set_learning_rate
from saliencylab.training.stream import epoch_stream, global_batches, iterations_per_epoch

BEST, LAST = "weights/best.safetensors", "weights/last.safetensors"
TRAINING_FIELDS = ("image.png", "saliency.npy", "fixations.npy", "meta.json")  # what a training sample carries


@dataclass(frozen=True)
class UnitPlan:
    """Everything one training unit needs, resolved from the stage's parameters and inputs."""

    unit: str  # "pretrain" or "fold-<k>": the output subfolder of this unit
    run: str  # fingerprint of params + inputs: checkpoints of another run are ignored
    output_uri: str
    train_uri: str  # artifact of the training samples
    val_uri: str  # artifact of the validation samples (may be the training artifact)
    train_keys: tuple[str, ...]
    val_keys: tuple[str, ...]
    spec: HSISpec
    start: dict[str, torch.Tensor] | None  # a whole HSI state dict to start from, or None (seeded init)
    clip_start: dict[str, torch.Tensor] | None  # CLIP weights for a fresh decoder (used when start is None)
    epochs: int
    lr: float
    decay_epoch: int  # 0-based epoch from which lr * decay_factor (0 = never)
    decay_factor: float
    batch_size: int
    loss_weights: tuple[float, float, float]
    trainable: str  # "all" | "decoder"
    keep_best: bool  # write weights/best.safetensors whenever the validation loss improves
    label_field: str  # key of the label in meta.json
    shuffle_buffer: int
    checkpoint_every: int  # steps; 0 = only at epoch ends
    seed: int
    device: str


def weights_metadata(plan: UnitPlan, epoch: int) -> dict[str, Any]:
    """What is needed to rebuild the model around a weights file."""
    return {"model": asdict(plan.spec) | {"features": list(plan.spec.features)}, "unit": plan.unit, "epoch": epoch}


def curve_key(epoch: int) -> str:
    return f"curves/epoch-{epoch + 1}.json"


def _build(plan: UnitPlan, device: torch.device) -> HSIModel:
    model = build_hsi_model(plan.spec, seed=plan.seed)
    if plan.start is not None:
        load_hsi_state(model, plan.start)
    elif plan.clip_start is not None:
        load_clip_state(model, plan.clip_start)
    return model.to(device).eval()  # eval: CLIP's BatchNorm statistics stay fixed (hsi/training.py)


def to_tensors(samples: list[dict[str, Any]], plan: UnitPlan, device: torch.device) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    """Undecoded training samples -> (images (B, 3, S, S) [0, 1], labels, maps (B, S, S), fixations (B, S, S)) on `device`.

    Images are squashed to S x S with the project's resize, maps resized bilinearly and fixations
    moved onto the S x S grid (`resize_fixations`).
    """
    side = (plan.spec.image_size, plan.spec.image_size)
    images, labels, maps, fixations = [], [], [], []
    for sample in samples:
        images.append(resize(decode_field("image.png", sample["image.png"]), side))
        saliency = torch.from_numpy(np.asarray(decode_field("saliency.npy", sample["saliency.npy"]), dtype=np.float32))
        maps.append(resize_to(saliency[None], side)[0])
        fixations.append(torch.from_numpy(resize_fixations(decode_field("fixations.npy", sample["fixations.npy"]), side)))
        labels.append(str(json.loads(sample["meta.json"])[plan.label_field]))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0  # (B, H, W, 3) -> (B, 3, H, W)
    return pixels.to(device), labels, torch.stack(maps).to(device), torch.stack(fixations).to(device)


def _samples(artifact: Artifact, keys: frozenset[str]) -> Iterator[dict[str, Any]]:
    for shard in artifact.manifest.shards:
        yield from (s for s in artifact.samples(shard.name, decode=False) if s["__key__"] in keys)


def validation_loss(model: HSIModel, plan: UnitPlan, device: torch.device, text: FrozenText | None) -> float:
    """Mean HSI loss per sample over the validation keys (no gradient)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(_samples(open_artifact(plan.val_uri), frozenset(plan.val_keys)), plan.batch_size):
            tensors = to_tensors(batch, plan, device)
            embedded = text(tensors[1]) if text else None
            total += float(batch_loss(model, *tensors, weights=plan.loss_weights, text=embedded)) * len(batch)
            count += len(batch)
    return total / count


def _batches(samples: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_epochs(out: Storage, epochs: int) -> list[dict[str, Any]]:
    """The summaries of the first `epochs` finished epochs of a unit."""
    return [json.loads(out.read_bytes(curve_key(e)))["summary"] for e in range(epochs)]


def run_unit(plan: UnitPlan, on_record: Callable[[dict[str, Any]], None] = lambda r: None) -> list[dict[str, Any]]:
    """Train (or finish training) one unit; return its per-epoch summaries.

    Each summary: epoch (1-based), steps, lr, train_loss (mean over the epoch's steps), val_loss,
    best (whether it is the best epoch so far). `on_record` sees every step's record.

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the last checkpoint is left as it was.
        ValueError: a damaged checkpoint (training/checkpoint.py) or one of another model (keys named).
    """
    out = open_storage(plan.output_uri).child(plan.unit)
    device = pick_device(plan.device)
    checkpoint = load_checkpoint(out, plan.run)
    position = checkpoint.position if checkpoint else Position(0, 0, 0)
    model = _build(plan, device)
    trained = model if plan.trainable == "all" else model.decoder  # what checkpoints hold
    if checkpoint:
        load_state_dict_strict(trained, checkpoint.model)
    optimizer = torch.optim.Adam(trainable_parameters(model, plan.trainable), lr=plan.lr)
    text = FrozenText(model) if plan.trainable == "decoder" and model.uses_text else None

    def checkpoint_at(position: Position) -> None:
        save_checkpoint(out, plan.run, position, trained, optimizer, [torch.get_rng_state()], [])  # one process; CUDA RNG unused
    if checkpoint:
        optimizer.load_state_dict(checkpoint.optimizer)
    train = open_artifact(plan.train_uri)
    summaries = read_epochs(out, position.epoch)
    total = iterations_per_epoch(len(plan.train_keys), plan.batch_size)
    order_seed = derive_seed(plan.seed, "order", plan.unit)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        if checkpoint:
            torch.set_rng_state(checkpoint.rng_cpu[0])
        else:
            torch.manual_seed(derive_seed(plan.seed, "torch", plan.unit))
        step = position.global_step
        for epoch in range(position.epoch, plan.epochs):
            lr = learning_rate(plan.lr, epoch, plan.decay_epoch, plan.decay_factor)
            set_learning_rate(optimizer, lr)
            records = list(position.curve) if epoch == position.epoch else []
            stream = epoch_stream(
                [s.name for s in train.manifest.shards],
                lambda shard: train.samples(shard, decode=False),
                frozenset(plan.train_keys).__contains__,
                seed=order_seed,
                epoch=epoch,
                buffer=plan.shuffle_buffer,
            )
            start = position.iteration if epoch == position.epoch else 0
            for iteration, batch in global_batches(stream, plan.batch_size, total, start=start):
                keys = [s["__key__"] for s in batch]
                tensors = to_tensors(batch, plan, device)
                embedded = text(tensors[1]) if text else None
                loss = train_step(model, optimizer, tensors, weights=plan.loss_weights, iteration=step, keys=keys, text=embedded)
                step += 1
                record = {"unit": plan.unit, "epoch": epoch + 1, "iteration": iteration, "step": step, "lr": lr, "loss": loss}
                records.append(record | {"keys": keys})
                on_record(records[-1])
                if plan.checkpoint_every and (iteration + 1) % plan.checkpoint_every == 0 and iteration + 1 < total:
                    checkpoint_at(Position(epoch, iteration + 1, step, tuple(records)))
            summary = _finish_epoch(out, plan, model, device, text, epoch, lr, records, summaries)
            summaries.append(summary)
            checkpoint_at(Position(epoch + 1, 0, step))
    out.write_bytes(LAST, encode_weights(model_state(model), weights_metadata(plan, plan.epochs)))
    return summaries


def _finish_epoch(
    out: Storage, plan: UnitPlan, model: HSIModel, device: torch.device, text: FrozenText | None, epoch: int, lr: float,
    records: list[dict[str, Any]], earlier: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """Validate, keep the model if it is the best so far, and write the epoch's curve file."""
    val = validation_loss(model, plan, device, text)
    best = all(val < e["val_loss"] for e in earlier)
    if best and plan.keep_best:
        out.write_bytes(BEST, encode_weights(model_state(model), weights_metadata(plan, epoch + 1)))
    train_loss = sum(r["loss"] for r in records) / len(records)
    summary = {"unit": plan.unit, "epoch": epoch + 1, "steps": len(records), "lr": lr, "train_loss": train_loss, "val_loss": val, "best": best}
    out.write_bytes(curve_key(epoch), canonical_json({"summary": summary, "records": records}))
    return summary


TRAINED_PREFIX = "hsi-train:"  # a weights spec naming an hsi-train artifact: hsi-train:<URI>[#<name>]


def trained_weights(uri: str, name: str) -> tuple[dict[str, torch.Tensor], Artifact]:
    """The whole HSI state dict called `name` (e.g. "best", "fold-2") of the finished `hsi-train` artifact at `uri`.

    Raises:
        FileNotFoundError: if `uri` holds no finished artifact.
        ValueError: if it is not an hsi-train artifact or has no weights called `name` (the names it has are listed).
    """
    artifact = open_artifact(uri)
    weights = artifact.manifest.summary.get("weights")
    if artifact.manifest.stage != "hsi-train" or not isinstance(weights, dict):
        raise ValueError(f"{uri} is a {artifact.manifest.stage!r} artifact, not an hsi-train output with weights")
    if name not in weights:
        raise ValueError(f"{uri} has no weights called {name!r}; it has {sorted(weights)}")
    return load_tensors(artifact.storage.read_bytes(weights[name])), artifact
