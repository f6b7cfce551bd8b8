"""What defines an HSI network, its weights aside: `HSISpec` and the feature names, without importing torch.

`saliencylab.hsi.model` builds the network from an `HSISpec`; the hsi-predict and hsi-train stages
read the spec and FEATURES here for their config and `--help`, which must not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FEATURES = ("u4", "u5", "z", "a")  # the full model's decoder input, in concatenation order
NO_TEXT_FEATURES = ("u4", "u5", "z")  # the paper's baseline: visual features only
DENSE_VARIANTS = ("denseclip", "maskclip")


@dataclass(frozen=True)
class HSISpec:
    """What defines an HSI network (its weights aside)."""

    clip_model: str = "RN50-quickgelu"  # open_clip config name; OpenAI's weights need the QuickGELU one
    dense: Literal["denseclip", "maskclip"] = "denseclip"  # how z is read off the attention pool (docs/hsi.md)
    features: tuple[str, ...] = FEATURES  # decoder inputs, a subset of FEATURES in that order
    prompt: str = "a photo of a {label}"  # text template of the label (HSI paper)
    decoder_channels: int = 256  # channels after the 3x3 conv (not given by the paper; our choice)
    image_size: int = 224  # input side in pixels; the output has the same side

    def __post_init__(self) -> None:
        if self.dense not in DENSE_VARIANTS:
            raise ValueError(f"dense must be one of {DENSE_VARIANTS}, got {self.dense!r}")
        if not self.features or tuple(f for f in FEATURES if f in self.features) != tuple(self.features):
            raise ValueError(f"features must be a non-empty subset of {FEATURES} in that order, got {self.features}")
        if "{label}" not in self.prompt:
            raise ValueError(f"prompt must contain '{{label}}', got {self.prompt!r}")
        if self.decoder_channels < 1:
            raise ValueError(f"decoder_channels must be >= 1, got {self.decoder_channels}")
