"""Stage `erase`: selective erasing of a training set by CAM-versus-attention disagreement (paper A).

Inputs, joined by sample key: `images` (the training set at native size: an ingest with
`--resize none`), `cam` (EigenCAM maps on the 512² ingest, `cam.npy`), and the reference the
criterion needs: `deepgaze` (`density.npy` on the 512² ingest) for `iou`/`mae`, `human` (the 512²
ingest with `mask.png`) for `human-iou`/`human-mae`. Every input sample is written, in the
training-set format (docs/augment.md):
    image.png        the image with the CAM's top pixels filled when selected, else unchanged
    erase_mask.png   uint8 (H, W) at native size, 255 = erased pixel, 0 = kept (all 0 when unchanged)
    meta.json        the input's meta (boxes, labels, difficult unchanged) plus `changed` and
                     `erase` {criterion, score, threshold, comparison, status, erased_pixels}
    other fields     copied unchanged
The manifest summary counts selected/total and records the criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import typer

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.config import field
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError
from saliencylab.shards import decode_field, read_shard
from saliencylab.stages import get_stage
from saliencylab.storage import Storage

from jobs.augment import training_images
from jobs.common import Job, Prepared, stage_command

REFERENCE_FIELDS = {"deepgaze": "density.npy", "human": "mask.png"}
SCORE_BATCH = 8  # map pairs per metric-suite call (8 × 2 × 512² float64 = 32 MiB)


@dataclass(frozen=True)
class EraseConfig:
    """Parameters of the erase stage."""

    criterion: Literal["iou", "mae", "human-iou", "human-mae"] = field(
        "iou", "Score of the CAM against DeepGaze (iou, mae; paper, blog draft) or the human mask (human-iou, human-mae)."
    )
    threshold: float = field(0.1, "Selection threshold on the score (paper: IoU 0.1; blog draft: MAE 0.1).")
    comparison: Literal["<", "<=", ">", ">="] = field(
        "<", "Selected when `score comparison threshold`: '<' as the report, '<=' as the original code."
    )
    iou_mode: Literal["paper", "exact"] = field(
        "paper", "IoU of the top fraction: paper (own 90th percentile, >=, as coded) or exact (tie-robust top-k)."
    )
    fraction: float = field(0.1, "Top fraction of pixels for the IoU (paper: 0.1, its 'top 90%').")
    percentile: float = field(97.5, "Erase the pixels whose CAM is strictly above this percentile of its own map (paper: 97.5).")
    fill: Literal["zero", "imagenet-mean"] = field(
        "zero", "Value of erased pixels: zero (paper) or imagenet-mean (RGB 124, 116, 104 = 255 × torchvision's mean)."
    )
    map_size: int = field(512, "Side in pixels of the CAM, DeepGaze and human maps (the study's 512x512 ingest).")


def _reference_input(config: EraseConfig, inputs: dict[str, str]) -> str:
    """The input the criterion scores against; refuses a missing one, an unused one and out-of-range parameters."""
    if not 0 < config.percentile < 100 or not 0 < config.fraction <= 1 or config.map_size < 1:
        raise StageError(
            f"need 0 < percentile < 100, 0 < fraction <= 1 and map_size >= 1; got {config.percentile}, "
            f"{config.fraction}, {config.map_size}"
        )
    needed = "human" if config.criterion.startswith("human") else "deepgaze"
    unused = "deepgaze" if needed == "human" else "human"
    if not inputs.get(needed):
        raise StageError(f"criterion {config.criterion!r} needs --input {needed}=URI")
    if inputs.get(unused):
        raise StageError(f"criterion {config.criterion!r} does not use the {unused} input; leave it out")
    return needed


def _missing_message(name: str, artifact: Artifact, missing: set[str]) -> str:
    listed = ", ".join(sorted(missing)[:20]) + (" ..." if len(missing) > 20 else "")
    return f"no {name} map: the {name} artifact {artifact.storage.uri} lacks {len(missing)} image key(s): {listed}"


def _map(sample: dict[str, Any], field_name: str, key: str, name: str, side: int) -> np.ndarray:
    """The map `field_name` of a stored sample as float64 (side, side); uint8 masks scaled to [0, 1]."""
    if field_name not in sample:
        raise ValueError(f"sample {key!r}: the {name} artifact's sample has no {field_name} (fields: {sorted(sample)})")
    array = np.asarray(sample[field_name])
    if array.shape != (side, side):
        raise ValueError(f"sample {key!r}: the {name} map is {array.shape}, expected ({side}, {side}) (--map-size)")
    if not np.isfinite(array).all():
        raise ValueError(f"sample {key!r}: the {name} map holds NaN or infinite values")
    return array.astype(np.float64) / (255.0 if array.dtype == np.uint8 else 1.0)


def _scores(pairs: list[tuple[str, np.ndarray, np.ndarray]], config: EraseConfig) -> dict[str, dict[str, Any]]:
    """Score and status of each (key, cam, reference) pair, in batches of SCORE_BATCH."""
    # torch and the erasing science are imported where used, so that `erase --help` stays fast
    import torch

    from saliencylab.erasing import criterion_scores, is_selected

    results = {}
    for start in range(0, len(pairs), SCORE_BATCH):
        batch = pairs[start : start + SCORE_BATCH]
        cams = torch.from_numpy(np.stack([c for _, c, _ in batch]))
        refs = torch.from_numpy(np.stack([r for _, _, r in batch]))
        values = criterion_scores(cams, refs, config.criterion, config.fraction, config.iou_mode)
        for i, (key, _, _) in enumerate(batch):
            if bool(values["cam_constant"][i]) or bool(values["reference_constant"][i]):
                status = "constant_cam" if bool(values["cam_constant"][i]) else "constant_reference"
                results[key] = {"status": status, "score": None}
                continue
            score = float(values["score"][i])
            selected = is_selected(score, config.threshold, config.comparison)
            results[key] = {"status": "selected" if selected else "kept", "score": score}
    return results


def _output(sample: dict[str, Any], cam: np.ndarray, decision: dict[str, Any], config: EraseConfig) -> dict[str, Any]:
    """The output sample: erased when selected, passed through otherwise; raises ValueError for a bad mask."""
    from saliencylab.erasing import FILLS, apply_erase, erase_mask, resize_mask

    key, image = sample["__key__"], sample["image.png"]
    mask = np.zeros(image.shape[:2], dtype=bool)
    if decision["status"] == "selected":
        mask = resize_mask(erase_mask(cam, config.percentile), image.shape[:2])
        if not mask.any() or mask.all():
            what = "no pixel" if not mask.any() else "every pixel"
            raise ValueError(f"sample {key!r}: the erase mask covers {what} of the {image.shape[1]}x{image.shape[0]} image")
        image = apply_erase(image, mask, FILLS[config.fill])
    erase = {
        "criterion": config.criterion,
        "score": decision["score"],
        "threshold": config.threshold,
        "comparison": config.comparison,
        "status": decision["status"],
        "erased_pixels": int(mask.sum()),
    }
    meta = sample["meta.json"] | {"changed": bool(mask.any()), "erase": erase}
    return sample | {"image.png": image, "meta.json": meta, "erase_mask.png": mask.astype(np.uint8) * 255}


def prepare(inputs: dict[str, str], config: EraseConfig) -> Prepared:
    reference_name = _reference_input(config, inputs)
    images, cam, reference = training_images(inputs["images"]), open_artifact(inputs["cam"]), open_artifact(inputs[reference_name])
    image_keys = set(images.key_index())
    missing = {name: image_keys - set(a.key_index()) for name, a in (("cam", cam), (reference_name, reference))}
    if reference_name == "human":
        missing.pop("human")  # an id without a human mask is passed through, not an error
    ref_field = REFERENCE_FIELDS[reference_name]

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        source = f"{images.storage.uri}/{shard}"
        samples = list(images.samples(shard))
        keys = [s["__key__"] for s in samples]
        cams, refs = cam.lookup(keys), reference.lookup(keys)
        ready, pairs, decisions = [], [], {}
        for sample in samples:
            key = sample["__key__"]
            with policy.guard(key, source):
                for name, artifact in (("cam", cam), (reference_name, reference)):
                    if key in missing.get(name, ()):
                        raise ValueError(_missing_message(name, artifact, missing[name]))
                cam_map = _map(cams[key], "cam.npy", key, "cam", config.map_size)
                if reference_name == "human" and ref_field not in refs.get(key, {}):
                    decisions[key] = {"status": "no_human_mask", "score": None}
                else:
                    pairs.append((key, cam_map, _map(refs[key], ref_field, key, reference_name, config.map_size)))
                ready.append((sample, cam_map))
        decisions.update(_scores(pairs, config))
        out = []
        for sample, cam_map in ready:
            with policy.guard(sample["__key__"], source):
                out.append(_output(sample, cam_map, decisions[sample["__key__"]], config))
        return out

    specs = {"images": images.input_spec, "cam": cam.input_spec, reference_name: reference.input_spec}
    warnings = tuple(sorted(set(images.manifest.warnings) | set(cam.manifest.warnings) | set(reference.manifest.warnings)))
    return Prepared(specs, images.shard_tasks(), process, warnings)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Selected/total counts, the count of each status and the criterion, for the manifest summary."""
    config = EraseConfig(**request.params)
    statuses = []
    for record in records:  # our own shards: the manifest does not exist yet; decode only meta.json
        for sample in read_shard(out.read_bytes(record.name), record.name, decode=False):
            statuses.append(decode_field("meta.json", sample["meta.json"])["erase"]["status"])
    summary = {
        "selected": statuses.count("selected"),
        "total": len(statuses),
        "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "criterion": {
            "name": config.criterion,
            "threshold": config.threshold,
            "comparison": config.comparison,
            "iou_mode": config.iou_mode,
            "fraction": config.fraction,
            "percentile": config.percentile,
            "fill": config.fill,
        },
    }
    return summary, {}


JOB = Job(spec=get_stage("erase"), version="1", config_cls=EraseConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
