"""Runs all K readout heads of one DeepGaze IIE member at once, as grouped convolutions.

Each head's saliency and fixation-selection networks (see `readout.py`) are tiny 1×1-conv stacks
on the readout grid. Run one by one, 120 heads cost about 3,000 small operator calls per image.
Here head k's layers become group k of a grouped convolution, and its LayerNorms become groups of
one `group_norm` (statistics per head over its own channels × H × W, as LayerNorm computes them).
The first LayerNorm of the saliency network sees the same features in every head, so its
statistics are computed once and its per-head affine is folded into the first convolution:
W·(x̂·γ + β) = (W·diag γ)·x̂ + W·β. Results equal the per-head `nn.Sequential`s up to float
rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from saliencylab.deepgaze.readout import LAYERNORM_EPS


def _stack(networks: Sequence[nn.Sequential], path: str) -> torch.Tensor:
    """The tensor at `path` (e.g. "conv1.weight") of every head, stacked: (K, *shape)."""
    return torch.stack([net.get_parameter(path) for net in networks])


def _grouped_conv(x: torch.Tensor, networks: Sequence[nn.Sequential], conv: str, bias: str | None) -> torch.Tensor:
    """Head k's 1×1 `conv` (and Bias module `bias`) applied to channel group k of x."""
    weight = _stack(networks, f"{conv}.weight")  # (K, out, in, 1, 1)
    shift = None if bias is None else _stack(networks, f"{bias}.bias").flatten()
    return F.conv2d(x, weight.flatten(0, 1), shift, groups=len(networks))


def _grouped_layernorm(x: torch.Tensor, networks: Sequence[nn.Sequential], norm: str) -> torch.Tensor:
    """Head k's LayerNorm `norm` applied to channel group k of x."""
    weight = _stack(networks, f"{norm}.weight").flatten()
    bias = _stack(networks, f"{norm}.bias").flatten()
    return F.group_norm(x, len(networks), weight, bias, LAYERNORM_EPS)


def saliency_heads(features: torch.Tensor, networks: Sequence[nn.Sequential]) -> torch.Tensor:
    """All saliency networks on shared readout features.

    Args:
        features: (B, C, h, w) float, the concatenated hooked backbone features.
        networks: K modules from `build_saliency_network(C)`.

    Returns:
        (B, K, h, w), channel k = networks[k](features), positive (Softplus output).
    """
    normalised = F.group_norm(features, 1, None, None, LAYERNORM_EPS)  # LayerNorm statistics, shared
    conv = _stack(networks, "conv0.weight")[..., 0, 0]  # (K, 8, C)
    gamma = _stack(networks, "layernorm0.weight")  # (K, C)
    beta = _stack(networks, "layernorm0.bias")  # (K, C)
    weight = (conv * gamma[:, None, :]).flatten(0, 1)[..., None, None]  # (K·8, C, 1, 1)
    shift = (conv @ beta[..., None])[..., 0] + _stack(networks, "bias0.bias")  # (K, 8)
    x = F.softplus(F.conv2d(normalised, weight, shift.flatten()))
    x = F.softplus(_grouped_conv(_grouped_layernorm(x, networks, "layernorm1"), networks, "conv1", "bias1"))
    return F.softplus(_grouped_conv(_grouped_layernorm(x, networks, "layernorm2"), networks, "conv2", "bias2"))


def fixation_selection_heads(saliency: torch.Tensor, networks: Sequence[nn.Sequential]) -> torch.Tensor:
    """All fixation-selection networks, head k reading saliency channel k.

    Args:
        saliency: (B, K, h, w) float, from `saliency_heads`.
        networks: K modules from `build_fixation_selection_network()`.

    Returns:
        (B, K, h, w), channel k = networks[k](saliency[:, k:k+1]), an unnormalised log map.
    """
    x = _grouped_layernorm(saliency, networks, "layernorm0.layernorm_part0")
    x = F.softplus(_grouped_conv(x, networks, "conv0.conv_part0", "bias0"))
    x = F.softplus(_grouped_conv(_grouped_layernorm(x, networks, "layernorm1"), networks, "conv1", "bias1"))
    return _grouped_conv(x, networks, "conv2", None)
