"""EfficientNet-B5 laid out as the DeepGaze IIE checkpoint expects it.

DeepGaze IIE vendors lukemelas EfficientNet-PyTorch 0.6.3. This module rebuilds the B5 network
from its published hyper-parameters so that `state_dict()` has the same keys and shapes
(`_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`, `_fc`). It differs from the PyPI
package `efficientnet-pytorch` 0.7.x in one way that changes the numbers: every convolution uses
TensorFlow "same" padding computed once for a 456×456 input (B5's native resolution) and then
kept fixed whatever the real input size, as 0.6.3 does. 0.7.x recomputes the padding per stage
and pads the stride-2 depthwise convolutions into stages 4 and 6 differently.

Fixed paddings, as (left, right, top, bottom): stride 1 → k//2 on every side; 3×3 stride 2 →
(0, 1, 0, 1) (stem, blocks 3 and 13); 5×5 stride 2 → (1, 2, 1, 2) (blocks 8 and 27); 1×1 → none.
With this padding every stride-2 layer maps a side of n pixels to ⌊n/2⌋ and needs n ≥ 2, so the
network needs inputs of at least 32×32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PADDING_IMAGE_SIZE = 456  # B5's native resolution; 0.6.3 derives every padding from it
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon
BN_MOMENTUM = 0.01  # 1 - TensorFlow's 0.99; only matters in training mode
SE_RATIO = 0.25  # squeeze width = int(block input width × 0.25)
STEM_CHANNELS = 48  # round_filters(32) at width 1.6
HEAD_CHANNELS = 2048  # round_filters(1280) at width 1.6
DROPOUT = 0.4  # B5's classifier dropout; inactive in eval mode
NUM_CLASSES = 1000  # the unused ImageNet classifier is part of the checkpoint


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks, already scaled to B5 (width ×1.6, depth ×2.2)."""

    repeats: int  # ceil(2.2 × B0 repeats)
    kernel_size: int  # depthwise kernel, square
    stride: int  # of the first block; the repeats use stride 1
    expand_ratio: int  # hidden width = input width × expand_ratio
    out_channels: int  # round_filters(B0 width × 1.6), multiple of 8


B5_STAGES = (
    Stage(3, 3, 1, 1, 24),
    Stage(5, 3, 2, 6, 40),
    Stage(5, 5, 2, 6, 64),
    Stage(7, 3, 2, 6, 128),
    Stage(7, 5, 1, 6, 176),
    Stage(9, 5, 2, 6, 304),
    Stage(3, 3, 1, 6, 512),
)


def static_same_padding(
    kernel_size: int, stride: int, image_size: int = PADDING_IMAGE_SIZE
) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding of a square convolution for a square input of `image_size`.

    Args:
        kernel_size: Side of the kernel.
        stride: Stride along both axes.
        image_size: Side of the input the padding is computed for (456 for all B5 layers).

    Returns:
        (left, right, top, bottom) in pixels, the extra pixel going right/bottom as in TensorFlow.
    """
    out = math.ceil(image_size / stride)
    total = max((out - 1) * stride + kernel_size - image_size, 0)
    before, after = total // 2, total - total // 2
    return before, after, before, after


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class StaticSameConv2d(nn.Conv2d):
    """nn.Conv2d with a fixed zero padding computed for a 456×456 input (see module docstring).

    The parameters keep nn.Conv2d's names, so the state dict is the one lukemelas' 0.6.3
    `Conv2dStaticSamePadding` writes. Forward hooks see the convolution output.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1, bias: bool = True
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias)
        self.same_padding = static_same_padding(kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.same_padding):
            x = F.pad(x, self.same_padding)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: [1×1 expand] → depthwise k×k → squeeze-excite → 1×1 project.

    BatchNorm follows every convolution except the squeeze-excite pair; swish (x·sigmoid(x))
    follows the expansion and depthwise stages. The residual is added only when the block keeps
    both resolution and width (the repeated blocks of a stage). Drop-connect is a training-only
    regulariser and is not implemented: the backbone is frozen and always runs in eval mode.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        # Registration order fixes the state-dict order: it matches the checkpoint's.
        if expand_ratio != 1:
            self._expand_conv = StaticSameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
        else:
            self._expand_conv = None
        self._depthwise_conv = StaticSameConv2d(hidden, hidden, kernel_size, stride=stride, groups=hidden, bias=False)
        self._bn1 = _batch_norm(hidden)
        squeezed = max(1, int(in_channels * SE_RATIO))
        self._se_reduce = nn.Conv2d(hidden, squeezed, 1)
        self._se_expand = nn.Conv2d(squeezed, hidden, 1)
        self._project_conv = StaticSameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self.has_residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self._expand_conv is not None:
            x = F.silu(self._bn0(self._expand_conv(x)))
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        gate = self._se_expand(F.silu(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = torch.sigmoid(gate) * x
        x = self._bn2(self._project_conv(x))
        if self.has_residual:
            x = x + inputs
        return x


class EfficientNetB5(nn.Module):
    """EfficientNet-B5 (Tan & Le 2019) with lukemelas 0.6.3 module names and static padding.

    Input (B, 3, H, W) float, ImageNet-normalised, H and W ≥ 32; output (B, 1000) logits. The
    39 blocks are `_blocks.0` … `_blocks.38` (stages of 3, 5, 5, 7, 7, 9, 3 blocks); blocks 20–26
    run at 1/16 of the input resolution, blocks 27–38 at 1/32.
    """

    def __init__(self):
        super().__init__()
        self._conv_stem = StaticSameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _batch_norm(STEM_CHANNELS)
        blocks = []
        in_channels = STEM_CHANNELS
        for stage in B5_STAGES:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                block = MBConvBlock(in_channels, stage.out_channels, stage.kernel_size, stride, stage.expand_ratio)
                blocks.append(block)
                in_channels = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = StaticSameConv2d(in_channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _batch_norm(HEAD_CHANNELS)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(DROPOUT)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.silu(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))
