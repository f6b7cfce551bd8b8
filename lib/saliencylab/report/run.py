"""Discovery of the finished artifacts of one run: each by its step path, linked to its sources by lineage.

Every `_manifest.json` under the run root (except the report's own) is one node, keyed by its step
path (e.g. `cam/faster_rcnn`, `compare/erase-deepgaze`). A node's sources are found from its
manifest, never from path names: each input's digest (the sha256 of the input's manifest, which
stays valid when a run is copied elsewhere) or, failing that, its URI; for a `cam` of fine-tuned
weights (`weights = finetune:<URI>[#name]`) the weights' artifact by its URI. So two cams of one
detector, or four fine-tunes of one architecture, stay apart, and every section of the report asks
"which compare scores a cam of a model fine-tuned on an erase artifact", not "what is in cam/x".
"""

from __future__ import annotations

from dataclasses import dataclass

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.manifests import MANIFEST_KEY
from saliencylab.storage import Storage, join_uri, open_storage
from saliencylab.weights import FINETUNE_PREFIX, RANDOM

REPORT_STAGE = "report"


@dataclass(frozen=True)
class Node:
    """One finished artifact of the run and its step path under the run root."""

    path: str
    artifact: Artifact

    @property
    def stage(self) -> str:
        return self.artifact.manifest.stage

    @property
    def params(self) -> dict:
        return self.artifact.manifest.params

    @property
    def summary(self) -> dict:
        return self.artifact.manifest.summary

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.artifact.manifest.warnings


def _normal_uri(uri: str) -> str:
    try:
        return open_storage(uri).uri.rstrip("/")
    except ValueError:
        return uri.rstrip("/")


class RunContents:
    """The run's nodes by step path, with lineage lookups between them."""

    def __init__(self, root_uri: str, nodes: dict[str, Node]):
        self.root_uri = root_uri.rstrip("/")
        self.nodes = dict(sorted(nodes.items()))
        self._by_digest = {n.artifact.digest: n for n in self.nodes.values()}
        self._by_uri = {_normal_uri(n.artifact.storage.uri): n for n in self.nodes.values()}

    def of_stage(self, *stages: str) -> list[Node]:
        """Nodes of the given stages, by step path."""
        return [n for n in self.nodes.values() if n.stage in stages]

    def find(self, uri: str, digest: str | None = None) -> Node | None:
        """The node of an input reference: by manifest digest, else by URI, else by a step path the URI ends with.

        The last rule keeps a copied or moved run linked where only a URI was recorded (fine-tuned weights).
        """
        if digest and digest in self._by_digest:
            return self._by_digest[digest]
        normal = _normal_uri(uri)
        if normal in self._by_uri:
            return self._by_uri[normal]
        ends = [n for path, n in self.nodes.items() if normal == path or normal.endswith("/" + path)]
        return max(ends, key=lambda n: len(n.path)) if ends else None

    def source(self, node: Node, name: str) -> Node | None:
        """The run's node that `node` read as input `name`; None when absent or outside the run."""
        spec = node.artifact.manifest.inputs.get(name)
        return self.find(spec["uri"], spec.get("digest")) if spec else None

    def weights_source(self, node: Node) -> Node | None:
        """For a model stage run on fine-tuned weights (a `model` input, or `finetune:<URI>` weights), the finetune node."""
        if "model" in node.artifact.manifest.inputs:
            return self.source(node, "model")
        weights = str(node.params.get("weights", ""))
        if not weights.startswith(FINETUNE_PREFIX):
            return None
        return self.find(weights[len(FINETUNE_PREFIX) :].split("#", 1)[0])

    def ancestors(self, node: Node, via: tuple[str, ...] | None = None) -> list[Node]:
        """Every node `node` derives from, transitively, nearest first.

        Args:
            via: follow only these input names (e.g. the images a result is measured on, not the
                training set of its model); None follows every input and fine-tuned weights.
        """
        seen: dict[str, Node] = {}
        frontier = [node]
        while frontier:
            current = frontier.pop(0)
            names = [n for n in current.artifact.manifest.inputs if via is None or n in via]
            parents = [self.source(current, name) for name in names]
            if via is None:
                parents.append(self.weights_source(current))
            for parent in parents:
                if parent is not None and parent.path not in seen and parent.path != node.path:
                    seen[parent.path] = parent
                    frontier.append(parent)
        return list(seen.values())

    def warnings(self) -> list[str]:
        """Every warning of every node, de-duplicated, sorted."""
        return sorted({w for n in self.nodes.values() for w in n.warnings})

    def random_weights(self) -> list[str]:
        """Step paths of the nodes whose own `weights` parameter is random (a `model` input overrides it)."""
        return [n.path for n in self.nodes.values() if n.params.get("weights") == RANDOM and "model" not in n.artifact.manifest.inputs]

    def any_random(self) -> bool:
        """Whether any weights of the run are random: by parameter, or by a warning a stage passed on."""
        return bool(self.random_weights()) or any("random weights" in w.lower() for w in self.warnings())

    def digest_list(self) -> list[str]:
        return sorted(n.artifact.digest for n in self.nodes.values())


def discover(root: Storage) -> RunContents:
    """Every finished artifact under the run root except the report's own, by step path."""
    paths = [k[: -len(MANIFEST_KEY) - 1] for k in root.list() if k.endswith(f"/{MANIFEST_KEY}")]
    nodes = {}
    for path in sorted(paths):
        artifact = open_artifact(join_uri(root.uri, path))
        if artifact.manifest.stage != REPORT_STAGE:
            nodes[path] = Node(path, artifact)
    return RunContents(root.uri, nodes)
