"""Resumable training checkpoints in an output storage: safetensors for tensors, JSON for the rest, no pickle.

A checkpoint is two files, committed by the second:

    checkpoints/state-e<epoch>-i<iteration>.safetensors   model.*, optimizer.<param>.<key>,
                                                         rng.cpu.<rank>, rng.cuda.<rank>
    checkpoints/latest.json                              the position (epoch, next iteration, global
                                                         step), the epoch's curve so far, the
                                                         optimizer's param groups, the run fingerprint,
                                                         and the tensor file's name and sha256

`latest.json` is written (atomically) only after its tensor file, and the previous tensor file is
deleted only after that, so a SIGKILL at any moment leaves the last complete checkpoint readable.
The learning-rate schedule is a closed form of (epoch, iteration) (recipe.py): the position is
the scheduler state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.storage import Storage

CHECKPOINT_SCHEMA = "saliencylab.finetune-checkpoint/1"
LATEST_KEY = "checkpoints/latest.json"


@dataclass(frozen=True)
class Position:
    """Where training stands: the next optimizer step to run is `iteration` (0-based) of `epoch`."""

    epoch: int
    iteration: int
    global_step: int  # optimizer steps taken since the start of the run
    curve: tuple[dict[str, Any], ...] = ()  # the records of the iterations of `epoch` already run


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the position and the tensors (model state, optimizer state, RNG states)."""

    position: Position
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # a torch optimizer state dict
    rng_cpu: tuple[torch.Tensor, ...]  # per rank, torch.get_rng_state()
    rng_cuda: tuple[torch.Tensor, ...]  # per rank, torch.cuda.get_rng_state(); empty on CPU


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of `model` (unwrapped from DDP) as contiguous CPU tensors, for safetensors."""
    inner = getattr(model, "module", model)
    return {k: v.detach().to("cpu").contiguous() for k, v in inner.state_dict().items()}


WEIGHTS_METADATA_KEY = "saliencylab"


def encode_weights(state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """A safetensors file of a model state dict, `metadata` (architecture, classes, epoch) as one JSON string.

    One metadata key only: safetensors writes several in hash order, which would make equal
    weights give different bytes.
    """
    return save_tensors({k: v.contiguous() for k, v in state.items()}, metadata={WEIGHTS_METADATA_KEY: canonical_json(metadata).decode()})


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["scalars"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    out: Storage,
    run: str,
    position: Position,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng_cpu: list[torch.Tensor],
    rng_cuda: list[torch.Tensor],
) -> None:
    """Write a checkpoint of `run` (the run fingerprint) at `position`, then drop the previous one."""
    previous = json.loads(out.read_bytes(LATEST_KEY)) if out.exists(LATEST_KEY) else None
    optimizer_tensors, optimizer_meta = _split_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model_state(model).items()} | optimizer_tensors
    tensors |= {f"rng.cpu.{rank}": s for rank, s in enumerate(rng_cpu)} | {f"rng.cuda.{rank}": s for rank, s in enumerate(rng_cuda)}
    data = save_tensors(tensors)
    name = f"checkpoints/state-e{position.epoch:03d}-i{position.iteration:06d}.safetensors"
    out.write_bytes(name, data)
    latest = {
        "schema": CHECKPOINT_SCHEMA,
        "run": run,
        "position": asdict(position),
        "optimizer": optimizer_meta,
        "tensors": name,
        "tensors_sha256": sha256_hex(data),
    }
    out.write_bytes(LATEST_KEY, canonical_json(latest))
    if previous is not None and previous["tensors"] != name:
        out.delete(previous["tensors"])


def _latest(out: Storage, run: str) -> dict[str, Any] | None:
    if not out.exists(LATEST_KEY):
        return None
    latest = json.loads(out.read_bytes(LATEST_KEY))
    return latest if latest.get("schema") == CHECKPOINT_SCHEMA and latest.get("run") == run else None


def checkpoint_position(out: Storage, run: str) -> Position | None:
    """The position of the latest checkpoint of `run` (only its JSON is read), or None."""
    latest = _latest(out, run)
    return None if latest is None else Position(**{**latest["position"], "curve": tuple(latest["position"]["curve"])})


def load_checkpoint(out: Storage, run: str) -> Checkpoint | None:
    """The latest checkpoint of `run` in `out`, or None when there is none (or it belongs to another run).

    Raises:
        ValueError: when the tensor file is missing or does not match its recorded sha256.
    """
    latest = _latest(out, run)
    if latest is None:
        return None
    try:
        data = out.read_bytes(latest["tensors"])
    except FileNotFoundError:
        raise ValueError(f"{out.uri}/{LATEST_KEY} names {latest['tensors']}, which is missing; rerun with --force") from None
    if sha256_hex(data) != latest["tensors_sha256"]:
        raise ValueError(f"{out.uri}/{latest['tensors']} does not match its sha256 in {LATEST_KEY}; rerun with --force")
    tensors = load_tensors(data)
    position = checkpoint_position(out, run)
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}

    def per_rank(kind: str) -> tuple[torch.Tensor, ...]:
        ranks = sorted(int(k.rsplit(".", 1)[1]) for k in tensors if k.startswith(f"rng.{kind}."))
        return tuple(tensors[f"rng.{kind}.{r}"] for r in ranks)

    return Checkpoint(position, model, _join_optimizer(tensors, latest["optimizer"]), per_rank("cpu"), per_rank("cuda"))
