"""Weights of the HSI network: OpenAI's TorchScript CLIP archive converted once, and strict loading.

OpenAI distributes CLIP RN50 as `RN50.pt`, a TorchScript archive (fp16) that the safe loader
(`torch.load` with weights_only=True) refuses. `convert_openai_checkpoint` reads it once, behind an
explicit flag, and writes a plain float32 safetensors state dict of open_clip's `RN50-quickgelu`
CLIP; from then on `saliencylab.weights.load_weights` reads it like any other weights file. OpenAI's
weights were trained with QuickGELU: load them into the `RN50-quickgelu` config (the HSI default),
never into `RN50`, whose text tower would silently compute something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.hsi.model import HSIModel, HSISpec, build_hsi_model

ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")  # archive entries that are not weights


def load_clip_state(model: HSIModel, state: Mapping[str, torch.Tensor]) -> None:
    """Load an open_clip CLIP state dict (both towers) strictly into `model.clip`, in place.

    Raises:
        ValueError: If keys or shapes differ (listed), e.g. an HSI checkpoint passed as CLIP weights.
    """
    load_state_dict_strict(model.clip, state)


def load_hsi_state(model: HSIModel, state: Mapping[str, torch.Tensor]) -> None:
    """Load a whole HSI state dict (`clip.*` and `decoder.*`, as written by training) strictly, in place.

    Raises:
        ValueError: If keys or shapes differ (listed), e.g. a plain CLIP state dict or another decoder.
    """
    load_state_dict_strict(model, state)


def convert_openai_checkpoint(
    path: str | Path, out_path: str | Path, *, allow_torchscript: bool = False, clip_model: str = "RN50-quickgelu"
) -> int:
    """Convert OpenAI's CLIP archive (e.g. `RN50.pt`) to a float32 safetensors state dict at `out_path`.

    The state dict is strict-loaded into open_clip's `clip_model` before anything is written.

    Args:
        path: the TorchScript archive, from a source you trust.
        out_path: where the `.safetensors` file goes (overwritten).
        allow_torchscript: must be True: loading a TorchScript archive runs the code it holds, so it is
            never done implicitly.
        clip_model: the open_clip config the weights belong to (QuickGELU for OpenAI's weights).

    Returns:
        The number of tensors written.

    Raises:
        ValueError: If `allow_torchscript` is not True (nothing is read), the file is not a TorchScript
            archive, or its weights do not fit `clip_model` (keys and shapes listed).
    """
    if allow_torchscript is not True:
        raise ValueError(
            f"refusing to load {path}: OpenAI's CLIP checkpoints are TorchScript archives, and loading one runs "
            "the code stored in it. Call again with allow_torchscript=True for a file you trust; the "
            "safetensors output needs neither TorchScript nor this flag."
        )
    try:
        # not torch.load(weights_only=True): the file is a TorchScript archive, which that refuses; this
        # one-time conversion behind allow_torchscript is the only place such a file is opened
        archive = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as e:
        raise ValueError(f"{path} is not a TorchScript archive ({str(e).splitlines()[0][:200]})") from e
    state = {
        name: tensor.detach().float().contiguous().clone()
        for name, tensor in archive.state_dict().items()
        if name not in ARCHIVE_EXTRAS
    }
    load_clip_state(build_hsi_model(HSISpec(clip_model=clip_model)), state)

    from safetensors.torch import save_file

    save_file(state, str(out_path), metadata={"source": Path(path).name, "open_clip_model": clip_model})
    return len(state)
