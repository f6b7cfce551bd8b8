"""Cluster delivery files rendered from the stage registry: Dockerfile, bake file, Argo templates.

`render_all(dependencies, detectors, stages)` returns {path relative to the repository root: text} for:

    images/Dockerfile        a `base` image plus one `FROM base AS <stage>` target per stage
    docker-bake.hcl          one bake target per stage, all in group "default"
    k8s/stages/<stage>.yaml  one Argo WorkflowTemplate per stage: worker, merge, sharded (fan-out + merge)
    k8s/pipeline.yaml        the study DAG of lib/saliencylab/pipeline.py, one entrypoint per study preset
    k8s/kustomization.yaml   those manifests, the hand-written ones, and the image overrides

One module per file kind: build (Dockerfile, bake), templates (the stage WorkflowTemplates),
workflow (the study DAG), kustomize; common holds what they share. Pure: nothing here reads
files, the environment or the clock, so equal inputs give byte-equal text.
`saliencylab render-cluster` (jobs/render.py) writes the files; `--check` diffs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from saliencylab.cluster.build import render_bake, render_dockerfile
from saliencylab.cluster.common import image_name, template_name
from saliencylab.cluster.kustomize import render_kustomization
from saliencylab.cluster.templates import GPU_POD_PATCH, render_stage, stage_templates
from saliencylab.cluster.workflow import render_pipeline, task_name
from saliencylab.stages import STAGES, StageSpec

__all__ = [
    "GPU_POD_PATCH",
    "image_name",
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


def render_all(dependencies: Sequence[str], detectors: Sequence[str], stages: Sequence[StageSpec] = STAGES) -> dict[str, str]:
    """Every generated file: {path relative to the repository root: text}.

    Args:
        dependencies: the runtime requirements of pyproject.toml (`project.dependencies`), in order.
        detectors: the CAM detectors the pipeline fans out over (the study's default: all of them).
        stages: the stages that get an image target and a WorkflowTemplate (default: the registry).
    """
    files = {"images/Dockerfile": render_dockerfile(dependencies, stages), "docker-bake.hcl": render_bake(stages)}
    files.update({f"k8s/stages/{spec.name}.yaml": render_stage(spec) for spec in stages})
    files["k8s/pipeline.yaml"] = render_pipeline(tuple(detectors))
    files["k8s/kustomization.yaml"] = render_kustomization(stages)
    return files

