"""Stage `hsi-predict`: the HSI model's human saliency map for every (image, label) sample of an artifact.

Input `images`: any artifact whose samples carry `image.png` and the label in `meta.json` (field
`label` by default), e.g. the conditional samples of `hsi-labels`. Samples whose label is null (the
passive samples of `hsi-labels`) are passed over: they have nothing to explain. Each output sample
`<key>` (the input's key, so `compare` joins them) holds:
    saliency.npy   float32 (H, W) predicted map in [0, 1] at the input image's size (the model works
                   at 224x224: images are squashed to it with the project's resize, the map is
                   resized back bilinearly)
    meta.json      label, prompt, model (clip model, dense variant, decoder features)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import typer

from saliencylab.artifacts import open_artifact
from saliencylab.config import field
from saliencylab.devices import pick_device
from saliencylab.hsi.clip_weights import load_clip_state, load_hsi_state
from saliencylab.hsi.model import FEATURES, HSISpec, build_hsi_model
from saliencylab.images import resize
from saliencylab.metrics import resize_to
from saliencylab.runner import ErrorPolicy, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP
from saliencylab.stages import get_stage
from saliencylab.training.hsi_session import TRAINED_PREFIX, trained_weights
from saliencylab.weights import RANDOM, load_weights, random_weights_warning

from jobs.common import Job, Prepared, stage_command


@dataclass(frozen=True)
class HSIPredictConfig:
    """Parameters of the hsi-predict stage (the network: docs/hsi.md)."""

    weights: str = field(
        RANDOM,
        "A trained HSI state dict (clip.* and decoder.*; path or s3:// URI), hsi-train:<artifact URI>#<name> "
        "(a weights entry of an hsi-train run: best, last, fold-<k>; default best), or 'random'.",
    )
    clip_weights: str = field(
        RANDOM, "CLIP weights for an untrained decoder (open_clip state dict, e.g. converted OpenAI RN50), or 'random'."
    )
    clip_model: str = field("RN50-quickgelu", "open_clip config; OpenAI's RN50 weights need RN50-quickgelu (QuickGELU).")
    dense: Literal["denseclip", "maskclip"] = field(
        "denseclip", "Dense embedding z: denseclip (attention with every token a query) or maskclip."
    )
    features: tuple[str, ...] = field(FEATURES, "Decoder inputs, a subset of u4,u5,z,a in order; u4,u5,z = no-text baseline.")
    prompt: str = field("a photo of a {label}", "Prompt template of the label (HSI paper).")
    decoder_channels: int = field(256, "Channels after the decoder's 3x3 conv (our choice; must match the weights).")
    image_size: int = field(224, "Model input and output side in pixels (paper: 224); must match the weights (hsi-train's image_size).")
    label_field: str = field("label", "Key of the label in each sample's meta.json.")
    batch_size: int = field(2, "Samples per forward pass.")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


def model_spec(config: HSIPredictConfig) -> HSISpec:
    return HSISpec(
        clip_model=config.clip_model,
        dense=config.dense,
        features=config.features,
        prompt=config.prompt,
        decoder_channels=config.decoder_channels,
        image_size=config.image_size,
    )


def load_model(config: HSIPredictConfig) -> tuple[torch.nn.Module, list[str]]:
    """The network with its weights, on the CPU in eval mode, and the warnings about random parts."""
    if config.weights != RANDOM and config.clip_weights != RANDOM:
        raise ValueError("give either --weights (a whole HSI model) or --clip-weights (CLIP only), not both")
    model = build_hsi_model(model_spec(config), seed=config.seed)
    warnings = []
    if config.weights.startswith(TRAINED_PREFIX):
        uri, _, name = config.weights.removeprefix(TRAINED_PREFIX).partition("#")
        state, artifact = trained_weights(uri, name or "best")
        load_hsi_state(model, state)
        warnings += list(artifact.manifest.warnings)
    elif config.weights != RANDOM:
        load_hsi_state(model, load_weights(config.weights))
    elif config.clip_weights != RANDOM:
        load_clip_state(model, load_weights(config.clip_weights))
        warnings.append(random_weights_warning("hsi-predict", "the HSI decoder (untrained)"))
    else:
        warnings.append(random_weights_warning("hsi-predict", "HSI (CLIP RN50 and decoder)"))
    return model.eval(), warnings


def prepare(inputs: dict[str, str], config: HSIPredictConfig) -> Prepared:
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    images = open_artifact(inputs["images"])
    model, warnings = load_model(config)
    device = pick_device(config.device)
    model = model.to(device)
    side = model.spec.image_size
    description = {"clip_model": config.clip_model, "dense": config.dense, "features": list(config.features)}

    def predict(batch: list[dict]) -> list[np.ndarray]:
        pixels = torch.from_numpy(np.stack([resize(s["image.png"], (side, side)) for s in batch])).to(device)
        with torch.inference_mode():
            maps = model(pixels.permute(0, 3, 1, 2).float() / 255.0, [s["label"] for s in batch])[:, 0]
        return [resize_to(m[None].double(), s["image.png"].shape[:2])[0].float().cpu().numpy() for m, s in zip(maps, batch)]

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        source = f"{images.storage.uri}/{shard}"
        todo = []
        for sample in images.samples(shard):
            key = sample["__key__"]
            try:
                if not isinstance(sample.get("meta.json"), dict) or np.ndim(sample.get("image.png")) != 3:
                    raise ValueError("the sample needs an RGB image.png and a meta.json")
                label = sample["meta.json"].get(config.label_field)
                if label is None:
                    continue  # an unlabelled (passive) sample: nothing to explain
                (prompt,), _ = model.tokens([label])  # names a bad label (empty, too long) before it joins a batch
            except ValueError as e:
                policy.record(key, source, e)
                continue
            todo.append({"__key__": key, "image.png": sample["image.png"], "label": label, "prompt": prompt})
        out = []
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            for item, saliency in zip(batch, predict(batch)):
                meta = {"label": item["label"], "prompt": item["prompt"], "model": description}
                out.append({"__key__": item["__key__"], "saliency.npy": saliency, "meta.json": meta})
        return out

    if not images.manifest.shards:
        raise StageError(f"{images.storage.uri} holds no shards")
    all_warnings = tuple(images.manifest.warnings) + tuple(warnings)
    return Prepared({"images": images.input_spec}, images.shard_tasks(), process, all_warnings)


JOB = Job(spec=get_stage("hsi-predict"), version="1", config_cls=HSIPredictConfig, prepare=prepare)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
