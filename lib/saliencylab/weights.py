"""Model weights from a local file, an `s3://` URI or a named release in a local cache; never downloaded.

A weights spec is one of:
    random                      random initialisation (tests, demo); stages warn loudly about it
    /path/to/file.pth|.pt|.safetensors, file://..., s3://bucket/key
    torchvision:<WeightsEnum>.<MEMBER>   e.g. torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
                                resolved to the file name of its release URL inside the cache
                                directory ($TORCH_HOME/hub/checkpoints, as torchvision itself uses)
    finetune:<artifact URI>[#<name>]   the weights a `finetune` stage run wrote (see `load_finetuned`):
                                its final weights, or the named entry of its summary, e.g. #epoch-3
`.pth`/`.pt` files are read with `torch.load(weights_only=True)`: plain state dicts only, no pickle.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from saliencylab.storage import join_uri, open_storage, read_uri

if TYPE_CHECKING:
    import torch

RANDOM = "random"
FINETUNE_PREFIX = "finetune:"
FINETUNE_FINAL = "final"  # the summary's name for the weights after the last epoch


def cache_dir() -> Path:
    """Where named weights are looked up: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/...)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def _torchvision_file(spec: str) -> Path:
    import torchvision.models as models

    name = spec.removeprefix("torchvision:")
    enum_name, _, member = name.partition(".")
    weights_enum = getattr(models, enum_name, None) or getattr(models.detection, enum_name, None)
    if weights_enum is None or not member or not hasattr(weights_enum, member):
        raise ValueError(f"unknown torchvision weights {name!r}; expected e.g. FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    path = cache_dir() / getattr(weights_enum, member).url.rsplit("/", 1)[-1]
    if not path.exists():
        raise FileNotFoundError(
            f"{name} is not in the weights cache: expected {path}. Nothing is downloaded at run time; copy the "
            f"file there (or set TORCH_HOME), or pass the file's path or s3:// URI instead."
        )
    return path


def check_weights(spec: str) -> None:
    """Check that the weights `spec` names are there, without reading or loading them.

    `random` passes; `torchvision:<Enum>.<MEMBER>` must be a known enum member whose file is in
    the cache; `finetune:<uri>[#name]` must name a finished artifact (its manifest exists); a path,
    `file://` or `s3://` URI must name an existing file (one HEAD request on S3).

    Raises:
        FileNotFoundError: the file, cache entry or artifact is missing (the message says where it looked).
        ValueError: the spec is malformed (e.g. an unknown torchvision enum, a URI naming no file).
    """
    if spec == RANDOM:
        return
    if spec.startswith("torchvision:"):
        _torchvision_file(spec)
        return
    uri = spec.removeprefix(FINETUNE_PREFIX).partition("#")[0] if spec.startswith(FINETUNE_PREFIX) else spec
    if spec.startswith(FINETUNE_PREFIX):
        uri = join_uri(uri, "_manifest.json")
    parent, _, name = uri.rstrip("/").rpartition("/")
    if not name or parent in ("s3:", "s3:/"):
        raise ValueError(f"{spec!r} names no file; expected a path, file:///path, s3://bucket/key, torchvision:<Enum>.<MEMBER> or random")
    if not open_storage(parent or ".").exists(name):
        what = "no finished finetune artifact (no _manifest.json)" if spec.startswith(FINETUNE_PREFIX) else "no such file"
        raise FileNotFoundError(f"weights {spec}: {what} at {uri}")


def parse_state_dict(data: bytes, source: str) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or torch-saved bytes (weights_only=True); `source` names the file in errors."""
    if source.endswith(".safetensors"):
        from safetensors.torch import load

        return load(data)
    import torch  # here, not at the top: config classes import RANDOM from this module cheaply

    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for files it refuses
        raise ValueError(
            f"{source} cannot be read as a plain state dict with weights_only=True "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Pickled model objects are refused; convert them once to a state dict or safetensors."
        ) from e
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if isinstance(loaded, dict) and "model" in loaded and isinstance(loaded["model"], dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{source} does not hold a state dict of tensors")
    return loaded


def load_weights(spec: str) -> dict[str, torch.Tensor] | None:
    """The state dict named by `spec`, or None for `random`. Raises FileNotFoundError/ValueError with advice."""
    if spec == RANDOM:
        return None
    if spec.startswith("torchvision:"):
        path = _torchvision_file(spec)
        return parse_state_dict(path.read_bytes(), str(path))
    if spec.startswith(FINETUNE_PREFIX):
        return load_model_weights(spec).state_dict
    return parse_state_dict(read_uri(spec), spec)


@dataclass(frozen=True)
class FinetunedWeights:
    """Weights of a `finetune` artifact with what is needed to rebuild the model around them.

    Attributes:
        state_dict: name -> tensor, the model's full state dict (CPU).
        num_classes: classes of the box predictor, background included (VOC: 21).
        source: URI of the weights file.
        artifact: the artifact as a stage input records it: {"uri", "digest" (sha256 of its manifest)}.
        warnings: the artifact's manifest warnings (e.g. trained from random weights, synthetic data).
        summary: the artifact's whole manifest summary (architecture, input_size, classes, recipe, ...).
    """

    state_dict: dict[str, torch.Tensor]
    num_classes: int
    source: str
    artifact: dict[str, str]
    warnings: tuple[str, ...]
    summary: dict


def load_finetuned(uri: str, name: str = FINETUNE_FINAL) -> FinetunedWeights:
    """The weights called `name` of the finished `finetune` artifact at `uri`.

    The artifact's manifest summary lists them as `weights: {name: path relative to the artifact}`
    (e.g. `"final": "weights/final.safetensors"`) next to `num_classes`.

    Raises:
        FileNotFoundError: if `uri` holds no finished artifact.
        ValueError: if it is not a finetune artifact, or has no weights called `name` (the
            message lists the names it has).
    """
    from saliencylab.artifacts import open_artifact  # artifacts -> runner -> ...; only this reader needs it

    artifact = open_artifact(uri)
    summary = artifact.manifest.summary
    if artifact.manifest.stage != "finetune" or not isinstance(summary.get("weights"), dict):
        raise ValueError(f"{uri} is a {artifact.manifest.stage!r} artifact, not a finetune output with weights")
    if not isinstance(summary.get("num_classes"), int):
        raise ValueError(f"{uri}: the manifest summary has no integer num_classes; rerun finetune with a current version")
    if name not in summary["weights"]:
        raise ValueError(f"{uri} has no weights called {name!r}; it has {sorted(summary['weights'])}")
    source = join_uri(artifact.storage.uri, summary["weights"][name])
    return FinetunedWeights(
        state_dict=parse_state_dict(artifact.storage.read_bytes(summary["weights"][name]), source),
        num_classes=summary["num_classes"],
        source=source,
        artifact=artifact.input_spec,
        warnings=tuple(artifact.manifest.warnings),
        summary=summary,
    )


@dataclass(frozen=True)
class ModelWeights:
    """A weights spec resolved for a model builder: state dict (None = random), builder kwargs, warnings."""

    state_dict: dict[str, torch.Tensor] | None
    builder_kwargs: dict[str, int]
    warnings: tuple[str, ...] = ()


def load_model_weights(spec: str) -> ModelWeights:
    """`load_weights(spec)` plus what to build the model with.

    For `finetune:<uri>[#name]` the builder kwargs hold the artifact's `num_classes` and the
    warnings are its manifest's, for the stage using it to pass on; other specs give {} and ().
    """
    if not spec.startswith(FINETUNE_PREFIX):
        return ModelWeights(load_weights(spec), {})
    uri, _, name = spec.removeprefix(FINETUNE_PREFIX).partition("#")
    tuned = load_finetuned(uri, name or FINETUNE_FINAL)
    return ModelWeights(tuned.state_dict, {"num_classes": tuned.num_classes}, tuned.warnings)


def random_weights_warning(stage: str, what: str) -> str:
    """The manifest warning for a stage that ran with random weights."""
    return f"{stage}: {what} ran with RANDOM weights; its maps carry no learned signal"
