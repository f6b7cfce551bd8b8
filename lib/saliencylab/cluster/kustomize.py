"""k8s/kustomization.yaml: the generated and hand-written manifests, and the pinned image overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from saliencylab.cluster.common import IMAGES, REGISTRY, UNPINNED_TAG, render_yaml
from saliencylab.stages import StageSpec

STATIC_RESOURCES = ("namespace.yaml", "rbac.yaml", "semaphores.yaml", "storage")  # hand-written, in k8s/
PINS_FILE = "k8s/image-pins.json"  # written by `make manifests` from the bake metadata of `make images`
COMMIT = re.compile(r"[0-9a-f]{40}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_pins(metadata: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Kustomize image overrides from the metadata file of `docker buildx bake --metadata-file`.

    Args:
        metadata: the parsed file: {bake target: {"image.name": "registry/name:tag[,...]",
            "containerimage.digest": "sha256:..."}, ...}; targets that are not one of IMAGES are ignored.

    Returns:
        {image name: {"newName": registry/name, "newTag": commit, "digest": sha256:...}} for each of IMAGES.

    Raises:
        ValueError: an image is missing, has no digest, or its tag is not a full commit (an image
            built outside `make images` would carry code the tag does not name).
    """
    pins: dict[str, dict[str, str]] = {}
    for target, entry in metadata.items():
        if not isinstance(entry, Mapping) or "image.name" not in entry:
            continue
        for ref in str(entry["image.name"]).split(","):
            repository, _, tag = ref.strip().rpartition(":")
            name = repository.rpartition("/")[2]
            if name not in IMAGES:
                continue
            digest = entry.get("containerimage.digest", "")
            if not COMMIT.fullmatch(tag) or not DIGEST.fullmatch(digest):
                raise ValueError(
                    f"bake target {target!r}: {ref} with digest {digest!r} is not tagged with a full commit "
                    "and a sha256 digest; build with `make images BAKE_FLAGS=--push`"
                )
            pins[name] = {"newName": repository, "newTag": tag, "digest": digest}
    missing = [n for n in IMAGES if n not in pins]
    if missing:
        raise ValueError(f"the bake metadata has no image {missing}; build every target with `make images`")
    commits = {p["newTag"] for p in pins.values()}
    if len(commits) != 1:
        raise ValueError(f"the images were built from different commits {sorted(commits)}; rebuild them together")
    return pins


def render_kustomization(
    stages: Sequence[StageSpec], pins: Mapping[str, Mapping[str, str]] | None = None, pipelines: Sequence[str] = ()
) -> str:
    """k8s/kustomization.yaml for the hand-written resources, the stages' templates and the pipelines.

    Args:
        stages: the registry (one template file per stage).
        pipelines: the other pipelines' files relative to k8s/ (pipelines/<name>.yaml), after pipeline.yaml.
        pins: image_pins() of the last `make images`, or None: the images keep the tag UNPINNED_TAG,
            which no registry has, so nothing runs before someone builds and pins them.
    """
    header = """kubectl apply -k k8s/   (after creating the Secrets of docs/cluster.md)
The images: overrides rewrite the images of the WorkflowTemplates; kustomize only finds them there
through the fieldSpec of kustomizeconfig.yaml (Argo CRDs are unknown to it). They are pinned by
`make images` (tag = commit) then `make manifests` (digest from the bake metadata, kept in
k8s/image-pins.json). Site settings (GPU semaphore, Pod Security, registry) belong in an overlay:
deploy/example-site/. k8s/submit/ is not part of it: submitted runs are created, not applied."""
    images = []
    for name in IMAGES:
        pin = dict(pins[name]) if pins else {"newName": f"{REGISTRY}/{name}", "newTag": UNPINNED_TAG}
        images.append({"name": name, **pin})
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "saliencylab",
        "resources": [*STATIC_RESOURCES, *(f"stages/{s.name}.yaml" for s in stages), "pipeline.yaml", *pipelines],
        "configurations": ["kustomizeconfig.yaml"],
        "images": images,
    }
    return render_yaml(header, doc)
