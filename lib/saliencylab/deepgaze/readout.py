"""The per-head readout networks of DeepGaze IIE: saliency network and fixation-selection network.

Both are stacks of 1×1 convolutions on the readout grid (1/32 of the image), with DeepGaze's own
LayerNorm and a separate Bias module after each bias-free convolution. Module names follow the
upstream `deepgaze_pytorch` so that the state dict loads strictly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

LAYERNORM_EPS = 1e-12  # upstream deepgaze_pytorch.layers.LayerNorm default


class LayerNorm(nn.Module):
    """DeepGaze's LayerNorm: statistics over (C, H, W) jointly per sample, per-channel affine.

    Equivalent to `nn.GroupNorm(1, C, eps=1e-12)`; kept as its own class for the parameter
    names `weight` and `bias` (each (C,), initialised to ones and zeros).

    Args:
        channels: C.
        eps: Added to the variance.
    """

    def __init__(self, channels: int, eps: float = LAYERNORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W), normalised per sample over all of C×H×W."""
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)


class Bias(nn.Module):
    """Adds a learned per-channel bias `bias` (C,), initialised to zero, to (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias[None, :, None, None]


class FirstInputPart(nn.Module):
    """Holds `module` as the attribute `{kind}_part0` and applies it.

    Upstream's fixation-selection network starts with multi-input layers that take (saliency,
    scanpath) and keep one sub-module per present input, named `layernorm_part0`,
    `conv_part0`, …. DeepGaze IIE has no scanpath input, so only part 0 exists; this wrapper
    keeps its key names (`layernorm0.layernorm_part0.weight`, `conv0.conv_part0.weight`).
    """

    def __init__(self, kind: str, module: nn.Module):
        super().__init__()
        self.part_name = f"{kind}_part0"
        self.add_module(self.part_name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.part_name)(x)


def build_saliency_network(channels: int) -> nn.Sequential:
    """Saliency network: (B, channels, h, w) readout features → (B, 1, h, w), positive.

    LN → 1×1 conv to 8 → Bias → Softplus → LN → 8→16 → Bias → Softplus → LN → 16→1 → Bias →
    Softplus (beta 1, threshold 20).
    """
    return nn.Sequential(
        OrderedDict(
            [
                ("layernorm0", LayerNorm(channels)),
                ("conv0", nn.Conv2d(channels, 8, 1, bias=False)),
                ("bias0", Bias(8)),
                ("softplus0", nn.Softplus()),
                ("layernorm1", LayerNorm(8)),
                ("conv1", nn.Conv2d(8, 16, 1, bias=False)),
                ("bias1", Bias(16)),
                ("softplus1", nn.Softplus()),
                ("layernorm2", LayerNorm(16)),
                ("conv2", nn.Conv2d(16, 1, 1, bias=False)),
                ("bias2", Bias(1)),
                ("softplus2", nn.Softplus()),
            ]
        )
    )


def build_fixation_selection_network() -> nn.Sequential:
    """Fixation-selection network: (B, 1, h, w) saliency → (B, 1, h, w) unnormalised log map.

    LN(1) → 1×1 conv 1→128 → Bias → Softplus → LN(128) → 128→16 → Bias → Softplus → 16→1, with
    no bias or activation after the last convolution.
    """
    return nn.Sequential(
        OrderedDict(
            [
                ("layernorm0", FirstInputPart("layernorm", LayerNorm(1))),
                ("conv0", FirstInputPart("conv", nn.Conv2d(1, 128, 1, bias=False))),
                ("bias0", Bias(128)),
                ("softplus0", nn.Softplus()),
                ("layernorm1", LayerNorm(128)),
                ("conv1", nn.Conv2d(128, 16, 1, bias=False)),
                ("bias1", Bias(16)),
                ("softplus1", nn.Softplus()),
                ("conv2", nn.Conv2d(16, 1, 1, bias=False)),
            ]
        )
    )
