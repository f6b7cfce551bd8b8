"""Stage `cam`: EigenCAM saliency maps of one object detector for every image of an ingested artifact.

Each output sample `<key>` holds `cam.npy`: float16 (H, W) in [0, 1] at the image size, the first
principal component of the target layer's activations with the sign rule of docs/cam.md, ReLU'd
and min-max scaled. The network runs only as far as the target layer. With `--weights random`
the detector's initialisation is drawn from `seed`, so reruns, resumes and `--shard i/n` workers
use the same model.

The optional input `model`, a `finetune` artifact, is the same as `--weights finetune:<its URI>`
(its final weights) but is a declared input: the manifest records its digest, and a pipeline
step that reads it waits for the fine-tune (saliencylab.pipeline). `weights` must then stay
'random' (the default), so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import typer

from saliencylab.artifacts import open_artifact
from saliencylab.batches import map_image_batches
from saliencylab.cam.names import DETECTOR_NAMES
from saliencylab.config import field
from saliencylab.runner import ErrorPolicy, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP, seeded_init
from saliencylab.stages import get_stage
from saliencylab.weights import FINETUNE_PREFIX, RANDOM, load_model_weights, random_weights_warning

from jobs.common import Job, Prepared, stage_command


@dataclass(frozen=True)
class CamConfig:
    """Parameters of the cam stage."""

    detector: str = field("faster_rcnn", "Detector registry name (see docs/cam.md for the list and their layers).")
    weights: str = field(
        RANDOM,
        "State dict as a path, s3:// URI or torchvision:<Weights>.<NAME> in the cache; finetune:<artifact URI>[#epoch-N] "
        "for a finetune stage's output (Faster R-CNN, 21 classes); or 'random'.",
    )
    layer: str = field("", "Target layer (dotted module path); empty = the detector's documented default.")
    internal_resize: Literal["default", "on", "off"] = field(
        "default", "Whether the model's own input resize runs before the backbone (default: the detector's setting)."
    )
    engine: Literal["fast", "grad-cam"] = field(
        "fast",
        "fast: our batched engine; grad-cam: pytorch-grad-cam's EigenCAM, one image at a time. They agree (to within "
        "1e-5) except where the model pads its resized input (R-CNN types at sizes whose resize is not a multiple of "
        "32, e.g. 375x500 VOC images): fast crops the padding off the map, grad-cam stretches image plus padding over "
        "the whole map (maps differ by up to about 0.5; docs/cam.md, 'Padding').",
    )
    batch_size: int = field(8, "Images per eigendecomposition batch.")
    forward_batch: int = field(
        0, "Images per forward pass within a batch; 0 = 1 on CPU (fastest there, see docs/cam.md), the whole batch on CUDA."
    )
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


def prepare(inputs: dict[str, str], config: CamConfig) -> Prepared:
    from saliencylab.cam import build_detector, eigencam_maps, get_detector  # deferred: torch, not needed by --help
    from saliencylab.devices import pick_device

    images = open_artifact(inputs["images"])
    spec = get_detector(config.detector)
    if config.layer:
        spec = replace(spec, target_layer=config.layer)
    if config.internal_resize != "default":
        spec = replace(spec, internal_resize=config.internal_resize == "on")
    device = pick_device(config.device)
    recorded = {"images": images.input_spec}
    weights_spec = config.weights
    if inputs.get("model"):
        if config.weights != RANDOM:
            raise StageError(
                f"cam got both the model input {inputs['model']} and --weights {config.weights}; "
                "give one: the model input means --weights finetune:<model URI>"
            )
        weights_spec = f"{FINETUNE_PREFIX}{inputs['model']}"
        recorded["model"] = open_artifact(inputs["model"]).input_spec
    weights = load_model_weights(weights_spec)  # a finetune artifact also sets num_classes (VOC: 21)
    state = weights.state_dict
    with seeded_init(config.seed, "weights", config.detector):
        model = build_detector(spec, state, **weights.builder_kwargs).to(device)
    if config.engine == "fast":
        forward_batch = config.forward_batch or (None if device.type == "cuda" else 1)

        def compute(spec, model, x):
            return eigencam_maps(spec, model, x, forward_batch=forward_batch)
    else:
        from saliencylab.cam.gradcam_reference import gradcam_eigencam_maps as compute

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items

        def cams(x):  # x: (B, 3, H, W) RGB in [0, 255]; adapters apply their own preprocessing to [0, 1] input
            return [{"cam.npy": m.astype(np.float16)} for m in compute(spec, model, x / 255).cpu().numpy()]

        return map_image_batches(list(images.samples(shard)), config.batch_size, device, cams)

    warnings = list(images.manifest.warnings) + list(weights.warnings)
    if state is None:
        warnings.append(random_weights_warning("cam", config.detector))
    return Prepared(recorded, images.shard_tasks(), process, tuple(warnings))


JOB = Job(
    spec=get_stage("cam"), version="1", config_cls=CamConfig, prepare=prepare, choices={"detector": DETECTOR_NAMES}, references=("weights",)
)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
