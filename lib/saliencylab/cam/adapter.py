"""How the CAM engine feeds a detector: the base adapter whose two hooks each detector may override."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInput:
    """What the feature path of a detector receives, and which part of it is image."""

    tensor: torch.Tensor  # (B, 3, H', W') after the model's own resize/normalise/pad, if any
    valid: tuple[float, float]  # fraction of H' and W' covered by the image; the rest is bottom/right padding


@dataclass(frozen=True)
class DetectorAdapter:
    """A model that takes the preprocessed batch as is, has no internal resize, and runs whole.

    Subclasses override `model_input` (the model's own resizing and normalisation, if it has
    any) and/or `run` (the call that reaches the target layer). Adapters hold no state.
    """

    feature_root: str = ""  # dotted path of the submodule `run` executes ("" = whole model); target layers lie inside

    def model_input(self, model: nn.Module, images: torch.Tensor, internal_resize: bool) -> ModelInput:
        """The feature path's input for a preprocessed (B, 3, H, W) batch.

        Raises:
            ValueError: If `internal_resize` is True: this model has no resize of its own.
        """
        if internal_resize:
            raise ValueError(
                f"{type(model).__name__} has no internal resize; set internal_resize=False and resize the images "
                "to the size you want before calling the engine"
            )
        return ModelInput(images, (1.0, 1.0))

    def run(self, model: nn.Module, x: torch.Tensor) -> object:
        """Feed `x` (from `model_input`) through the part of `model` that holds the target layer."""
        return model(x)
