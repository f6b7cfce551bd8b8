"""Stage `hsi-labels`: SALICON fixations + COCO instance masks -> passive and pseudo conditional saliency labels.

Inputs: `salicon`, a folder with `images/<split>/*.jpg` and `fixations/<split>/<same stem>.mat`
(SALICON layout, docs/hsi.md), and `coco`, a folder holding the COCO instances JSON of those images.
Per image `<stem>` (e.g. COCO_train2014_000000000009) the artifact holds:
    <stem>              the passive-viewing label (meta kind "passive", label null)
    <stem>-<category>   one pseudo conditional label per kept category (Algorithm 1; meta kind
                        "conditional", label = the COCO category name); `-<annotation id>` is
                        appended with unit=instance
each with fields
    image.png       uint8 (H, W, 3) RGB at the image's own size
    fixations.npy   uint16 (H, W) fixation map (binary or counts; masked for conditional labels)
    saliency.npy    float32 (H, W) blurred fixation map, scaled by `normalise`
    meta.json       kind, image, label, category id, annotation ids, area ratio, fixation share,
                    fixation counts, sigma in pixels, source files; the passive sample also lists the
                    dropped categories with their statistics
The manifest records the salicon input by its key listing and the coco input by the sha256 of
the annotations file's bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import typer

from saliencylab.config import field
from saliencylab.datasets.coco_instances import image_ids_by_file, instance_masks, load_instances
from saliencylab.datasets.salicon import read_fixations_mat
from saliencylab.hsi.labels import LabelParams, blur_sigma, conditional_label, fixation_points, passive_maps, union_masks
from saliencylab.images import decode_image
from saliencylab.manifests import sha256_hex
from saliencylab.runner import ErrorPolicy, ShardTask, StageError, plan_tasks
from saliencylab.stages import get_stage
from saliencylab.storage import Storage, open_storage

from jobs.common import Job, Prepared, stage_command
from jobs.ingest import listing_digest

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class HSILabelsConfig:
    """Parameters of the hsi-labels stage (Algorithm 1 of the HSI paper; open choices: docs/hsi.md)."""

    split: str = field("train", "SALICON/COCO split: images/<split>/ and fixations/<split>/ (train or val; test has no masks).")
    annotations: str = field(
        "annotations/instances_{split}2014.json", "COCO instances JSON inside the coco input; {split} is filled in."
    )
    unit: Literal["category", "instance"] = field(
        "category", "One conditional label per category (union of its instances) or per object instance."
    )
    include_crowd: bool = field(False, "Use COCO iscrowd annotations (group regions) as masks too.")
    area_threshold: float = field(0.1, "Tₐ: minimum mask area / image area to keep a label (paper: 0.1).")
    share_threshold: float = field(0.05, "T_r: minimum share of the image's fixations inside the mask (paper: 0.05).")
    comparison: Literal[">=", ">"] = field(">=", "How both thresholds compare (paper: ≥).")
    sigma: float = field(19.0, "Gaussian blur sigma in pixels at sigma_reference_width (paper and SALICON: 19).")
    sigma_reference_width: int = field(640, "Image width sigma refers to (SALICON: 640); 0 = sigma in pixels of every image.")
    fixation_values: Literal["binary", "count"] = field("binary", "Fixation map: 1 per fixated pixel, or the count.")
    order: Literal["mask-then-blur", "blur-then-mask"] = field(
        "mask-then-blur", "Conditional saliency: blur the masked fixations (Algorithm 1), or mask the blurred passive map."
    )
    normalise: Literal["max", "minmax", "sum"] = field("max", "Scaling of every saliency map: /max, min-max, or /sum.")
    shard_size: int = field(64, "Images per output shard (each gives 1 + kept categories samples).")
    limit: int = field(0, "Keep only the first N images after sorting (0 = all); for smoke runs.")


def label_params(config: HSILabelsConfig) -> LabelParams:
    """The Algorithm 1 parameters among the stage's config fields."""
    return LabelParams(**{f.name: getattr(config, f.name) for f in fields(LabelParams)})


def slug(name: str) -> str:
    """A sample-key-safe form of a category name ("traffic light" -> "traffic_light")."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "unnamed"


def _plan(salicon: Storage, keys: list[str], split: str) -> list[dict[str, Any]]:
    prefix, present = f"images/{split}/", set(keys)
    images = sorted(k for k in keys if k.startswith(prefix) and k.lower().endswith(IMAGE_SUFFIXES) and "/" not in k[len(prefix) :])
    items = []
    for image in images:
        stem = image[len(prefix) :].rsplit(".", 1)[0]
        if not re.fullmatch(r"[A-Za-z0-9_-]+", stem):
            raise StageError(f"{salicon.uri}/{image}: file name {stem!r} cannot be a sample key (use [A-Za-z0-9_-])")
        fixations = f"fixations/{split}/{stem}.mat"
        items.append({"key": stem, "image": image, "fixations": fixations, "has_fixations": fixations in present})
    return items


def _sample(key: str, rgb: np.ndarray, fixations: np.ndarray, saliency: np.ndarray, meta: dict) -> dict[str, Any]:
    data = {"image.png": rgb, "fixations.npy": fixations.astype(np.uint16), "saliency.npy": saliency, "meta.json": meta}
    return {"__key__": key, **data}


def _read_points(item: dict[str, Any], salicon: Storage, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """The image's in-bounds fixation points (row, column) and their counts for the meta."""
    source = f"{salicon.uri}/{item['fixations']}"
    if not item["has_fixations"]:
        raise FileNotFoundError(f"{source} does not exist: the image has no fixation file")
    gaze = read_fixations_mat(salicon.read_bytes(item["fixations"]), source)
    if gaze.resolution is not None and gaze.resolution != size:
        raise ValueError(f"{source} states resolution {gaze.resolution}, the image is {size}")
    points = fixation_points(gaze.xy, size)
    if len(points) == 0:
        raise ValueError(f"{source}: the image has no fixation inside its bounds")
    counts = {"subjects": len(gaze.subjects), "fixations": int(len(points)), "fixations_dropped": int(len(gaze.xy) - len(points))}
    return points, counts


def _samples(item: dict[str, Any], salicon: Storage, coco, ids: dict[str, int], config: HSILabelsConfig) -> list[dict[str, Any]]:
    """The passive sample and the kept conditional samples of one image; ValueError/FileNotFoundError name the file."""
    params = label_params(config)
    rgb = decode_image(salicon.read_bytes(item["image"]), f"{salicon.uri}/{item['image']}").pixels
    size = rgb.shape[:2]
    points, counts = _read_points(item, salicon, size)
    fixations, saliency = passive_maps(points, size, params)
    file_name = item["image"].rsplit("/", 1)[-1]
    if file_name not in ids:
        raise ValueError(f"{file_name} is not an image of the COCO annotations (no masks for it)")
    objects = instance_masks(coco, ids[file_name], config.include_crowd)
    names = [o.category if config.unit == "category" else f"{o.category}#{o.annotation_id}" for o in objects]
    base = {"image": item["key"], "source": item["image"], "fixation_file": item["fixations"], "size": list(size), **counts,
            "sigma_px": blur_sigma(params, size[1])}  # fmt: skip
    passive = {**base, "kind": "passive", "label": None, "dropped": []}
    samples = [_sample(item["key"], rgb, fixations, saliency, passive)]
    for name, mask in union_masks(list(zip(names, (o.mask for o in objects)))).items():
        members = [o for o, n in zip(objects, names) if n == name]
        label = conditional_label(fixations, mask, params)
        stats = {"label": members[0].category, "area_ratio": label.area_ratio, "fixation_share": label.fixation_share}
        if not label.kept:
            passive["dropped"].append(stats)
            continue
        key = f"{item['key']}-{slug(members[0].category)}" + (f"-{members[0].annotation_id}" if config.unit == "instance" else "")
        if any(s["__key__"] == key for s in samples):
            raise ValueError(f"two categories of {file_name} map to the sample key {key!r}")
        ids_of = [o.annotation_id for o in members]
        meta = {**base, **stats, "kind": "conditional", "category_id": members[0].category_id, "annotation_ids": ids_of}
        samples.append(_sample(key, rgb, label.fixations, label.saliency, meta))
    return samples


def prepare(inputs: dict[str, str], config: HSILabelsConfig) -> Prepared:
    label_params(config)  # refuses bad thresholds before anything is read
    salicon, coco_root = open_storage(inputs["salicon"]), open_storage(inputs["coco"])
    keys = salicon.list()
    items = _plan(salicon, keys, config.split)
    if config.limit:
        items = items[: config.limit]
    if not items:
        raise StageError(f"no images under {salicon.uri}/images/{config.split}/ (SALICON layout, docs/hsi.md)")
    annotations = config.annotations.format(split=config.split)
    if not coco_root.exists(annotations):
        raise StageError(f"{coco_root.uri}/{annotations} does not exist; set --annotations to the instances JSON")
    annotation_bytes = coco_root.read_bytes(annotations)
    coco = load_instances(annotation_bytes, f"{coco_root.uri}/{annotations}")
    ids = image_ids_by_file(coco)

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        samples = []
        for item in task.items:
            with policy.guard(item["key"], f"{salicon.uri}/{item['image']}"):
                samples.extend(_samples(item, salicon, coco, ids, config))
        return samples

    digests = {
        "salicon": {"uri": salicon.uri, "digest": listing_digest(keys)},
        "coco": {"uri": coco_root.uri, "digest": "sha256:" + sha256_hex(annotation_bytes)},
    }
    return Prepared(digests, plan_tasks(items, config.shard_size), process)


JOB = Job(spec=get_stage("hsi-labels"), version="1", config_cls=HSILabelsConfig, prepare=prepare)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
