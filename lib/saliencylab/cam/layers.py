"""Finding a layer by its dotted path and capturing its output without running the rest of the model."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import torch
from torch import nn

CANDIDATES_SHOWN = 12  # names listed per kind of suggestion in an error message


class _StopForward(Exception):
    """Raised by the capture hook to abandon the forward pass once the target layer has run."""


def _parts(path: str) -> list[str]:
    # "backbone.extra[1]" and "model[-2]" are written as indexing; treat them as dotted parts.
    return [p for p in re.sub(r"\[(-?\d+)\]", r".\1", path).split(".") if p]


def _child(module: nn.Module, part: str) -> nn.Module | None:
    child = module._modules.get(part)
    if child is None and re.fullmatch(r"-?\d+", part) and isinstance(module, (nn.Sequential, nn.ModuleList)):
        index = int(part)
        if -len(module) <= index < len(module):
            child = module[index]
    return child


def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """The submodule of `model` at a dotted path.

    Args:
        model: any module, e.g. a detector from `build_detector`.
        path: dotted names from the model root, e.g. "backbone.body.layer4". Indexing is
            accepted too: "backbone.extra[1]" is "backbone.extra.1", and a negative index into
            a Sequential or ModuleList counts from its end ("model[-2]").

    Returns:
        The module itself (not a copy).

    Raises:
        ValueError: If a part of the path does not exist. The message names the deepest module
            that was found, its children, and the closest full names among all submodules.
    """
    if not isinstance(path, str) or not _parts(path):
        raise ValueError(f"layer path must be a non-empty dotted string like 'backbone.body.layer4', got {path!r}")
    module, found = model, []
    for part in _parts(path):
        child = _child(module, part)
        if child is None:
            where = ".".join(found) or f"the model root ({type(model).__name__})"
            children = list(module._modules)
            names = [name for name, _ in model.named_modules() if name]
            close = difflib.get_close_matches(".".join(_parts(path)), names, n=CANDIDATES_SHOWN, cutoff=0.6)
            raise ValueError(
                f"no layer {path!r}: {where} has no child {part!r}. "
                f"Its children: {children[:CANDIDATES_SHOWN]}{' ...' if len(children) > CANDIDATES_SHOWN else ''}. "
                f"Closest layer names: {close or 'none'}. "
                f"Top-level children of the model: {list(model._modules)}."
            )
        module = child
        found.append(part)
    return module


def is_submodule(root: nn.Module, layer: nn.Module) -> bool:
    """Whether `layer` is `root` or one of its (nested) submodules, by identity."""
    return any(m is layer for m in root.modules())


def capture_activation(layer: nn.Module, run: Callable[[], object]) -> torch.Tensor:
    """The output of `layer` during `run()`, stopping the forward pass as soon as `layer` has run.

    A forward hook stores the output and raises a private exception, so the layers after
    `layer` (FPN, heads, NMS, transformer) never run. The hook is removed on every path out.

    Args:
        layer: the module whose output is wanted.
        run: a callable that feeds the model; its return value is ignored.

    Returns:
        The layer's output, as produced (no copy); the caller decides the grad mode.

    Raises:
        ValueError: If `run()` finished without calling `layer`, or the layer's output is not
            a tensor (e.g. a transformer block returning a tuple).
    """
    captured: list[object] = []

    def hook(module: nn.Module, args: object, output: object) -> None:
        captured.append(output)
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        run()
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"the forward pass never reached the target layer ({type(layer).__name__})")
    output = captured[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"the target layer ({type(layer).__name__}) returned {type(output).__name__}, not a tensor")
    return output
