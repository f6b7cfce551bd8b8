"""Batching of decoded sample images for the model stages (cam, deepgaze, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def map_image_batches(
    samples: list[dict[str, Any]], batch_size: int, device: Any, compute: Callable[[torch.Tensor], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Run `compute` over batches of same-size sample images; return its outputs keyed, in input order.

    `samples` are shard samples with an `image.png` field, (H, W, 3) uint8 RGB. `compute` gets a
    (B, 3, H, W) float32 RGB tensor in [0, 255] on `device` and returns one dict of output fields
    per image. Images of different sizes never share a batch. Inputs are not mutated.
    """
    import torch  # deferred: the job modules import this one for `--help`, which must not load torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    by_size: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for sample in samples:
        by_size.setdefault(tuple(sample["image.png"].shape[:2]), []).append(sample)
    outputs: dict[str, dict[str, Any]] = {}
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            pixels = torch.from_numpy(np.stack([s["image.png"] for s in batch])).to(device)
            for sample, fields in zip(batch, compute(pixels.permute(0, 3, 1, 2).float())):
                outputs[sample["__key__"]] = {"__key__": sample["__key__"], **fields}
    return [outputs[s["__key__"]] for s in samples]
