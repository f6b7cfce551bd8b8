"""Stage `augment`: every training image augmented once by a detection AutoAugment v3 sub-policy, boxes moved.

Input `images`: the training set at native size (an ingest with `--resize none`, or any stage
writing the training-set format). Each output sample, in the same format (docs/augment.md):
    image.png   uint8 (H, W, 3), the input augmented once, same size
    meta.json   the input's meta with `boxes` (x0, y0, x1, y1 in pixels of the augmented image),
                `labels` and `difficult` of the boxes kept, plus `augment` {policy, sub_policy
                (1-15, research notes §1.6), ops (each with probability, magnitude, applied and
                its drawn parameters), boxes_dropped, dropped (input indices)}
    *.png       other image planes (attention masks) moved with the geometric ops, fill 0
    other fields copied unchanged
The draws come from `numpy_generator(seed, "augment", key)`, so any shard reproduces alone. The
manifest summary counts boxes in, kept and dropped, and how often each sub-policy and op ran.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import typer

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.augment import augment_once
from saliencylab.config import field
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP, numpy_generator
from saliencylab.shards import decode_field, read_shard
from saliencylab.stages import get_stage
from saliencylab.storage import Storage

from jobs.common import Job, Prepared, stage_command

BOX_DECIMALS = 3  # boxes are written rounded to 1/1000 pixel, so the JSON does not carry float noise


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the augment stage."""

    policy: Literal["v3"] = field("v3", "Detection AutoAugment policy (Zoph et al. 2019); v3 as paper A (research notes §1.6).")
    min_box_side: float = field(1.0, "A box narrower or shorter than this (pixels) after clipping is dropped with its label.")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


def training_images(uri: str) -> Artifact:
    """Open a training-set artifact; refuse an ingest that resized the images (its boxes are in original pixels)."""
    artifact = open_artifact(uri)
    if artifact.manifest.stage == "ingest" and artifact.manifest.params.get("resize") != "none":
        raise StageError(
            f"{uri} was ingested with resize={artifact.manifest.params.get('resize')!r}; the training images must "
            "keep their native size (ingest --resize none), so that the boxes are in pixels of the image"
        )
    return artifact


def _checked(sample: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Image, (K, 4) boxes and extra planes of a training sample; ValueError names what is wrong."""
    key, image, meta = sample["__key__"], sample["image.png"], sample["meta.json"]
    if list(image.shape[:2]) != list(meta.get("size", image.shape[:2])) or meta.get("size") != meta.get("original_size"):
        raise ValueError(
            f"sample {key!r}: image {list(image.shape[:2])}, meta size {meta.get('size')}, original size "
            f"{meta.get('original_size')}: boxes must be in pixels of the image (ingest --resize none)"
        )
    boxes = np.asarray(meta.get("boxes", []), dtype=np.float64).reshape(-1, 4)
    if not len(meta.get("labels", [])) == len(meta.get("difficult", [])) == len(boxes):
        raise ValueError(f"sample {key!r}: {len(boxes)} boxes but {len(meta.get('labels', []))} labels, {len(meta.get('difficult', []))} difficult flags")
    extras = {f: v for f, v in sample.items() if f.endswith(".png") and f != "image.png"}
    for name, plane in extras.items():
        if plane.shape != image.shape[:2]:
            raise ValueError(f"sample {key!r}: {name} is {plane.shape}, the image {image.shape[:2]}; cannot move it with the image")
    return image, boxes, extras


def augment_sample(sample: dict[str, Any], config: AugmentConfig) -> dict[str, Any]:
    """The augmented training sample; raises ValueError for a malformed one."""
    image, boxes, extras = _checked(sample)
    meta = sample["meta.json"]
    result = augment_once(image, boxes, numpy_generator(config.seed, "augment", sample["__key__"]), extras, config.min_box_side)
    kept = [int(i) for i in result.kept]
    record = {
        "policy": config.policy,
        "sub_policy": result.sub_policy,
        "ops": list(result.ops),
        "boxes_dropped": len(boxes) - len(kept),
        "dropped": sorted(set(range(len(boxes))) - set(kept)),
    }
    new_meta = meta | {
        "boxes": [[round(float(v), BOX_DECIMALS) for v in box] for box in result.boxes],
        "labels": [meta["labels"][i] for i in kept],
        "difficult": [meta["difficult"][i] for i in kept],
        "augment": record,
    }
    return sample | result.extras | {"image.png": result.image, "meta.json": new_meta}


def prepare(inputs: dict[str, str], config: AugmentConfig) -> Prepared:
    images = training_images(inputs["images"])

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        out = []
        for sample in images.samples(shard):
            with policy.guard(sample["__key__"], f"{images.storage.uri}/{shard}"):
                out.append(augment_sample(sample, config))
        return out

    return Prepared({"images": images.input_spec}, images.shard_tasks(), process, tuple(images.manifest.warnings))


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Box counts, drops, and how often each sub-policy and op ran, for the manifest summary."""
    metas = [
        decode_field("meta.json", sample["meta.json"])
        for record in records  # our own shards: the manifest does not exist yet; decode only meta.json
        for sample in read_shard(out.read_bytes(record.name), record.name, decode=False)
    ]
    kept = sum(len(m["boxes"]) for m in metas)
    dropped = sum(m["augment"]["boxes_dropped"] for m in metas)
    ops = Counter(op["op"] for m in metas for op in m["augment"]["ops"] if op["applied"])
    summary = {
        "samples": len(metas),
        "boxes_in": kept + dropped,
        "boxes_kept": kept,
        "boxes_dropped": dropped,
        "samples_with_dropped_boxes": sum(m["augment"]["boxes_dropped"] > 0 for m in metas),
        "samples_without_boxes": sum(not m["boxes"] for m in metas),
        "sub_policy_counts": {str(k): v for k, v in sorted(Counter(m["augment"]["sub_policy"] for m in metas).items())},
        "ops_applied": dict(sorted(ops.items())),
    }
    return summary, {}


JOB = Job(spec=get_stage("augment"), version="1", config_cls=AugmentConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
