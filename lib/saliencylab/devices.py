"""Choosing the torch device: CUDA when present, CPU otherwise, or what the user names."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda if available else cpu; `cpu`, `cuda`, `cuda:1` as given (error if CUDA is absent)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return device
