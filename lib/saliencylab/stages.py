"""The stage registry: the one declaration of every stage that exists.

The typer sub-commands, the local runner, the bake targets, the Argo WorkflowTemplates and the
parametrised tests are all derived from `STAGES`; a test checks that the committed derived files
agree with it. A stage appears here only once it is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A DNS-1123 label: the stage name is part of image, WorkflowTemplate, pod and label names.
STAGE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
MAX_STAGE_NAME = 40  # "saliencylab-<name>" and Argo's generated pod names stay under the 63-character label limit


@dataclass(frozen=True)
class StageSpec:
    """One batch stage: a CLI sub-command, a job module, a container image and a pod shape."""

    name: str  # CLI sub-command, image name and WorkflowTemplate name
    summary: str  # one line for --help and docs
    inputs: tuple[str, ...]  # named inputs, in the order a bare `--input URI` list fills them
    optional_inputs: tuple[str, ...] = ()  # inputs that may be left out
    gpu: bool = False  # needs an accelerator on the cluster (runs on CPU too)
    cpu: str = "2"  # Kubernetes CPU request in whole cores; also the pods' torch and numba thread counts
    memory: str = "4Gi"  # Kubernetes memory request and limit
    gpus: int = 1  # GPUs per worker pod when gpu=True; above 1 the worker runs under torchrun, one process per GPU
    worker_hours: int = 6  # deadline of one worker pod, in hours (a training stage needs more than a batch one)
    retry_exit_codes: tuple[int, ...] = ()  # exit codes this stage documents as transient: the cluster retries them

    def __post_init__(self) -> None:
        if not STAGE_NAME.fullmatch(self.name) or len(self.name) > MAX_STAGE_NAME:
            raise ValueError(
                f"stage name {self.name!r} is not a DNS-1123 label of at most {MAX_STAGE_NAME} characters "
                "(lower-case letters, digits and '-', starting and ending with a letter or digit): "
                "it names the image, the WorkflowTemplate and the pods"
            )
        if self.gpus < 1 or (self.gpus > 1 and not self.gpu):
            raise ValueError(f"stage {self.name}: gpus={self.gpus} needs gpu=True and a count of at least 1")
        if not 1 <= self.worker_hours <= 7 * 24:
            raise ValueError(f"stage {self.name}: worker_hours={self.worker_hours} must be between 1 and 168")
        if {0, 1, 2, 137} & set(self.retry_exit_codes):
            raise ValueError(f"stage {self.name}: exit codes 0, 1, 2 and 137 (success, bug, bad input, OOM kill) are never transient")

    @property
    def module(self) -> str:
        return f"jobs.{self.name.replace('-', '_')}"


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        name="ingest",
        summary="Read PASCAL VOC, attention masks or an image folder into resized, sharded samples.",
        inputs=("images", "masks"),
        optional_inputs=("masks",),
        cpu="2",
        memory="4Gi",
    ),
    StageSpec(
        name="cam",
        summary="EigenCAM saliency maps of one object detector (seven in the registry), batched, to the target layer only.",
        inputs=("images", "model"),
        optional_inputs=("model",),
        gpu=True,
        cpu="4",
        memory="16Gi",
    ),
    StageSpec(
        name="deepgaze",
        summary="Predict human fixations with DeepGaze IIE: a log-density and a density map per image.",
        inputs=("images",),
        gpu=True,
        cpu="4",
        memory="16Gi",
    ),
    StageSpec(
        name="compare",
        summary="Join two map artifacts by sample key and score every pair (MAE, IoU, CC, KLdiv, SIM).",
        inputs=("pred", "target"),
        cpu="2",
        memory="4Gi",
    ),
    StageSpec(
        name="erase",
        summary="Selective erasing: fill the CAM's top 2.5% pixels of the training images whose CAM disagrees with DeepGaze or the human mask.",
        inputs=("images", "cam", "deepgaze", "human"),
        optional_inputs=("deepgaze", "human"),
        cpu="2",
        memory="4Gi",
    ),
    StageSpec(
        name="inpaint",
        summary="Selective inpainting: fill the erased pixels of each changed sample with Deep Image Prior, networks batched.",
        inputs=("images",),
        gpu=True,
        cpu="4",
        memory="16Gi",
    ),
    StageSpec(
        name="augment",
        summary="Non-trivial augmentation: each training image transformed once by a detection AutoAugment v3 sub-policy, boxes moved.",
        inputs=("images",),
        cpu="2",
        memory="4Gi",
    ),
    StageSpec(
        name="finetune",
        summary="Fine-tune COCO Faster R-CNN on a training-set artifact (paper recipe), resumable: weights per epoch, curves.",
        inputs=("train",),
        gpu=True,
        cpu="8",
        memory="32Gi",
        worker_hours=24,  # docs/finetune.md: about 6 h on a Colab-class GPU, 1-3 h on V100/A100
    ),
    StageSpec(
        name="evaluate",
        summary="Detections of a fine-tuned Faster R-CNN on an image set, scored by COCO AP50 and VOC07/VOC2010 AP@0.5.",
        inputs=("model", "images"),
        gpu=True,
        cpu="4",
        memory="16Gi",
    ),
    StageSpec(
        name="hsi-labels",
        summary="HSI Algorithm 1: SALICON fixations and COCO masks to passive and pseudo conditional (per-category) saliency labels.",
        inputs=("salicon", "coco"),
        cpu="2",
        memory="8Gi",
    ),
    StageSpec(
        name="hsi-train",
        summary="HSI training: pre-training on pseudo labels (best epoch kept) or k-fold fine-tuning on HSB, one fold per shard; resumable.",
        inputs=("train", "val", "init"),
        optional_inputs=("val", "init"),
        gpu=True,
        cpu="8",
        memory="32Gi",
        worker_hours=24,
    ),
    StageSpec(
        name="hsi-predict",
        summary="HSI (CLIP RN50 + decoder): a human saliency map per (image, label) sample, for compare; --fold k: a fold's held-out samples.",
        inputs=("images", "model"),
        optional_inputs=("model",),
        gpu=True,
        cpu="4",
        memory="16Gi",
    ),
    StageSpec(
        name="xai",
        summary="Explanation maps of a ResNet-50 classifier per labelled sample: one method per run (gbp, gradcam, rise), batched.",
        inputs=("images",),
        gpu=True,
        cpu="4",
        memory="16Gi",
    ),
    StageSpec(
        name="report",
        summary="Render the study's tables, overlays and histograms as Markdown and one self-contained HTML file.",
        inputs=("run",),
        cpu="1",
        memory="4Gi",
    ),
)


def get_stage(name: str) -> StageSpec:
    """The stage called `name`; raises ValueError listing the valid names."""
    for spec in STAGES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown stage {name!r}; valid stages: {[s.name for s in STAGES]}")
