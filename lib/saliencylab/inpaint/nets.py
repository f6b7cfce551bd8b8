"""Deep Image Prior generator networks, built as G independent copies in one module (grouped convolutions).

Two architectures of Ulyanov et al.'s upstream code (DmitryUlyanov/deep-image-prior, Apache-2.0),
rewritten here, not copied:

- `resnet` (models/resnet.py; the study's network, 8 blocks x 32 channels): a 3x3 conv with
  reflection padding + LeakyReLU, `depth` residual blocks (conv-BN-LeakyReLU-conv-BN plus the
  identity; their 3x3 convs zero-pad and have no bias, as upstream), a 3x3 conv + BN, and a 3x3
  conv with reflection padding to 3 channels + sigmoid. No downsampling.
- `skip` (models/skip.py; the inpainting notebook's 'kate' preset, 5 scales x 128 channels with
  128-channel skips): an encoder-decoder of `depth` scales. At each scale the input goes down a
  stride-2 3x3 conv, a 3x3 conv, the next scale, and a nearest x2 upsample, concatenated with a
  1x1-conv skip branch, then BN, a 3x3 conv and a 1x1 conv (each with BN + LeakyReLU). All convs
  reflection-pad. Output: 1x1 conv to 3 channels + sigmoid. Side lengths must be multiples of
  2**depth and at least 2**(depth+1) (the deepest 3x3 reflection pad needs 2 pixels).

Batching. A net built with `groups=G` holds G independent networks side by side: every conv is a
grouped conv (groups=G) and every BatchNorm runs over G*C channels, so with a batch of ONE
(1, G*C, H, W) tensor its statistics are per image, exactly as upstream's batch-of-one training.
Channels are group-major: channel g*C + c is channel c of network g. `stack_nets` packs G
separately initialised single networks into one grouped net, so an image's network (and result)
does not depend on which images share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

LEAKY_SLOPE = 0.2  # upstream act('LeakyReLU')
OUTPUT_CHANNELS = 3  # RGB


@dataclass(frozen=True)
class NetSpec:
    """One generator architecture.

    kind: `resnet` (paper) or `skip` (upstream encoder-decoder).
    width: channels of every hidden layer (paper: 32; skip preset: 128).
    depth: residual blocks (resnet; paper: 8) or scales (skip; preset: 5).
    skip_channels: skip net only: channels of each skip branch (preset 128; 0 = no skips).
    input_channels: channels of the noise input (upstream: 32).
    """

    kind: Literal["resnet", "skip"] = "resnet"
    width: int = 32
    depth: int = 8
    skip_channels: int = 0
    input_channels: int = 32

    def __post_init__(self) -> None:
        if self.kind not in ("resnet", "skip"):
            raise ValueError(f"network must be 'resnet' or 'skip', got {self.kind!r}")
        for name in ("width", "depth", "input_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"network {name} must be >= 1, got {getattr(self, name)}")
        if self.skip_channels < 0:
            raise ValueError(f"skip_channels must be >= 0, got {self.skip_channels}")

    @property
    def multiple(self) -> int:
        """Side lengths the network accepts are multiples of this (1: any size)."""
        return 1 if self.kind == "resnet" else 2**self.depth

    @property
    def min_side(self) -> int:
        """The smallest side length the network accepts (reflection padding needs 2 pixels)."""
        return 2 if self.kind == "resnet" else 2 ** (self.depth + 1)


def _conv(c_in: int, c_out: int, kernel: int, groups: int, stride: int = 1, reflect: bool = True, bias: bool = True) -> list[nn.Module]:
    """A (grouped) conv keeping the size (stride 1) or halving it (stride 2), reflection- or zero-padded."""
    pad = (kernel - 1) // 2
    conv = nn.Conv2d(groups * c_in, groups * c_out, kernel, stride, 0 if reflect else pad, bias=bias, groups=groups)
    return [nn.ReflectionPad2d(pad), conv] if reflect and pad else [conv]


def _bn_act(channels: int, groups: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(groups * channels), nn.LeakyReLU(LEAKY_SLOPE)]


class _Residual(nn.Sequential):
    """x + body(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class _GroupedConcat(nn.Module):
    """Concatenate branch outputs along channels within each of `groups` networks (group-major layout)."""

    def __init__(self, groups: int, *branches: nn.Module):
        super().__init__()
        self.groups = groups
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        n, _, h, w = outs[0].shape
        # (N, G*C_b, H, W) -> (N, G, C_b, H, W), cat over C, back to (N, G*sum(C_b), H, W)
        return torch.cat([o.reshape(n, self.groups, -1, h, w) for o in outs], 2).reshape(n, -1, h, w)


def _resnet(spec: NetSpec, g: int) -> nn.Sequential:
    w = spec.width
    layers: list[nn.Module] = [*_conv(spec.input_channels, w, 3, g), nn.LeakyReLU(LEAKY_SLOPE)]
    for _ in range(spec.depth):
        block = [*_conv(w, w, 3, g, reflect=False, bias=False), *_bn_act(w, g)]
        block += [*_conv(w, w, 3, g, reflect=False, bias=False), nn.BatchNorm2d(g * w)]
        layers.append(_Residual(*block))
    layers += [*_conv(w, w, 3, g, reflect=False), nn.BatchNorm2d(g * w)]
    layers += [*_conv(w, OUTPUT_CHANNELS, 3, g), nn.Sigmoid()]
    return nn.Sequential(*layers)


def _skip_scale(spec: NetSpec, g: int, c_in: int, level: int) -> nn.Sequential:
    """Scale `level` of the skip net and everything below it: (G*c_in, H, W) -> (G*width, H, W)."""
    w, s = spec.width, spec.skip_channels
    deeper: list[nn.Module] = [*_conv(c_in, w, 3, g, stride=2), *_bn_act(w, g), *_conv(w, w, 3, g), *_bn_act(w, g)]
    if level + 1 < spec.depth:
        deeper.append(_skip_scale(spec, g, w, level + 1))
    deeper.append(nn.Upsample(scale_factor=2, mode="nearest"))
    if s:
        skip = nn.Sequential(*_conv(c_in, s, 1, g), *_bn_act(s, g))
        layers: list[nn.Module] = [_GroupedConcat(g, skip, nn.Sequential(*deeper))]
    else:
        layers = [*deeper]
    layers += [nn.BatchNorm2d(g * (s + w)), *_conv(s + w, w, 3, g), *_bn_act(w, g), *_conv(w, w, 1, g), *_bn_act(w, g)]
    return nn.Sequential(*layers)


def _skip(spec: NetSpec, g: int) -> nn.Sequential:
    return nn.Sequential(_skip_scale(spec, g, spec.input_channels, 0), *_conv(spec.width, OUTPUT_CHANNELS, 1, g), nn.Sigmoid())


def build_net(spec: NetSpec, groups: int = 1) -> nn.Module:
    """`groups` independent generators of architecture `spec` in one module, on the CPU, in train mode.

    Args:
        spec: the architecture.
        groups: G, the number of independent networks.

    Returns:
        A module mapping (N, G * spec.input_channels, H, W) float32 to (N, G * 3, H, W) in (0, 1),
        channels group-major. Initialised with PyTorch's default init from the global CPU RNG
        (wrap the call in `seeding.seeded_init` to control it).
    """
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    return _resnet(spec, groups) if spec.kind == "resnet" else _skip(spec, groups)


def stack_nets(spec: NetSpec, nets: Sequence[nn.Module]) -> nn.Module:
    """One grouped net (G = len(nets)) whose group g holds the parameters and buffers of `nets[g]`.

    Args:
        spec: the architecture all `nets` were built with (`build_net(spec, 1)`).
        nets: G single networks; not modified.

    Returns:
        A new grouped module on the CPU (the global RNG is left as it was).
    """
    if not nets:
        raise ValueError("stack_nets needs at least one network")
    with torch.random.fork_rng(devices=[]):
        grouped = build_net(spec, len(nets))
    states = [net.state_dict() for net in nets]
    stacked = {}
    for name, value in grouped.state_dict().items():
        if value.ndim == 0:  # num_batches_tracked: a shared counter, unused in training mode
            stacked[name] = states[0][name].clone()
        else:  # grouped weights, biases and BN buffers are the per-network tensors stacked on dim 0
            stacked[name] = torch.cat([state[name] for state in states], 0)
    grouped.load_state_dict(stacked)
    return grouped
