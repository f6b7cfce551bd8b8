"""Stage `xai`: explanation maps of an image classifier (GBP, Grad-CAM or RISE) for every labelled sample of an artifact.

Input `images`: any artifact whose samples carry `image.png` and, for `--target label`, the label
in `meta.json` (field `label` by default), e.g. `hsi-labels` output or an ingest. Samples whose
label is null (the passive samples of `hsi-labels`) are passed over, as in `hsi-predict`. Images are
squashed to `input_size`² by the project's one resize path (`saliencylab.images.resize`), explained
by one `method` (one stage run per method, so a pipeline fans out over them), and the map is resized
back bilinearly. Each output sample `<key>` (the input's key, so `compare` joins it with
`hsi-predict`) holds:
    xai.npy     float16 (H, W) in [0, 1] at the input image's size, min-max scaled (as cam.npy)
    meta.json   method, target mode, label, class index and name; for RISE the raw map's range
                (probability units) before min-max
Methods, conventions and costs: docs/xai.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import typer

from saliencylab.artifacts import open_artifact
from saliencylab.config import field
from saliencylab.images import resize
from saliencylab.manifests import sha256_hex
from saliencylab.runner import ErrorPolicy, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP, torch_generator
from saliencylab.stages import get_stage
from saliencylab.storage import read_uri
from saliencylab.weights import RANDOM, load_weights, random_weights_warning
from saliencylab.xai.defaults import DEFAULT_CELLS, DEFAULT_MASKS, DEFAULT_P1, IMAGENET, INPUT_SIZE, NOTEBOOK

from jobs.common import Job, Prepared, stage_command

if TYPE_CHECKING:
    import torch

    from saliencylab.xai import LabelMap


@dataclass(frozen=True)
class XAIConfig:
    """Parameters of the xai stage (methods and conventions: docs/xai.md)."""

    method: Literal["gbp", "gradcam", "rise"] = field("gradcam", "Explanation method: gbp, gradcam or rise.")
    arch: Literal["resnet50", "resnet18"] = field("resnet50", "Classifier architecture (torchvision; resnet18 for quick tests).")
    weights: str = field(
        RANDOM, "State dict as a path, s3:// URI or torchvision:ResNet50_Weights.IMAGENET1K_V1 in the cache (the paper's era); or 'random'."
    )
    target: Literal["label", "top"] = field("label", "Class to explain: the sample's label (the HSI paper) or the top prediction.")
    label_field: str = field("label", "Key of the label in each sample's meta.json (a class name or an integer index).")
    label_map: str = field(
        IMAGENET, "Label -> class index: imagenet (torchvision's 1000 names) or a JSON file {label: index} (path or s3://)."
    )
    input_size: int = field(INPUT_SIZE, "Side the images are squashed to for the classifier (ImageNet weights: 224).")
    rise_masks: int = field(DEFAULT_MASKS, "RISE: number of masks N.")
    rise_cells: int = field(DEFAULT_CELLS, "RISE: grid cells per side s.")
    rise_p1: float = field(DEFAULT_P1, "RISE: keep-probability of a cell p1.")
    rise_chunk: int = field(64, "RISE: masks per forward pass per image (a pass holds batch_size x rise_chunk images).")
    memory_gb: float = field(0.0, "RISE memory budget in GiB; 0 = the device's free memory (CUDA) or the available RAM (CPU).")
    batch_size: int = field(4, "Images per batch.")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


PRESETS = {"notebook": {"method": "rise", "rise_masks": NOTEBOOK["masks"], "rise_cells": NOTEBOOK["cells"], "rise_p1": NOTEBOOK["p1"]}}


def available_memory(device: torch.device) -> int:
    """Bytes free for a RISE run: free CUDA memory, or on the CPU the smaller of the cgroup's headroom and MemAvailable."""
    if device.type == "cuda":
        import torch  # deferred, as everywhere in this module: `--help` must not load torch

        return torch.cuda.mem_get_info(device)[0]
    limits = []
    try:
        with open("/proc/meminfo") as f:
            limits += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
        with open("/sys/fs/cgroup/memory.max") as f, open("/sys/fs/cgroup/memory.current") as g:
            cap = f.read().strip()
            if cap.isdigit():
                limits.append(int(cap) - int(g.read().strip()))
    except OSError:
        pass  # a platform without these files: fall back to what was found (or no limit)
    return min(limits) if limits else 2**62


def read_label_map(spec: str) -> tuple[LabelMap, dict[str, dict[str, str]]]:
    """The label map named by `spec` and, for a JSON file, its input record {uri, digest} for the run id."""
    from saliencylab.xai import LabelMap, imagenet_label_map

    if spec == IMAGENET:
        return imagenet_label_map(), {}
    data = read_uri(spec)
    try:
        mapping = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"label map {spec} is not valid JSON: {e}") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"label map {spec} must be a JSON object {{label: class index}}, got {type(mapping).__name__}")
    return LabelMap(spec, mapping), {"label_map": {"uri": spec, "digest": "sha256:" + sha256_hex(data)}}


def check_config(config: XAIConfig) -> None:
    """Refuse out-of-range parameters before anything is read or loaded."""
    from saliencylab.xai import check_rise_params

    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.input_size < 32:
        raise ValueError(f"input_size must be >= 32 (ResNets downsample by 32), got {config.input_size}")
    if config.memory_gb < 0:
        raise ValueError(f"memory_gb must be >= 0 (0 = what the device has), got {config.memory_gb}")
    if config.method == "rise":
        check_rise_params(config.rise_masks, config.rise_cells, config.rise_p1, (config.input_size, config.input_size))
        if config.rise_chunk < 1:
            raise ValueError(f"rise_chunk must be >= 1, got {config.rise_chunk}")


def explainer(config: XAIConfig, model: torch.nn.Module, size: tuple[int, int]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The configured method as (normalised images, targets) -> (B, H, W) maps (RISE: raw, the others min-maxed)."""
    from saliencylab.cam.layers import resolve_layer
    from saliencylab.xai import gbp_maps, get_architecture, gradcam_maps, rise_mask_bank, rise_maps

    if config.method == "gbp":
        return partial(gbp_maps, model)
    if config.method == "gradcam":
        return partial(gradcam_maps, model, resolve_layer(model, get_architecture(config.arch).gradcam_layer))
    bank = rise_mask_bank(config.rise_masks, config.rise_cells, config.rise_p1, size, torch_generator(config.seed, "rise"))
    return lambda x, targets: rise_maps(model, x, targets, bank, config.rise_chunk)


def prepare(inputs: dict[str, str], config: XAIConfig) -> Prepared:
    import torch

    from saliencylab.devices import pick_device
    from saliencylab.metrics import minmax_normalise, resize_to
    from saliencylab.xai import build_classifier, check_rise_memory, get_architecture, normalise, top_classes
    from saliencylab.xai.classifier import imagenet_categories

    check_config(config)
    arch = get_architecture(config.arch)
    device = pick_device(config.device)
    size = (config.input_size, config.input_size)
    if config.method == "rise":
        budget = int(config.memory_gb * 2**30) if config.memory_gb else available_memory(device)
        check_rise_memory(config.batch_size, config.rise_chunk, size, arch.activation_factor, budget)
    labels, label_input = read_label_map(config.label_map) if config.target == "label" else (None, {})
    images = open_artifact(inputs["images"])
    if not images.manifest.shards:
        raise StageError(f"{images.storage.uri} holds no shards")
    state = load_weights(config.weights)
    model = build_classifier(config.arch, state, config.seed).to(device)
    categories = imagenet_categories()

    explain = explainer(config, model, size)

    def explain_batch(batch: list[dict]) -> list[dict]:
        pixels = torch.from_numpy(np.stack([resize(s["image.png"], size) for s in batch])).to(device)
        x = normalise(pixels.permute(0, 3, 1, 2).float() / 255.0)
        if config.target == "label":
            targets = torch.tensor([s["class_index"] for s in batch], dtype=torch.int64, device=device)
        else:
            targets = top_classes(model, x)
        raw = explain(x, targets)
        out = []
        for i, sample in enumerate(batch):
            index = int(targets[i])
            meta = {"method": config.method, "target": config.target, "label": sample["label"], "class_index": index,
                    "class_name": categories[index]}  # fmt: skip
            if config.method == "rise":
                meta["raw_range"] = [float(raw[i].min()), float(raw[i].max())]
            saliency = minmax_normalise(resize_to(raw[i][None].double(), sample["image.png"].shape[:2]))[0]
            out.append({"__key__": sample["__key__"], "xai.npy": saliency.cpu().numpy().astype(np.float16), "meta.json": meta})
        return out

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        source = f"{images.storage.uri}/{shard}"
        todo = []
        for sample in images.samples(shard):
            key = sample["__key__"]
            with policy.guard(key, source):
                if np.ndim(sample.get("image.png")) != 3 or np.shape(sample["image.png"])[2] != 3:
                    raise ValueError("the sample needs an RGB image.png")
                meta = sample.get("meta.json") if isinstance(sample.get("meta.json"), dict) else {}
                if config.label_field in meta and meta[config.label_field] is None:
                    continue  # an unlabelled (passive) sample: nothing to explain
                label = meta.get(config.label_field)
                item = {"__key__": key, "image.png": sample["image.png"], "label": label}
                if config.target == "label":
                    if label is None:
                        raise ValueError(f"meta.json has no {config.label_field!r} to take the target class from (or use --target top)")
                    item["class_index"] = labels.class_index(label)
                todo.append(item)
        return [o for start in range(0, len(todo), config.batch_size) for o in explain_batch(todo[start : start + config.batch_size])]

    warnings = list(images.manifest.warnings)
    if state is None:
        warnings.append(random_weights_warning("xai", f"{config.arch} ({config.method})"))
    return Prepared({"images": images.input_spec, **label_input}, images.shard_tasks(), process, tuple(warnings))


JOB = Job(spec=get_stage("xai"), version="1", config_cls=XAIConfig, prepare=prepare, presets=PRESETS)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
