"""Stage `ingest`: raw images (PASCAL VOC or a plain folder) and attention masks -> resized, sharded samples.

Each output sample `<id>` holds:
    image.png   uint8 (H, W, 3) RGB, resized by the resize policy (paper: squash to 512×512)
    mask.png    uint8 (H, W) human attention mask at the same size, when the id has one
    meta.json   id, source file, original (height, width), size, resize policy, original colour mode,
                boxes (x0, y0, x1, y1 in original pixels), labels, difficult flags,
                mask classes, mask files, duplicate-mask policy and whether the masks are synthetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import typer

from saliencylab.config import field
from saliencylab.datasets.masks import SYNTHETIC_MARKER, index_masks, merge_masks
from saliencylab.datasets.voc import find_root, parse_annotation, parse_split
from saliencylab.images import decode_image, resize, target_size
from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.runner import ErrorPolicy, ShardTask, StageError, plan_tasks
from saliencylab.stages import get_stage
from saliencylab.storage import Storage, open_storage

from jobs.common import Job, Prepared, stage_command

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class IngestConfig:
    """Parameters of the ingest stage."""

    format: Literal["voc", "folder"] = field("voc", "Layout of the images input: a VOCdevkit folder or a plain folder of images.")
    split: str = field(
        "all",
        "Which ids (voc): an ImageSets/Main split (train, val, trainval, ...), 'all', 'masked' (ids with an "
        "attention mask: the paper's test set) or 'unmasked' (all others: the paper's training set).",
    )
    size: int = field(512, "Side in pixels for the 'squash' resize policy (paper: 512).")
    resize: Literal["squash", "none"] = field("squash", "squash: size×size ignoring aspect ratio (paper); none: native size.")
    duplicate_masks: Literal["max", "mean", "last"] = field(
        "max", "How to merge one id's masks under two classes: pixelwise max, mean, or the alphabetically last (paper)."
    )
    shard_size: int = field(64, "Samples per output shard.")
    limit: int = field(0, "Keep only the first N ids after sorting (0 = all); for smoke runs.")


def listing_digest(keys: list[str]) -> str:
    """A digest of a raw input: its URI-independent key list. Raw folders have no manifest."""
    return "listing:" + sha256_hex(canonical_json(keys))


def _voc_items(images: Storage, keys: list[str], config: IngestConfig, masks: dict[str, list]) -> list[dict[str, Any]]:
    root = find_root(keys)
    base = f"{root}/" if root else ""
    jpegs = {k[len(base) + len("JPEGImages/") :].rsplit(".", 1)[0]: k for k in keys if k.startswith(f"{base}JPEGImages/")}
    annotations = {k[len(base) + len("Annotations/") :].rsplit(".", 1)[0]: k for k in keys if k.startswith(f"{base}Annotations/")}
    if config.split == "all":
        ids = sorted(set(jpegs) | set(masks))  # a mask without its image is an error, not a silent drop
    elif config.split == "masked":
        ids = sorted(masks)
    elif config.split == "unmasked":
        ids = sorted(set(jpegs) - set(masks))
    else:
        split_key = f"{base}ImageSets/Main/{config.split}.txt"
        if split_key not in keys:
            raise ValueError(f"split {config.split!r}: {images.uri}/{split_key} does not exist")
        ids = sorted(set(parse_split(images.read_bytes(split_key))))
    return [
        {"id": i, "image": jpegs.get(i), "annotation": annotations.get(i), "masks": masks.get(i, [])} for i in ids
    ]


def _folder_items(keys: list[str], masks: dict[str, list]) -> list[dict[str, Any]]:
    items, seen = [], {}
    for key in keys:
        if not key.lower().endswith(IMAGE_SUFFIXES):
            continue
        sample_id = re.sub(r"[^A-Za-z0-9_\-]", "_", key.rsplit(".", 1)[0])
        if sample_id in seen:
            raise ValueError(f"files {seen[sample_id]!r} and {key!r} map to the same sample id {sample_id!r}")
        seen[sample_id] = key
        items.append({"id": sample_id, "image": key, "annotation": None, "masks": masks.get(sample_id, [])})
    return sorted(items, key=lambda item: item["id"])


def _sample(item: dict[str, Any], images: Storage, masks: Storage | None, config: IngestConfig, synthetic: bool) -> dict:
    """Build one output sample; raises ValueError or FileNotFoundError naming the bad file."""
    if item["image"] is None:
        if item["masks"]:
            raise FileNotFoundError(f"attention mask(s) {[k for _, k in item['masks']]} have no image {item['id']!r}")
        raise FileNotFoundError(f"the split lists {item['id']!r} but there is no such image")
    rgb, mode = decode_image(images.read_bytes(item["image"]), f"{images.uri}/{item['image']}")
    original = rgb.shape[:2]
    size = target_size(original, config.size, config.resize)
    meta: dict[str, Any] = {
        "id": item["id"],
        "source": item["image"],
        "original_size": list(original),
        "size": list(size),
        "resize": config.resize,
        "original_mode": mode,
        "boxes": [],
        "labels": [],
        "difficult": [],
        "mask_classes": [c for c, _ in item["masks"]],
        "mask_files": [k for _, k in item["masks"]],
        "mask_policy": config.duplicate_masks,
        "mask_synthetic": synthetic,
    }
    if item["annotation"] is not None:
        source = f"{images.uri}/{item['annotation']}"
        ann = parse_annotation(images.read_bytes(item["annotation"]), source)
        if (ann.height, ann.width) != original:
            raise ValueError(f"{source} says {ann.height}x{ann.width} but the image is {original[0]}x{original[1]}")
        meta.update(boxes=[list(b) for b in ann.boxes], labels=list(ann.labels), difficult=list(ann.difficult))
    sample = {"__key__": item["id"], "image.png": resize(rgb, size), "meta.json": meta}
    if item["masks"]:
        decoded = [decode_image(masks.read_bytes(k), f"{masks.uri}/{k}", mode="L")[0] for _, k in item["masks"]]
        sample["mask.png"] = merge_masks([resize(m, size) for m in decoded], config.duplicate_masks)
    return sample


def _source(item: dict[str, Any], images: Storage, masks: Storage | None) -> str:
    """The file an item comes from, for error messages: its image, else its first mask."""
    if item["image"] is not None or not item["masks"] or masks is None:
        return f"{images.uri}/{item['image'] or 'ImageSets'}"
    return f"{masks.uri}/{item['masks'][0][1]}"


def prepare(inputs: dict[str, str], config: IngestConfig) -> Prepared:
    images = open_storage(inputs["images"])
    image_keys = images.list()
    if not image_keys:
        raise StageError(f"input {images.uri} is empty or does not exist")
    masks = open_storage(inputs["masks"]) if inputs.get("masks") else None
    mask_keys = masks.list() if masks else []
    if masks and not mask_keys:
        raise StageError(f"masks input {masks.uri} is empty or does not exist")
    mask_index = index_masks(mask_keys)
    synthetic = SYNTHETIC_MARKER in mask_keys
    if config.format == "voc":
        try:
            items = _voc_items(images, image_keys, config, mask_index)
        except ValueError as e:
            raise StageError(f"{images.uri}: {e}") from None
    else:
        items = _folder_items(image_keys, mask_index)
    if config.limit:
        items = items[: config.limit]
    if not items:
        raise StageError(f"no images selected from {images.uri} (format {config.format}, split {config.split})")

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        samples = []
        for item in task.items:
            try:
                samples.append(_sample(item, images, masks, config, synthetic))
            except (ValueError, FileNotFoundError) as e:
                policy.record(item["id"], _source(item, images, masks), e)
        return samples

    digests = {"images": {"uri": images.uri, "digest": listing_digest(image_keys)}}
    if masks:
        digests["masks"] = {"uri": masks.uri, "digest": listing_digest(mask_keys)}
    warnings = ("the attention masks are SYNTHETIC stand-ins, not human data",) if synthetic else ()
    return Prepared(digests, plan_tasks(items, config.shard_size), process, warnings)


JOB = Job(spec=get_stage("ingest"), version="1", config_cls=IngestConfig, prepare=prepare)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
