"""k8s/kustomization.yaml: the generated and hand-written manifests, and the stage image overrides."""

from __future__ import annotations

from collections.abc import Sequence

from saliencylab import __version__
from saliencylab.cluster.common import REGISTRY, image_name, render_yaml
from saliencylab.stages import StageSpec

STATIC_RESOURCES = ("namespace.yaml", "rbac.yaml", "semaphores.yaml", "storage")  # hand-written, in k8s/


def render_kustomization(stages: Sequence[StageSpec]) -> str:
    """k8s/kustomization.yaml for the hand-written resources, the stages' templates and the pipeline."""
    header = """kubectl apply -k k8s/   (after creating the Secrets of docs/cluster.md)
The images: overrides rewrite the stage images of the WorkflowTemplates; kustomize only finds them
there through the fieldSpec of kustomizeconfig.yaml (Argo CRDs are unknown to it). To point at your
registry without editing this file: an overlay with its own images: and configurations:, or
`kustomize edit set image saliencylab-<stage>=REGISTRY/saliencylab-<stage>:TAG` in CI.
k8s/submit/ is not part of it: submitted runs are created, not applied."""
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "saliencylab",
        "resources": [*STATIC_RESOURCES, *(f"stages/{s.name}.yaml" for s in stages), "pipeline.yaml"],
        "configurations": ["kustomizeconfig.yaml"],
        "images": [{"name": image_name(s), "newName": f"{REGISTRY}/{image_name(s)}", "newTag": __version__} for s in stages],
    }
    return render_yaml(header, doc)
