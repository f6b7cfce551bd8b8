"""Stage `deepgaze`: DeepGaze IIE predicted fixations for every image of an ingested artifact.

Each output sample `<key>` holds:
    log_density.npy   float32 (H, W) log density at the image size, logsumexp 0
    density.npy       float32 (H, W) the same as a density, sums to 1
Images go in as RGB 0-255 (the original study's notebooks fed [0, 1], which reduces the
prediction to mostly the centre bias; the model's guard refuses such input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import typer

from saliencylab.artifacts import open_artifact
from saliencylab.config import field
from saliencylab.runner import ErrorPolicy, ShardTask
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP
from saliencylab.stages import get_stage
from saliencylab.storage import read_uri
from saliencylab.weights import RANDOM, load_weights, random_weights_warning

from jobs.common import Job, Prepared, stage_command

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DeepGazeConfig:
    """Parameters of the deepgaze stage."""

    weights: str = field(RANDOM, "deepgaze2e.pth (authors' release v1.0.0) as a path or s3:// URI, or 'random'.")
    centerbias: str = field(
        "", "centerbias_mit1003.npy (1024x1024 log density) as a path or s3:// URI; empty = uniform prior (a stand-in)."
    )
    batch_size: int = field(4, "Images per forward pass (same-size images only).")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


def load_template(uri: str) -> np.ndarray:
    """The centre-bias template array from a .npy file (no pickle)."""
    import io

    try:
        return np.load(io.BytesIO(read_uri(uri)), allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"centre-bias template {uri} is not a readable .npy array: {e}") from e


def _image_tensor(sample: dict) -> torch.Tensor:
    """A sample's `image.png` as a (3, H, W) float32 0-255 tensor, as `map_image_batches` feeds it."""
    import torch

    image = sample.get("image.png")
    if image is None:
        raise ValueError("the sample has no image.png field")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image.png has shape {image.shape}, expected (H, W, 3) RGB")
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)


def prepare(inputs: dict[str, str], config: DeepGazeConfig) -> Prepared:
    # torch and the model code are imported here, so that `deepgaze --help` stays fast
    import torch

    from saliencylab.batches import map_image_batches
    from saliencylab.checkpoints import load_state_dict_strict
    from saliencylab.deepgaze import build_deepgaze_iie, centerbias_from_template, uniform_centerbias
    from saliencylab.deepgaze.inputs import check_image
    from saliencylab.devices import pick_device
    from saliencylab.seeding import seeded_init

    images = open_artifact(inputs["images"])
    device = pick_device(config.device)
    with seeded_init(config.seed, "weights", "deepgaze_iie"):  # the random init of `--weights random`
        model = build_deepgaze_iie()
    state = load_weights(config.weights)
    if state is not None:
        load_state_dict_strict(model, state)
    model = model.to(device).eval()
    template = load_template(config.centerbias) if config.centerbias else None
    centerbiases: dict[tuple[int, int], torch.Tensor] = {}

    def centerbias(size: tuple[int, int]) -> torch.Tensor:
        if size not in centerbiases:
            cb = centerbias_from_template(template, size) if template is not None else uniform_centerbias(size)
            centerbiases[size] = torch.as_tensor(cb, dtype=torch.float32, device=device)
        return centerbiases[size]

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items

        def densities(x):  # x: (B, 3, H, W) RGB in [0, 255], as DeepGaze expects
            cb = centerbias(tuple(x.shape[-2:])).expand(len(x), *x.shape[-2:])
            with torch.inference_mode():
                log_density = model(x, cb)[:, 0].double().cpu().numpy()
            return [{"log_density.npy": ld.astype(np.float32), "density.npy": np.exp(ld).astype(np.float32)} for ld in log_density]

        usable = []
        for sample in images.samples(shard):
            with policy.guard(sample["__key__"], f"{images.storage.uri}/{shard}"):
                check_image(_image_tensor(sample))
                usable.append(sample)
        return map_image_batches(usable, config.batch_size, device, densities)

    warnings = list(images.manifest.warnings)
    if state is None:
        warnings.append(random_weights_warning("deepgaze", "DeepGaze IIE"))
    if template is None:
        warnings.append("deepgaze: no MIT1003 centre-bias template given; a uniform prior was used")
    return Prepared({"images": images.input_spec}, images.shard_tasks(), process, tuple(warnings))


JOB = Job(spec=get_stage("deepgaze"), version="1", config_cls=DeepGazeConfig, prepare=prepare, references=("weights", "centerbias"))
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
