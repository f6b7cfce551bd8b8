"""Stage `hsi-predict`: the HSI model's human saliency map for every (image, label) sample of an artifact.

Input `images`: any artifact whose samples carry `image.png` and the label in `meta.json` (field
`label` by default), e.g. the conditional samples of `hsi-labels`. Samples whose label is null (the
passive samples of `hsi-labels`) are passed over: they have nothing to explain. Each output sample
`<key>` (the input's key, so `compare` joins them) holds:
    saliency.npy   float32 (H, W) predicted map in [0, 1] at the input image's size (the model works
                   at 224x224: images are squashed to it with the project's resize, the map is
                   resized back bilinearly)
    meta.json      label, prompt, model (clip model, dense variant, decoder features)

The optional input `model`, an `hsi-train` artifact, is the same as `--weights hsi-train:<its URI>`
but is a declared input: the manifest records its digest and a pipeline step that reads it waits
for the training (saliencylab.pipeline.hsi_study_steps). `weights` must then stay 'random'. With
`--fold k` (a finetune artifact) the weights are that fold's (`fold-<k>`) and only the fold's
held-out samples (its folds.json) are predicted, so a held-out score never includes a training
image; without it a pretrain artifact gives its `best` weights. Whenever the weights come from an
hsi-train artifact, the network (clip_model, dense, features, prompt, decoder_channels,
image_size) is the one recorded in its summary; a model field set here to another non-default
value is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import dataclasses
import json

import numpy as np
import typer

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.config import field
from saliencylab.hsi.spec import FEATURES, HSISpec
from saliencylab.images import resize
from saliencylab.runner import ErrorPolicy, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP
from saliencylab.stages import get_stage
from saliencylab.weights import RANDOM, load_weights, random_weights_warning

from jobs.common import Job, Prepared, stage_command

if TYPE_CHECKING:
    import torch


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
    fold: int = field(
        -1, "With a k-fold hsi-train artifact (model input or hsi-train: weights): predict only fold k's held-out samples "
        "with its fold-<k> weights; -1 = every sample."
    )
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


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The network ready to predict and what the run records about where its weights came from."""

    model: torch.nn.Module  # on the CPU, in eval mode
    warnings: list[str]
    trained: Artifact | None = None  # the hsi-train artifact of the weights, if any
    held_out: frozenset[str] | None = None  # with --fold: the keys that fold held out


def trained_spec(config: HSIPredictConfig, artifact: Artifact) -> HSISpec:
    """The network recorded in an hsi-train artifact's summary; refuses a model field set here to something else."""
    recorded = dict(artifact.manifest.summary.get("model", {}))
    recorded["features"] = tuple(recorded.get("features", ()))
    mine, defaults = dataclasses.asdict(model_spec(config)), dataclasses.asdict(model_spec(HSIPredictConfig()))
    clashes = [k for k in mine if mine[k] != defaults[k] and mine[k] != recorded.get(k)]
    if clashes:
        given = ", ".join(f"{k}={mine[k]!r} (trained: {recorded.get(k)!r})" for k in clashes)
        raise ValueError(f"hsi-predict: the hsi-train artifact {artifact.storage.uri} was trained with another network: {given}; leave these unset")
    return HSISpec(**recorded)


def _trained_source(inputs: dict[str, str], config: HSIPredictConfig) -> tuple[str, str] | None:
    """(hsi-train artifact URI, weights name) from the model input or an hsi-train: weights spec; None otherwise."""
    from saliencylab.training.hsi_session import TRAINED_PREFIX  # deferred, as everything that imports torch

    if inputs.get("model"):
        if config.weights != RANDOM or config.clip_weights != RANDOM:
            raise StageError(
                f"hsi-predict got both the model input {inputs['model']} and --weights/--clip-weights; "
                "give one: the model input means --weights hsi-train:<model URI>"
            )
        uri, name = inputs["model"], ""
    elif config.weights.startswith(TRAINED_PREFIX):
        uri, _, name = config.weights.removeprefix(TRAINED_PREFIX).partition("#")
    else:
        if config.fold >= 0:
            raise ValueError(f"--fold {config.fold} needs a k-fold hsi-train artifact: the model input or --weights hsi-train:<URI>")
        return None
    if config.fold >= 0:
        if name and name != f"fold-{config.fold}":
            raise ValueError(f"--fold {config.fold} loads the fold-{config.fold} weights, but the weights name {name!r}; drop the #{name}")
        return uri, f"fold-{config.fold}"
    return uri, name or "best"


def held_out_keys(artifact: Artifact, fold: int) -> frozenset[str]:
    """The sample keys that fold `fold` of a finetune hsi-train artifact held out (its folds.json)."""
    folds = artifact.manifest.summary.get("folds")
    if not isinstance(folds, dict):
        raise ValueError(f"--fold {fold}: {artifact.storage.uri} is not a k-fold (finetune) hsi-train output")
    assignment = json.loads(artifact.storage.read_bytes(folds["file"]))
    return frozenset(key for key, k in assignment.items() if k == fold)


def load_model(config: HSIPredictConfig, inputs: dict[str, str] | None = None) -> Loaded:
    """The network with its weights (from the model input, --weights or --clip-weights) and the warnings about random parts."""
    from saliencylab.hsi.clip_weights import load_clip_state, load_hsi_state  # deferred: torch, not needed by --help
    from saliencylab.hsi.model import build_hsi_model
    from saliencylab.training.hsi_session import trained_weights

    if config.weights != RANDOM and config.clip_weights != RANDOM:
        raise ValueError("give either --weights (a whole HSI model) or --clip-weights (CLIP only), not both")
    source = _trained_source(inputs or {}, config)
    if source is not None:
        state, artifact = trained_weights(*source)
        model = build_hsi_model(trained_spec(config, artifact), seed=config.seed)
        load_hsi_state(model, state)
        held_out = held_out_keys(artifact, config.fold) if config.fold >= 0 else None
        return Loaded(model.eval(), list(artifact.manifest.warnings), artifact, held_out)
    model = build_hsi_model(model_spec(config), seed=config.seed)
    if config.weights != RANDOM:
        load_hsi_state(model, load_weights(config.weights))
        return Loaded(model.eval(), [])
    if config.clip_weights != RANDOM:
        load_clip_state(model, load_weights(config.clip_weights))
        return Loaded(model.eval(), [random_weights_warning("hsi-predict", "the HSI decoder (untrained)")])
    return Loaded(model.eval(), [random_weights_warning("hsi-predict", "HSI (CLIP RN50 and decoder)")])


def prepare(inputs: dict[str, str], config: HSIPredictConfig) -> Prepared:
    import torch  # deferred: `--help` must not load torch

    from saliencylab.devices import pick_device
    from saliencylab.metrics import resize_to

    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    images = open_artifact(inputs["images"])
    loaded = load_model(config, inputs)
    recorded = {"images": images.input_spec}
    if inputs.get("model"):
        recorded["model"] = loaded.trained.input_spec
    warnings = loaded.warnings
    if loaded.held_out is not None and not loaded.held_out & set(images.key_index()):
        raise StageError(
            f"none of the {len(loaded.held_out)} samples fold {config.fold} held out is in {images.storage.uri}; "
            "give the artifact the folds were trained on (the hsi-train train input)"
        )
    device = pick_device(config.device)
    model = loaded.model.to(device)
    spec = model.spec
    side = spec.image_size
    description = {"clip_model": spec.clip_model, "dense": spec.dense, "features": list(spec.features)}

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
            if loaded.held_out is not None and key not in loaded.held_out:
                continue  # a training image of the fold: its score would not be held out
            with policy.guard(key, source):
                if not isinstance(sample.get("meta.json"), dict) or np.ndim(sample.get("image.png")) != 3:
                    raise ValueError("the sample needs an RGB image.png and a meta.json")
                label = sample["meta.json"].get(config.label_field)
                if label is None:
                    continue  # an unlabelled (passive) sample: nothing to explain
                (prompt,), _ = model.tokens([label])  # names a bad label (empty, too long) before it joins a batch
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
    return Prepared(recorded, images.shard_tasks(), process, all_warnings)


JOB = Job(spec=get_stage("hsi-predict"), version="1", config_cls=HSIPredictConfig, prepare=prepare)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
