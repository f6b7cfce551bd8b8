"""One optimizer step of detector training: forward in train mode, a finite-loss check, backward, SGD step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from saliencylab.training.defaults import LOSS_NAMES


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; no step was taken, so the model is the last good one."""

    def __init__(self, iteration: int, keys: Sequence[str], losses: dict[str, float]) -> None:
        self.iteration, self.keys, self.losses = iteration, tuple(keys), losses
        super().__init__(f"loss is not finite at global iteration {iteration} (losses {losses}); batch samples: {list(keys)}")


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Sequence[torch.Tensor],
    targets: Sequence[dict[str, torch.Tensor]],
    *,
    iteration: int,
    keys: Sequence[str],
    average: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> dict[str, float]:
    """Run one SGD step on a batch; return the losses (averaged over processes by `average`).

    Args:
        model: a torchvision detector in train mode (possibly wrapped in DistributedDataParallel),
            returning its loss dict for (images, targets).
        optimizer: its optimizer, lr already set for this step. Model and optimizer are updated in place.
        images: per image (3, H, W) float32 RGB in [0, 1], on the model's device; sizes may differ.
        targets: per image {"boxes": (K, 4) float32 x0, y0, x1, y1 pixels, "labels": (K,) int64}.
        iteration, keys: the global iteration and the batch's sample keys (all processes), for errors.
        average: maps the (L,) vector of this process's loss terms to their mean over processes
            (an all-reduce under DDP); identity in a single process.

    Returns:
        {name: value} for LOSS_NAMES and "loss" (their sum), as Python floats.

    Raises:
        NonFiniteLossError: before the backward pass, so the parameters are not touched.
    """
    loss_dict = model(list(images), list(targets))
    terms = torch.stack([loss_dict[name] for name in LOSS_NAMES])
    averaged = average(terms.detach().clone())
    losses = {name: float(v) for name, v in zip(LOSS_NAMES, averaged.tolist())}
    losses["loss"] = float(averaged.sum())
    if not torch.isfinite(averaged).all():
        raise NonFiniteLossError(iteration, keys, losses)
    optimizer.zero_grad(set_to_none=True)
    terms.sum().backward()
    optimizer.step()
    return losses
