"""The stage registry: the one declaration of every stage that exists.

The typer sub-commands, the local runner, the bake targets, the Argo WorkflowTemplates and the
parametrised tests are all derived from `STAGES`; a test checks that the committed derived files
agree with it. A stage appears here only once it is built.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        inputs=("images",),
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
