"""Stage `ingest`: raw images (PASCAL VOC or a plain folder) and attention masks -> resized, sharded samples.

Images and masks are decoded under the decoding contract of `saliencylab.images` (EXIF
orientation, 16-bit, alpha, colour modes, max_pixels). Sample ids are file names made safe by
`saliencylab.datasets.names.sample_id`, the same rule for VOC ids, folder paths and mask files.

Each output sample `<id>` holds:
    image.png   uint8 (H, W, 3) RGB, resized by the resize policy (paper: squash to 512×512)
    mask.png    uint8 (H, W) human attention mask at the same size, when the id has one
    meta.json   id, source file, original (height, width) as displayed, size, resize policy, original
                colour mode, decode notes (orientation, bit depth, alpha, conversions; masks prefixed
                "mask: "), whether an annotation XML exists, boxes (x0, y0, x1, y1 in original pixels,
                clipped to the image), labels, difficult flags, how many boxes were clipped and how
                many dropped as degenerate, mask classes, mask files, duplicate-mask policy and
                whether the masks are synthetic.
The manifest's summary counts unannotated images, clipped and dropped boxes and each decode note.

`--format hsb` reads the HSI benchmark through a manifest (`saliencylab.datasets.hsb`, docs/hsi.md):
each sample holds image.png, saliency.npy (float32 (H, W) in [0, 1], the human map at the image's
size), fixations.npy (uint16 (H, W) counts, when the row names fixations) and meta.json (label,
kind "conditional", the files, sizes, decode notes), like the conditional samples of hsi-labels.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import typer

from saliencylab.config import field
from saliencylab.datasets.hsb import parse_hsb_manifest
from saliencylab.datasets.masks import MASK_LAYOUT, SYNTHETIC_MARKER, check_mask_aspect, index_masks, merge_masks
from saliencylab.datasets.names import clashing_names, printable, sample_id
from saliencylab.datasets.voc import clip_annotation, find_root, parse_annotation, parse_split
from saliencylab.images import DEFAULT_MAX_PIXELS, MASK_BACKGROUND, decode_image, resize, target_size
from saliencylab.manifests import canonical_json, sha256_hex
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError, plan_tasks
from saliencylab.shards import read_shard
from saliencylab.stages import get_stage
from saliencylab.storage import Storage, open_storage

from jobs.common import Job, Prepared, stage_command

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class IngestConfig:
    """Parameters of the ingest stage."""

    format: Literal["voc", "folder", "hsb"] = field(
        "voc", "Layout of the images input: a VOCdevkit folder, a plain folder of images, or HSB through its manifest."
    )
    manifest: str = field("hsb.csv", "format hsb: the manifest (CSV or JSON: image, label, map, fixations) inside the images input; docs/hsi.md.")
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
    max_pixels: int = field(
        DEFAULT_MAX_PIXELS,
        "Largest width x height decoded (default: Pillow's bomb threshold); a larger image or mask is a bad item.",
    )
    mask_aspect_tolerance: float = field(
        0.01, "Largest relative difference between a mask's aspect ratio and its image's; beyond it the item is bad."
    )


def listing_digest(keys: list[str]) -> str:
    """A digest of a raw input: its URI-independent key list. Raw folders have no manifest."""
    return "listing:" + sha256_hex(canonical_json(keys))


def _by_id(keys: list[str], prefix: str) -> dict[str, list[str]]:
    """Sample id -> the keys under `prefix` whose name (without extension) maps to it."""
    found: dict[str, list[str]] = {}
    for key in keys:
        if key.startswith(prefix):
            found.setdefault(sample_id(key[len(prefix) :].rsplit(".", 1)[0]), []).append(key)
    return found


def _item(sample: str, images: list[str], annotations: list[str], masks: dict[str, list], clashes: dict[str, str]) -> dict:
    return {
        "id": sample,
        "image": images[0] if images else None,
        "annotation": annotations[0] if annotations else None,
        "masks": masks.get(sample, []),
        "clash": clashes.get(sample),
    }


def _voc_items(images: Storage, keys: list[str], config: IngestConfig, masks: dict[str, list]) -> tuple[list[dict], set[str]]:
    """The items of the selected split, and the ids of every image of the dataset."""
    root = find_root(keys)
    base = f"{root}/" if root else ""
    jpegs, annotations = _by_id(keys, f"{base}JPEGImages/"), _by_id(keys, f"{base}Annotations/")
    clashes = clashing_names(jpegs) | clashing_names(annotations)
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
        ids = sorted({sample_id(i) for i in parse_split(images.read_bytes(split_key))})
    items = [_item(i, jpegs.get(i, []), annotations.get(i, []), masks, clashes) for i in ids]
    return items, set(jpegs)


def _folder_items(keys: list[str], masks: dict[str, list]) -> tuple[list[dict], set[str]]:
    """One item per image file (sorted by id), and the set of their ids."""
    files = _by_id([k for k in keys if k.lower().endswith(IMAGE_SUFFIXES)], "")
    clashes = clashing_names(files)
    return [_item(i, files[i], [], masks, clashes) for i in sorted(files)], set(files)


def _sample(item: dict[str, Any], images: Storage, masks: Storage | None, config: IngestConfig, synthetic: bool) -> dict:
    """Build one output sample; raises ValueError or FileNotFoundError naming the bad file."""
    if item["clash"]:
        raise ValueError(item["clash"])
    if item["image"] is None:
        if item["masks"]:
            raise FileNotFoundError(f"attention mask(s) {[printable(k) for _, k in item['masks']]} have no image {item['id']!r}")
        raise FileNotFoundError(f"the split lists {item['id']!r} but there is no such image")
    image = decode_image(images.read_bytes(item["image"]), _uri(images, item["image"]), max_pixels=config.max_pixels)
    original = image.pixels.shape[:2]
    size = target_size(original, config.size, config.resize)
    meta: dict[str, Any] = {
        "id": item["id"],
        "source": printable(item["image"]),
        "original_size": list(original),
        "size": list(size),
        "resize": config.resize,
        "original_mode": image.mode,
        "decode_notes": list(image.notes),
        **_boxes(item, images, original, image.notes),
        "mask_classes": [c for c, _ in item["masks"]],
        "mask_files": [printable(k) for _, k in item["masks"]],
        "mask_policy": config.duplicate_masks,
        "mask_synthetic": synthetic,
    }
    sample = {"__key__": item["id"], "image.png": resize(image.pixels, size), "meta.json": meta}
    if item["masks"]:
        sample["mask.png"], notes = _merged_mask(item, masks, config, original, size)
        meta["decode_notes"] += notes
    return sample


def _merged_mask(item: dict, masks: Storage, config: IngestConfig, original: tuple[int, int], size: tuple[int, int]) -> tuple:
    """The item's masks decoded, checked against the image's aspect ratio, resized and merged; and their notes."""
    decoded, notes = [], []
    for _, key in item["masks"]:
        data, uri = masks.read_bytes(key), _uri(masks, key)
        mask = decode_image(data, uri, "L", max_pixels=config.max_pixels, background=MASK_BACKGROUND)
        try:
            check_mask_aspect(mask.pixels.shape, original, config.mask_aspect_tolerance)
        except ValueError as e:
            raise ValueError(f"{uri}: {e}") from None
        notes += [f"mask: {note}" for note in mask.notes]
        decoded.append(resize(mask.pixels, size))
    return merge_masks(decoded, config.duplicate_masks), notes


def _boxes(item: dict[str, Any], images: Storage, original: tuple[int, int], notes: tuple[str, ...]) -> dict[str, Any]:
    """The meta fields of the item's annotation: boxes clipped to the image, with the counts."""
    fields: dict[str, Any] = {"annotated": item["annotation"] is not None, "boxes": [], "labels": [], "difficult": []}
    fields.update(boxes_clipped=0, boxes_dropped=0)
    if item["annotation"] is None:
        return fields
    source = _uri(images, item["annotation"])
    ann = parse_annotation(images.read_bytes(item["annotation"]), source)
    if (ann.height, ann.width) != original:
        orientation = [note for note in notes if note.startswith("EXIF orientation")]
        displayed = f" as displayed ({orientation[0]})" if orientation else ""
        raise ValueError(f"{source} says {ann.height}x{ann.width} but the image is {original[0]}x{original[1]}{displayed}")
    ann, clipped, dropped = clip_annotation(ann)
    fields.update(boxes=[list(b) for b in ann.boxes], labels=list(ann.labels), difficult=list(ann.difficult))
    return fields | {"boxes_clipped": clipped, "boxes_dropped": dropped}


def _uri(storage: Storage, key: str) -> str:
    return f"{storage.uri}/{printable(key)}"


def _source(item: dict[str, Any], images: Storage, masks: Storage | None) -> str:
    """The file an item comes from, for error messages: its image, else its first mask."""
    if item["image"] is not None or not item["masks"] or masks is None:
        return _uri(images, item["image"] or "ImageSets")
    return _uri(masks, item["masks"][0][1])


def _check_config(config: IngestConfig) -> None:
    """Refuse parameters that would fail every item, before anything is read."""
    target_size((1, 1), config.size, config.resize)
    if config.max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {config.max_pixels}")
    if not (math.isfinite(config.mask_aspect_tolerance) and config.mask_aspect_tolerance >= 0):
        raise ValueError(f"mask_aspect_tolerance must be a finite number >= 0, got {config.mask_aspect_tolerance}")


def _check_masks_match(masks: Storage, mask_keys: list[str], mask_index: dict[str, list], image_ids: set[str]) -> None:
    """Refuse a masks input none of whose files belongs to an image: a wrong layout or naming."""
    if not set(mask_index) & image_ids:
        if mask_index:
            found = f"its masks are for ids {sorted(mask_index)[:3]}"
        else:
            found = f"its files are e.g. {[printable(k) for k in mask_keys[:3]]}"
        raise StageError(
            f"masks input {masks.uri} matches no image: {found}. Expected layout {MASK_LAYOUT} "
            f"with <id> the image's id, e.g. {sorted(image_ids)[:3]}"
        )


def _unannotated_warning(items: list[dict[str, Any]]) -> tuple[str, ...]:
    missing = [item["id"] for item in items if item["image"] is not None and item["annotation"] is None]
    if not missing:
        return ()
    return (f"ingest: {len(missing)} of {len(items)} VOC images have no annotation XML (stored without boxes), e.g. {missing[:5]}",)


def prepare(inputs: dict[str, str], config: IngestConfig) -> Prepared:
    _check_config(config)
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
    if config.format == "hsb":
        return _hsb_prepare(images, image_keys, masks, config)
    if config.format == "voc":
        try:
            items, image_ids = _voc_items(images, image_keys, config, mask_index)
        except ValueError as e:
            raise StageError(f"{images.uri}: {e}") from None
    else:
        items, image_ids = _folder_items(image_keys, mask_index)
    if masks:
        _check_masks_match(masks, mask_keys, mask_index, image_ids)
    if config.limit:
        items = items[: config.limit]
    if not items:
        raise StageError(f"no images selected from {images.uri} (format {config.format}, split {config.split})")

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        samples = []
        for item in task.items:
            with policy.guard(item["id"], _source(item, images, masks)):
                samples.append(_sample(item, images, masks, config, synthetic))
        return samples

    digests = {"images": {"uri": images.uri, "digest": listing_digest(image_keys)}}
    if masks:
        digests["masks"] = {"uri": masks.uri, "digest": listing_digest(mask_keys)}
    warnings = ("the attention masks are SYNTHETIC stand-ins, not human data",) if synthetic else ()
    if config.format == "voc":
        warnings += _unannotated_warning(items)
    return Prepared(digests, plan_tasks(items, config.shard_size), process, warnings)


def _hsb_items(images: Storage, keys: list[str], config: IngestConfig) -> list[dict[str, Any]]:
    """The manifest's entries as work items (JSON), each with the files it names that the folder lacks."""
    if config.manifest not in keys:
        raise StageError(f"{images.uri}/{config.manifest} does not exist: format hsb reads the manifest named by --manifest (docs/hsi.md)")
    try:
        entries = parse_hsb_manifest(images.read_bytes(config.manifest), _uri(images, config.manifest))
    except ValueError as e:
        raise StageError(str(e)) from None
    present = set(keys)
    return [asdict(e) | {"missing": [f for f in (e.image, e.map, e.fixations) if f and f not in present]} for e in entries]


def _hsb_map(images: Storage, key: str, original: tuple[int, int], config: IngestConfig) -> tuple[np.ndarray, list[str]]:
    """A grayscale map or fixation image of the item, checked against the image's aspect ratio; and its decode notes."""
    uri = _uri(images, key)
    decoded = decode_image(images.read_bytes(key), uri, "L", max_pixels=config.max_pixels, background=MASK_BACKGROUND)
    try:
        check_mask_aspect(decoded.pixels.shape, original, config.mask_aspect_tolerance)
    except ValueError as e:
        raise ValueError(f"{uri}: {e}") from None
    return decoded.pixels, list(decoded.notes)


def _hsb_sample(item: dict[str, Any], images: Storage, config: IngestConfig) -> dict[str, Any]:
    """One HSB sample: image, saliency map in [0, 1] and fixation counts at the resized size; errors name the file."""
    if item["problem"]:
        raise ValueError(item["problem"])
    if item["missing"]:
        raise FileNotFoundError(f"row {item['row']} of the manifest names {[printable(k) for k in item['missing']]}, missing from {images.uri}")
    image = decode_image(images.read_bytes(item["image"]), _uri(images, item["image"]), max_pixels=config.max_pixels)
    original = image.pixels.shape[:2]
    size = target_size(original, config.size, config.resize)
    saliency, map_notes = _hsb_map(images, item["map"], original, config)
    meta: dict[str, Any] = {
        "id": item["key"], "kind": "conditional", "label": item["label"], "source": printable(item["image"]),
        "map_file": printable(item["map"]), "fixations_file": item["fixations"] and printable(item["fixations"]),
        "original_size": list(original), "size": list(size), "resize": config.resize, "original_mode": image.mode,
        "decode_notes": list(image.notes) + [f"map: {n}" for n in map_notes], "annotated": True,
    }  # fmt: skip
    sample = {"__key__": item["key"], "image.png": resize(image.pixels, size), "meta.json": meta}
    sample["saliency.npy"] = resize(saliency, size).astype(np.float32) / 255.0
    if item["fixations"]:
        fixations, notes = _hsb_map(images, item["fixations"], original, config)
        from saliencylab.hsi.training import resize_fixations  # imports torch; only format hsb needs it

        sample["fixations.npy"] = resize_fixations(fixations, size).astype(np.uint16)
        meta["decode_notes"] += [f"fixations: {n}" for n in notes]
        meta["fixations"] = int(sample["fixations.npy"].sum())
    return sample


def _hsb_prepare(images: Storage, keys: list[str], masks: Storage | None, config: IngestConfig) -> Prepared:
    if masks:
        raise StageError("format hsb takes no masks input: the manifest names each image's map and fixations")
    items = _hsb_items(images, keys, config)[: config.limit or None]

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        samples = []
        for item in task.items:
            with policy.guard(item["key"], _uri(images, item["image"] or config.manifest)):
                samples.append(_hsb_sample(item, images, config))
        return samples

    digests = {"images": {"uri": images.uri, "digest": listing_digest(keys)}}
    return Prepared(digests, plan_tasks(items, config.shard_size), process)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Sum the per-sample counts of the meta records into the manifest's summary (read from our own shards)."""
    notes: Counter[str] = Counter()
    totals = {"samples": 0, "unannotated": 0, "boxes_clipped": 0, "boxes_dropped": 0}
    for record in records:
        for sample in read_shard(out.read_bytes(record.name), record.name, decode=False):
            meta = json.loads(sample["meta.json"])
            notes.update(meta["decode_notes"])
            totals["samples"] += 1
            totals["unannotated"] += not meta["annotated"]
            totals["boxes_clipped"] += meta.get("boxes_clipped", 0)  # HSB samples have no boxes
            totals["boxes_dropped"] += meta.get("boxes_dropped", 0)
    return totals | {"decode_notes": dict(sorted(notes.items()))}, {}


JOB = Job(spec=get_stage("ingest"), version="2", config_cls=IngestConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
