"""The fine-tuning recipe: SGD hyper-parameters, the learning-rate schedule and the paper's numbers.

The schedule is a closed form of (epoch, iteration), so a resumed run needs no scheduler object
to restore: StepLR (lr · gamma^(epoch // step)) times, in epoch 0 only, torchvision's reference
warm-up (LinearLR from `warmup_factor` to 1 over min(warmup_iters, iterations per epoch − 1)
iterations, stepped after every iteration).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from saliencylab.training.defaults import (  # the paper's recipe (research notes §1.5)
    PAPER_BATCH_SIZE,
    PAPER_EPOCHS,
    PAPER_LR,
    PAPER_LR_GAMMA,
    PAPER_LR_STEP,
    PAPER_MOMENTUM,
    PAPER_WEIGHT_DECAY,
    REFERENCE_WARMUP_FACTOR,
    REFERENCE_WARMUP_ITERS,
)


@dataclass(frozen=True)
class Recipe:
    """SGD with momentum, StepLR per epoch and an optional linear warm-up in epoch 0."""

    epochs: int = PAPER_EPOCHS
    lr: float = PAPER_LR  # base learning rate, for the global batch
    momentum: float = PAPER_MOMENTUM
    weight_decay: float = PAPER_WEIGHT_DECAY
    lr_step: int = PAPER_LR_STEP  # epochs between decays
    lr_gamma: float = PAPER_LR_GAMMA
    batch_size: int = PAPER_BATCH_SIZE  # global batch: images per optimizer step over all processes
    warmup: bool = True  # the paper's code ran torchvision's train_one_epoch, which warms up in epoch 0
    warmup_factor: float = REFERENCE_WARMUP_FACTOR
    warmup_iters: int = REFERENCE_WARMUP_ITERS

    def __post_init__(self) -> None:
        for name in ("epochs", "lr_step", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 < self.warmup_factor <= 1 or self.warmup_iters < 0:
            raise ValueError(f"need lr > 0, 0 < warmup_factor <= 1 and warmup_iters >= 0, got {self}")


def warmup_length(recipe: Recipe, iterations_per_epoch: int) -> int:
    """Warm-up iterations in epoch 0: min(warmup_iters, iterations_per_epoch − 1), or 0 without warm-up."""
    return min(recipe.warmup_iters, iterations_per_epoch - 1) if recipe.warmup else 0


def learning_rate(recipe: Recipe, epoch: int, iteration: int, iterations_per_epoch: int) -> float:
    """The learning rate of optimizer step `iteration` (0-based) of `epoch` (0-based).

    In epoch 0 with warm-up over T = warmup_length(...) iterations the factor is
    warmup_factor + (1 − warmup_factor) · min(iteration, T) / T (torchvision's LinearLR); when
    T == 0 (a one-iteration epoch) the single step runs at warmup_factor, as LinearLR does; from
    epoch 1 on the factor is 1 (LinearLR with total_iters=0 would keep warmup_factor for good).
    """
    lr = recipe.lr * recipe.lr_gamma ** (epoch // recipe.lr_step)
    if epoch == 0 and recipe.warmup:
        total = warmup_length(recipe, iterations_per_epoch)
        progress = min(iteration, total) / total if total > 0 else 0.0
        lr *= recipe.warmup_factor + (1 - recipe.warmup_factor) * progress
    return lr


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD over the trainable parameters of `model` (frozen backbone stages excluded), lr set per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's lr (in place: the optimizer is the training state)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
