"""Model weights from a local file, an `s3://` URI or a named release in a local cache; never downloaded.

A weights spec is one of:
    random                      random initialisation (tests, demo); stages warn loudly about it
    /path/to/file.pth|.pt|.safetensors, file://..., s3://bucket/key
    torchvision:<WeightsEnum>.<MEMBER>   e.g. torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
                                resolved to the file name of its release URL inside the cache
                                directory ($TORCH_HOME/hub/checkpoints, as torchvision itself uses)
`.pth`/`.pt` files are read with `torch.load(weights_only=True)`: plain state dicts only, no pickle.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from saliencylab.storage import read_uri

RANDOM = "random"


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


def parse_state_dict(data: bytes, source: str) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or torch-saved bytes (weights_only=True); `source` names the file in errors."""
    if source.endswith(".safetensors"):
        from safetensors.torch import load

        return load(data)
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
    return parse_state_dict(read_uri(spec), spec)


def random_weights_warning(stage: str, what: str) -> str:
    """The manifest warning for a stage that ran with random weights."""
    return f"{stage}: {what} ran with RANDOM weights; its maps carry no learned signal"
