"""Discovery of the finished artifacts of one study run, by role (ingest, deepgaze, cam, compare)."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.manifests import MANIFEST_KEY
from saliencylab.storage import Storage, join_uri


@dataclass
class RunContents:
    """The finished artifacts of one run, by role."""

    ingest: Artifact | None = None
    deepgaze: Artifact | None = None
    cams: dict[str, Artifact] = dc_field(default_factory=dict)  # detector -> artifact
    compares: dict[tuple[str, str], Artifact] = dc_field(default_factory=dict)  # (detector, target) -> artifact


def discover(root: Storage) -> RunContents:
    """Find the finished artifacts under the run root (everything but the report itself)."""
    contents = RunContents()
    paths = [k[: -len(MANIFEST_KEY) - 1] for k in root.list() if k.endswith(f"/{MANIFEST_KEY}") and not k.startswith("report/")]
    by_uri: dict[str, Artifact] = {}
    for path in sorted(paths):
        artifact = open_artifact(join_uri(root.uri, path))
        by_uri[artifact.storage.uri] = artifact
    for artifact in by_uri.values():
        stage = artifact.manifest.stage
        if stage == "ingest":
            contents.ingest = artifact
        elif stage == "deepgaze":
            contents.deepgaze = artifact
        elif stage == "cam":
            contents.cams[artifact.manifest.params["detector"]] = artifact
    for artifact in by_uri.values():
        if artifact.manifest.stage != "compare":
            continue
        pred = by_uri.get(artifact.manifest.inputs["pred"]["uri"]) or open_artifact(artifact.manifest.inputs["pred"]["uri"])
        target = by_uri.get(artifact.manifest.inputs["target"]["uri"]) or open_artifact(artifact.manifest.inputs["target"]["uri"])
        if pred.manifest.stage == "cam":
            kind = "deepgaze" if target.manifest.stage == "deepgaze" else "human"
            contents.compares[(pred.manifest.params["detector"], kind)] = artifact
    return contents
