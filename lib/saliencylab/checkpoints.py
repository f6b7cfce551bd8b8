"""Strict loading of state dicts into any model, with an error that says what does not match."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

REPORT_LIMIT = 10  # names listed per kind of mismatch


def state_dict_layout(model: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of every state-dict entry of `model`, in state-dict order.

    dtype is written without the `torch.` prefix, e.g. "float32" or "int64".
    """
    return [(name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in model.state_dict().items()]


def _listing(title: str, items: list[str]) -> str:
    shown = "\n".join(f"    {item}" for item in items[:REPORT_LIMIT])
    more = f"\n    ... and {len(items) - REPORT_LIMIT} more" if len(items) > REPORT_LIMIT else ""
    return f"  {title} ({len(items)}):\n{shown}{more}"


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load `state_dict` into `model` strictly, in place.

    Args:
        model: any module, e.g. from `build_deepgaze_iie()` or `build_detector()`.
        state_dict: name → tensor, e.g. `torch.load("deepgaze2e.pth", weights_only=True)`.
            Values are copied (and cast to the model's dtypes); the mapping is not modified.

    Raises:
        TypeError: If `state_dict` is not a mapping of names to tensors.
        ValueError: If keys or shapes differ. The message gives the number of missing keys,
            unexpected keys and shape mismatches, and the first 10 of each.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise TypeError(f"state_dict values must be tensors; not tensors: {not_tensors[:REPORT_LIMIT]}")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(t.shape)}"
        for k, t in expected.items()
        if k in state_dict and state_dict[k].shape != t.shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"state dict does not match {type(model).__name__} "
            f"({len(expected)} entries expected, {len(state_dict)} given)"
        ]
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if mismatched:
            parts.append(_listing("shape mismatches", mismatched))
        if unexpected and all(k.startswith("module.") for k in unexpected):
            parts.append("  hint: every unexpected key starts with 'module.'; strip that DataParallel prefix first")
        raise ValueError("\n".join(parts))
    model.load_state_dict(state_dict, strict=True)
