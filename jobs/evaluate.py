"""Stage `evaluate`: a fine-tuned Faster R-CNN on an evaluation image set -> detections and AP metrics.

Inputs: `model`, a `finetune` artifact (its weights are read with `saliencylab.weights.load_finetuned`),
and `images`, an ingest-format artifact whose meta.json holds the objects (the paper's test set
is the 898 masked VOC 2012 images, `ingest --split masked`; the official val split works the same).
Each output sample `<key>` holds:
    detections.json  boxes (x0, y0, x1, y1 in pixels of the ORIGINAL image, also after a squash
                     ingest), scores (descending) and labels (VOC class names)
    truth.json       the objects it is scored against: boxes, labels, difficult, original_size
At merge time the stage computes COCO-style AP50 (pycocotools' protocol, paper A's "mAP@0.5"),
VOC07 11-point and VOC2010+ all-point AP@0.5 per class and their means
(`saliencylab.detection.ap`), writes them as metrics.json and metrics.csv, and puts them in the
manifest's summary.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Literal

import typer

from saliencylab.artifacts import open_artifact
from saliencylab.batches import map_image_batches
from saliencylab.config import field
from saliencylab.datasets.voc import VOC_CLASSES
from saliencylab.detection import Detections, GroundTruth, average_precision, class_indices
from saliencylab.detection.defaults import TORCHVISION_DETECTIONS_PER_IMAGE, TORCHVISION_SCORE_THRESHOLD
from saliencylab.training.defaults import PAPER_ARCHITECTURE, TORCHVISION_MAX_SIZE, TORCHVISION_MIN_SIZE
from saliencylab.manifests import canonical_json
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError
from saliencylab.shards import read_shard
from saliencylab.stages import get_stage
from saliencylab.storage import Storage
from saliencylab.weights import FINETUNE_FINAL, load_finetuned

from jobs.common import Job, Prepared, stage_command

NUM_CLASSES = len(VOC_CLASSES) + 1  # VOC's 20 and the background


@dataclass(frozen=True)
class EvaluateConfig:
    """Parameters of the evaluate stage."""

    weights: str = field(FINETUNE_FINAL, "Which weights of the model artifact: 'final' or a name in its summary (e.g. epoch-3).")
    min_size: int = field(0, "Short side of the detector's internal resize, pixels; 0 = as the model was trained (paper: 800).")
    max_size: int = field(0, "Long-side cap of the internal resize, pixels; 0 = as the model was trained (paper: 1333).")
    score_threshold: float = field(TORCHVISION_SCORE_THRESHOLD, "Lowest score of a kept detection (torchvision default 0.05, paper).")
    detections_per_image: int = field(TORCHVISION_DETECTIONS_PER_IMAGE, "Detections kept per image after NMS (torchvision and COCO: 100).")
    coco_difficult: Literal["gt", "ignore"] = field(
        "gt", "Difficult objects in COCO AP50: gt = ordinary objects (paper's code), ignore = crowd regions (docs in detection/ap.py)."
    )
    voc_difficult: Literal["gt", "ignore"] = field("ignore", "Difficult objects in VOC07/VOC2010 AP: ignore (the devkit's rule) or gt.")
    iou_threshold: float = field(0.5, "IoU of a match (COCO: >=, VOC: >), all three protocols (paper: 0.5).")
    batch_size: int = field(4, "Images per forward pass (same-size images only).")
    device: str = field("auto", "auto (CUDA if present), cpu or cuda[:N].")


def model_setup(config: EvaluateConfig, model_summary: dict[str, Any]) -> dict[str, Any]:
    """Architecture and input size of the detector: the finetune summary's, unless the config sets a size."""
    trained = model_summary.get("input_size", {})
    return {
        "architecture": model_summary.get("architecture", PAPER_ARCHITECTURE),
        "min_size": config.min_size or trained.get("min_size", TORCHVISION_MIN_SIZE),
        "max_size": config.max_size or trained.get("max_size", TORCHVISION_MAX_SIZE),
    }


def truth_record(sample: dict[str, Any]) -> dict[str, Any]:
    """The objects of one ingest sample as stored in truth.json; raises ValueError/KeyError on bad meta."""
    meta = sample["meta.json"]
    record = {
        "boxes": [[float(v) for v in box] for box in meta["boxes"]],
        "labels": list(meta["labels"]),
        "difficult": [bool(d) for d in meta["difficult"]],
        "original_size": list(meta.get("original_size", sample["image.png"].shape[:2])),
    }
    as_ground_truth(record)  # validates shapes and class names
    return record


def as_ground_truth(record: dict[str, Any]) -> GroundTruth:
    return GroundTruth(record["boxes"], class_indices(record["labels"], VOC_CLASSES), record["difficult"])


def detections_record(detections: Detections) -> dict[str, Any]:
    return {
        "boxes": detections.boxes.tolist(),
        "scores": detections.scores.tolist(),
        "labels": [VOC_CLASSES[i - 1] for i in detections.labels.tolist()],
    }


def prepare(inputs: dict[str, str], config: EvaluateConfig) -> Prepared:
    from saliencylab.detection import build_faster_rcnn, detect, rescale  # deferred: torch, not needed by --help
    from saliencylab.devices import pick_device

    images = open_artifact(inputs["images"])
    if images.manifest.num_samples == 0:
        raise StageError(f"the evaluation set {images.storage.uri} has no images")
    tuned = load_finetuned(inputs["model"], config.weights)
    classes = list(tuned.summary.get("classes", ["__background__", *VOC_CLASSES]))
    if tuned.num_classes != NUM_CLASSES or classes != ["__background__", *VOC_CLASSES]:
        raise StageError(
            f"{inputs['model']} predicts {tuned.num_classes} classes (labelled {classes}); "
            f"evaluate scores VOC's 20 + background = {NUM_CLASSES}: {['__background__', *VOC_CLASSES]}"
        )
    device = pick_device(config.device)
    model = build_faster_rcnn(
        tuned.state_dict,
        NUM_CLASSES,
        **model_setup(config, tuned.summary),
        score_threshold=config.score_threshold,
        detections_per_image=config.detections_per_image,
    ).to(device)

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        samples, truths = [], {}
        for sample in images.samples(shard):
            with policy.guard(sample["__key__"], f"{images.storage.uri}/{shard}"):
                truths[sample["__key__"]] = truth_record(sample)
                samples.append(sample)

        def compute(pixels):  # (B, 3, H, W) RGB in [0, 255]
            return [{"found": d} for d in detect(model, pixels / 255)]

        found = map_image_batches(samples, config.batch_size, device, compute)
        return [
            {
                "__key__": s["__key__"],
                "detections.json": detections_record(rescale(f["found"], s["image.png"].shape[:2], truths[s["__key__"]]["original_size"])),
                "truth.json": truths[s["__key__"]],
            }
            for s, f in zip(samples, found)
        ]

    warnings = tuple(dict.fromkeys([*tuned.warnings, *images.manifest.warnings]))
    return Prepared({"model": tuned.artifact, "images": images.input_spec}, images.shard_tasks(), process, warnings)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """AP of all stored detections under the three protocols: metrics.json, metrics.csv and the summary."""
    config = EvaluateConfig(**request.params)
    truths, found = [], []
    for record in records:  # our own shards: the manifest does not exist yet
        for sample in read_shard(out.read_bytes(record.name), record.name):
            truths.append(as_ground_truth(sample["truth.json"]))
            d = sample["detections.json"]
            found.append(Detections(d["boxes"], d["scores"], class_indices(d["labels"], VOC_CLASSES)))
    difficult = {"coco_ap50": config.coco_difficult, "voc07": config.voc_difficult, "voc2010": config.voc_difficult}
    results = {
        p: average_precision(truths, found, NUM_CLASSES - 1, p, difficult=mode, iou_threshold=config.iou_threshold)
        for p, mode in difficult.items()
    }
    summary: dict[str, Any] = {
        "images": len(truths),
        "model": {"weights": config.weights, **model_setup(config, open_artifact(request.inputs["model"]["uri"]).manifest.summary)},
        "difficult": difficult,
        "iou_threshold": config.iou_threshold,
        "map": {p: _number(r.mean) for p, r in results.items()},
        "per_class": {p: {c: _number(v) for c, v in zip(VOC_CLASSES, r.per_class)} for p, r in results.items()},
        "positives": {p: dict(zip(VOC_CLASSES, r.positives)) for p, r in results.items()},
        "detections": dict(zip(VOC_CLASSES, results["coco_ap50"].detections)),
    }
    return summary, {"metrics.json": canonical_json(summary), "metrics.csv": metrics_csv(summary)}


def _cell(value: float | None) -> float | str:
    return "" if value is None else value  # None: no positives (NaN AP), an empty cell


def metrics_csv(summary: dict[str, Any]) -> bytes:
    """One row per class and a last `mean` row: positives (COCO / VOC counting), detections, the three APs."""
    protocols = list(summary["map"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "positives_coco", "positives_voc", "detections", *protocols])
    for c in VOC_CLASSES:
        aps = [_cell(summary["per_class"][p][c]) for p in protocols]
        writer.writerow([c, summary["positives"]["coco_ap50"][c], summary["positives"]["voc07"][c], summary["detections"][c], *aps])
    writer.writerow(["mean", "", "", "", *(_cell(summary["map"][p]) for p in protocols)])
    return buffer.getvalue().encode()


JOB = Job(spec=get_stage("evaluate"), version="1", config_cls=EvaluateConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
