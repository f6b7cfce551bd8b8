"""Cluster delivery files rendered from the stage registry: Dockerfile, bake file, Argo templates.

`render_all(dependencies, detectors, stages)` returns {path relative to the repository root: text} for:

    images/Dockerfile        shared `runtime` layers, then the targets `cpu` and `gpu` (the two images)
    docker-bake.hcl          the bake targets cpu and gpu: commit tags, SBOM and provenance attestations
    k8s/stages/<stage>.yaml  one Argo WorkflowTemplate per stage: sharded (fan-out + merge), worker, merge
    k8s/pipeline.yaml        the study DAG of lib/saliencylab/pipeline.py, one entrypoint per study preset
    k8s/pipelines/<name>.yaml  the other studies' DAGs (workflow.PIPELINE_FILES: augmentation study, XAI benchmark)
    k8s/kustomization.yaml   those manifests, the hand-written ones, and the (pinned) image overrides

One module per file kind: build (Dockerfile, bake), templates (the stage WorkflowTemplates),
workflow (the study DAG), kustomize; runs (workflow-level settings and the exit handler) and
pods (the pod shape) are shared by the templates, common by all. Pure: nothing here reads files,
the environment or the clock, so equal inputs give byte-equal text.
`saliencylab render-cluster` (jobs/render.py) writes the files; `--check` diffs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from saliencylab.cluster.build import render_bake, render_dockerfile
from saliencylab.cluster.common import image_name, template_name
from saliencylab.cluster.kustomize import PINS_FILE, image_pins, render_kustomization
from saliencylab.cluster.templates import GPU_POD_PATCH, render_stage, stage_templates
from saliencylab.cluster.workflow import PIPELINE_FILES, render_pipeline, task_name
from saliencylab.stages import STAGES, StageSpec

__all__ = [
    "GPU_POD_PATCH",
    "PINS_FILE",
    "image_name",
    "image_pins",
    "render_all",
    "render_bake",
    "render_dockerfile",
    "render_kustomization",
    "render_pipeline",
    "render_stage",
    "stage_templates",
    "task_name",
    "template_name",
]


def render_all(
    dependencies: Sequence[str],
    detectors: Sequence[str],
    stages: Sequence[StageSpec] = STAGES,
    pins: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Every generated file: {path relative to the repository root: text}.

    Args:
        dependencies: the runtime requirements of pyproject.toml (`project.dependencies`), in order.
        detectors: the CAM detectors the pipeline fans out over (the study's default: all of them).
        stages: the stages that get a WorkflowTemplate (default: the registry).
        pins: the image overrides of k8s/image-pins.json (image_pins), or None for unpinned images.
    """
    files = {"images/Dockerfile": render_dockerfile(dependencies, stages), "docker-bake.hcl": render_bake(stages)}
    files.update({f"k8s/stages/{spec.name}.yaml": render_stage(spec) for spec in stages})
    files["k8s/pipeline.yaml"] = render_pipeline(tuple(detectors))
    files.update({path: render() for path, render in PIPELINE_FILES.items()})
    files["k8s/kustomization.yaml"] = render_kustomization(stages, pins, [p.removeprefix("k8s/") for p in PIPELINE_FILES])
    return files

