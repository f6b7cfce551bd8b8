"""Stage `inpaint`: fill the erased pixels of every changed sample of an `erase` artifact with Deep Image Prior.

Input: an `erase` artifact (the training-set sample format: image.png, erase_mask.png with 255 =
erased, meta.json with `changed`). Output: the same samples, in the same shards and order:
    image.png   uint8 (H, W, 3) RGB; for a changed sample the erased image with its hidden pixels
                replaced by the fitted network's output (every kept pixel bit-identical to the input)
    meta.json   the input's meta plus `inpaint` {iterations, final_loss, padded_size, network, lr}
                for a changed sample; every other field and every unchanged sample pass through
                byte-identical.
One untrained network per changed image (saliencylab.inpaint), `batch_size` of them fitted in one
grouped step; weights, noise input and regularisation noise are seeded per sample key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import typer

from saliencylab.artifacts import open_artifact
from saliencylab.config import field
from saliencylab.runner import ErrorPolicy, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP
from saliencylab.shards import decode_field
from saliencylab.stages import get_stage

from jobs.common import Job, Prepared, stage_command

if TYPE_CHECKING:
    from saliencylab.inpaint import FitSettings, InpaintItem


@dataclass(frozen=True)
class InpaintConfig:
    """Parameters of the inpaint stage (defaults: the paper's preset)."""

    network: Literal["resnet", "skip"] = field("resnet", "resnet: the paper's ResNet-style net; skip: upstream's encoder-decoder.")
    width: int = field(32, "Channels of every hidden layer (paper: 32; upstream skip preset: 128).")
    depth: int = field(8, "Residual blocks (resnet; paper: 8) or scales (skip; upstream preset: 5).")
    skip_channels: int = field(0, "skip network only: channels of each skip connection (upstream preset: 128).")
    input_channels: int = field(32, "Channels of the noise input (upstream: 32).")
    input_scale: float = field(0.1, "Noise input = U[0, 1) x this (upstream: 0.1).")
    reg_noise_std: float = field(0.03, "Std of the N(0, 1) noise added to the input at every step (upstream: 0.03).")
    iterations: int = field(4001, "Adam steps per image (paper: 4001; upstream skip preset: 6001).")
    lr: float = field(1e-3, "Adam learning rate (paper: 1e-3; upstream skip preset: 0.01).")
    early_stop_window: int = field(0, "Early stopping window in steps (0 = off, the paper); see docs/augment.md.")
    early_stop_eps: float = field(1e-3, "Stop when the best loss of the last window improved by less than this fraction.")
    batch_size: int = field(8, "Images whose independent networks are fitted in one grouped step (1 = one at a time).")
    amp: bool = field(True, "CUDA only: float16 autocast with a gradient scaler and channels-last tensors.")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"network": "resnet", "width": 32, "depth": 8, "skip_channels": 0, "iterations": 4001, "lr": 1e-3, "early_stop_window": 0},
    "skip": {"network": "skip", "width": 128, "depth": 5, "skip_channels": 128, "iterations": 6001, "lr": 0.01},
}


def fit_settings(config: InpaintConfig) -> FitSettings:
    """The engine settings of a stage config."""
    from saliencylab.inpaint import FitSettings, NetSpec  # deferred, as everything that imports torch: --help must not

    net = NetSpec(config.network, config.width, config.depth, config.skip_channels, config.input_channels)
    return FitSettings(
        net=net,
        iterations=config.iterations,
        lr=config.lr,
        input_scale=config.input_scale,
        reg_noise_std=config.reg_noise_std,
        early_stop_window=config.early_stop_window,
        early_stop_eps=config.early_stop_eps,
        amp=config.amp,
    )


def _changed_item(raw: dict[str, Any], source: str) -> tuple[InpaintItem, Any, dict] | None:
    """(engine item, erased image array, meta) of a changed sample; None for an unchanged one.

    Raises ValueError naming the missing or bad field.
    """
    import torch

    from saliencylab.inpaint import InpaintItem, known_from_erase_mask

    key = raw["__key__"]
    if "meta.json" not in raw:
        raise ValueError(f"{source}: sample has no meta.json")
    meta = decode_field("meta.json", raw["meta.json"])
    if not isinstance(meta.get("changed"), bool):
        raise ValueError(f"{source}: meta.json has no boolean 'changed' flag; is this an erase artifact?")
    if not meta["changed"]:
        return None
    for name in ("image.png", "erase_mask.png"):
        if name not in raw:
            raise ValueError(f"{source}: changed sample has no {name}")
    image = decode_field("image.png", raw["image.png"])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{source}: image.png is {image.dtype} {image.shape}; expected uint8 RGB (H, W, 3)")
    mask = decode_field("erase_mask.png", raw["erase_mask.png"])
    known = known_from_erase_mask(mask, image.shape)
    pixels = torch.tensor(image).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    return InpaintItem(key, pixels, torch.from_numpy(known)), image, meta


def prepare(inputs: dict[str, str], config: InpaintConfig) -> Prepared:
    from saliencylab.devices import pick_device
    from saliencylab.inpaint import composite, inpaint_images

    erased = open_artifact(inputs["images"])
    if erased.manifest.stage != "erase":
        raise StageError(f"inpaint reads an erase artifact; {erased.storage.uri} was written by stage {erased.manifest.stage!r}")
    settings = fit_settings(config)
    device = pick_device(config.device)
    if config.batch_size < 1:
        raise StageError(f"batch_size must be >= 1, got {config.batch_size}")

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        source = f"{erased.storage.uri}/{shard}"
        samples = list(erased.samples(shard, decode=False))
        out: dict[str, dict] = {}
        pending = []
        for raw in samples:
            with policy.guard(raw["__key__"], source):
                changed = _changed_item(raw, source)
                if changed is None:
                    out[raw["__key__"]] = raw  # byte-identical pass-through
                else:
                    pending.append((raw, *changed))
        results = inpaint_images([item for _, item, _, _ in pending], settings, config.seed, config.batch_size, device)
        for (raw, item, image, meta), result in zip(pending, results):
            meta = {**meta, "inpaint": _record(config, result)}
            out[item.key] = {**raw, "image.png": composite(image, item.known.numpy(), result.output), "meta.json": meta}
        return [out[s["__key__"]] for s in samples if s["__key__"] in out]

    return Prepared({"images": erased.input_spec}, erased.shard_tasks(), process, tuple(erased.manifest.warnings))


def _record(config: InpaintConfig, result) -> dict[str, Any]:
    return {
        "network": config.network,
        "iterations": result.iterations,
        "lr": config.lr,
        "final_loss": result.final_loss,
        "padded_size": list(result.padded),
    }


JOB = Job(spec=get_stage("inpaint"), version="1", config_cls=InpaintConfig, prepare=prepare, presets=PRESETS)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
