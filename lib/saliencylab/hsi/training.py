"""One HSI optimisation step and its pieces: the recipe's learning rate, trainable parts, target resizing, the loss.

The HSI paper's recipe: Adam, learning rate 1e-4, 20 epochs, divided by 10 after 10 epochs, loss
λ₁·KL + λ₂·CC + λ₃·NSS with λ = (1, −1, −1) (`saliencylab.hsi.losses`). The paper does not say
which parameters are trained; `trainable_parameters` makes it a choice ("all" or "decoder").
The CLIP tower is always run in eval mode: its BatchNorm statistics stay those of the start
weights, since batches of a few images cannot estimate them (the decoder has no BatchNorm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from saliencylab.hsi.losses import hsi_loss
from saliencylab.hsi.recipe import LOSS_WEIGHTS, PAPER_DECAY_EPOCH, PAPER_DECAY_FACTOR
from saliencylab.training.loop import NonFiniteLossError

TRAINABLE_PARTS = ("all", "decoder")


def learning_rate(base: float, epoch: int, decay_epoch: int = PAPER_DECAY_EPOCH, factor: float = PAPER_DECAY_FACTOR) -> float:
    """The step schedule: `base` for 0-based epochs < decay_epoch, `base * factor` from then on (0 = never decay)."""
    return base * factor if decay_epoch and epoch >= decay_epoch else base


def trainable_parameters(model: nn.Module, parts: str) -> list[nn.Parameter]:
    """Set `requires_grad` for `parts` of an HSI model ("all", or "decoder" with CLIP frozen), in place; return those parameters.

    Raises:
        ValueError: for an unknown `parts`, listing the valid ones.
    """
    if parts not in TRAINABLE_PARTS:
        raise ValueError(f"trainable parts must be one of {TRAINABLE_PARTS}, got {parts!r}")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(parts == "all" or name.startswith("decoder."))
    return [p for p in model.parameters() if p.requires_grad]


def resize_fixations(fixations: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Move the fixations of an (H, W) map onto an (h, w) grid without losing any.

    Each fixated pixel (row r, column c; value = its count) goes to row floor((r + 0.5) * h / H),
    column floor((c + 0.5) * w / W) (pixel centres scaled), and counts add up where several land on
    one pixel. Interpolating the map instead would blur or drop single fixations.

    Args:
        fixations: (H, W) non-negative numbers (binary or counts), any numeric dtype. Not modified.
        size: (h, w), positive.

    Returns:
        (h, w) float32 counts; their sum equals the input's.
    """
    if fixations.ndim != 2:
        raise ValueError(f"fixations must be an (H, W) map, got shape {fixations.shape}")
    height, width = fixations.shape
    rows, cols = np.nonzero(fixations)
    out = np.zeros(size, dtype=np.float32)
    new_rows = np.minimum(((rows + 0.5) * size[0] / height).astype(np.int64), size[0] - 1)
    new_cols = np.minimum(((cols + 0.5) * size[1] / width).astype(np.int64), size[1] - 1)
    np.add.at(out, (new_rows, new_cols), fixations[rows, cols].astype(np.float32))
    return out


def batch_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: Sequence[str],
    maps: torch.Tensor,
    fixations: torch.Tensor,
    weights: tuple[float, float, float] = LOSS_WEIGHTS,
    text: torch.Tensor | None = None,
) -> torch.Tensor:
    """The HSI loss (batch mean, differentiable) of `model` on one batch.

    Args:
        model: an `HSIModel`.
        images: (B, 3, S, S) float32 RGB in [0, 1], on the model's device.
        labels: B class names (the prompt's label).
        maps: (B, S, S) float32 target saliency maps (non-negative).
        fixations: (B, S, S) fixation counts; every map needs one fixation when λ₃ != 0.
        weights: (λ₁, λ₂, λ₃) for (KL, CC, NSS).
        text: optional (B, D) precomputed text embeddings of the labels (`FrozenText`).
    """
    predicted = model(images, list(labels), text=text)[:, 0]  # (B, S, S)
    return hsi_loss(predicted, maps, fixations, weights)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, Sequence[str], torch.Tensor, torch.Tensor],
    *,
    weights: tuple[float, float, float],
    iteration: int,
    keys: Sequence[str],
    text: torch.Tensor | None = None,
) -> float:
    """One Adam step on `batch` = (images, labels, maps, fixations) as in `batch_loss`; returns the loss.

    Model and optimizer are updated in place (the optimizer's lr must already be set).

    Raises:
        NonFiniteLossError: before the backward pass (parameters untouched), naming the batch's keys.
    """
    loss = batch_loss(model, *batch, weights=weights, text=text)
    value = float(loss.detach())
    if not np.isfinite(value):
        raise NonFiniteLossError(iteration, keys, {"loss": value})
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


class FrozenText:
    """Text embeddings of labels under a frozen CLIP, computed once per label and reused.

    Each label is embedded alone, so an embedding does not depend on which labels shared a batch:
    a resumed run and an uninterrupted one use bit-identical embeddings.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, labels: Sequence[str]) -> torch.Tensor:
        """(B, D) embeddings of `labels`, on the model's device, without gradient."""
        for label in labels:
            if label not in self.cache:
                with torch.no_grad():
                    self.cache[label] = self.model.text_embeddings([label])[0]
        return torch.stack([self.cache[label] for label in labels])
