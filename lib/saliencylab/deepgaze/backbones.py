"""The four frozen DeepGaze IIE backbones, their input normaliser and the hooks that read them.

Every backbone is built with random weights and never downloads anything; the real weights
arrive with the DeepGaze IIE checkpoint. Each one sits at index 1 of `Sequential(Normalizer,
backbone)` inside a `FeatureExtractor`, which gives the checkpoint's key prefix
`models.{i}.features.features.1.`.

Features are read at the *output* of the named modules: after a convolution and before its
BatchNorm, or, for a BatchNorm, before the ReLU that follows it. The hook stores a copy, so the
in-place ReLUs that follow cannot change it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torchvision.models import densenet201, resnet50, resnext50_32x4d

from saliencylab.deepgaze.efficientnet import EfficientNetB5

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, for images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalizer(nn.Module):
    """Maps 0–255 RGB to ImageNet-normalised input: x / 255, minus the mean, over the std.

    Every item of the batch is normalised (the 2022 upstream bug normalised only item 0). The
    constants are float64, non-persistent buffers: they follow `.to(device)` but are not in the
    state dict. The arithmetic runs in place on a fresh tensor, so float32 input stays float32
    and the caller's tensor is not modified.
    """

    def __init__(self):
        super().__init__()
        shape = (3, 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float64).view(shape), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images / 255.0
        x -= self.mean
        x /= self.std
        return x


class FeatureExtractor(nn.Module):
    """Runs `Sequential(Normalizer, backbone)` and returns copies of the named layers' outputs.

    Args:
        backbone: The network; it is run to the end and its own output is discarded.
        layers: Qualified module names inside `backbone` (upstream writes them with a `1.`
            prefix, the backbone's index in the Sequential). Their outputs are returned in this
            order, which fixes the channel order of the readout.
    """

    def __init__(self, backbone: nn.Module, layers: tuple[str, ...]):
        super().__init__()
        self.features = nn.Sequential(Normalizer(), backbone)
        self.layers = tuple(layers)
        self._captured: dict[str, torch.Tensor] = {}
        modules = dict(backbone.named_modules())
        unknown = [name for name in self.layers if name not in modules]
        if unknown:
            raise ValueError(f"backbone {type(backbone).__name__} has no modules named {unknown}")
        for name in self.layers:
            modules[name].register_forward_hook(partial(self._capture, name))

    def _capture(self, name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._captured[name] = output.clone()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features of 0–255 RGB `images` (B, 3, h, w): one (B, C_k, h_k, w_k) tensor per layer."""
        self._captured.clear()
        try:
            self.features(images)
            return [self._captured[name] for name in self.layers]
        finally:
            self._captured.clear()


@dataclass(frozen=True)
class BackboneSpec:
    """How one DeepGaze IIE member builds its backbone and which layers its readout reads."""

    name: str  # short name used in benchmarks and errors
    build: Callable[[], nn.Module]  # random init, no download
    layers: tuple[str, ...]  # hooked module names inside the backbone, in readout channel order
    channels: int  # sum of the hooked layers' widths = readout input width


def _shapenet_resnet50() -> nn.Module:
    # The texture-vs-shape weights were saved from DataParallel; upstream fakes that wrapper
    # with a Sequential holding the ResNet as `module`, hence the extra key prefix.
    return nn.Sequential(OrderedDict([("module", resnet50(weights=None))]))


# Order, layers and widths: upstream deepgaze_pytorch/deepgaze2e.py (BACKBONES), commit c87b106e.
BACKBONES = (
    BackboneSpec(
        name="shapenet_resnet50",  # ResNet-50 trained on Stylized-ImageNet + ImageNet, fine-tuned on ImageNet
        build=_shapenet_resnet50,
        layers=(
            "module.layer3.0.conv2",  # 256 channels, 1/16
            "module.layer3.3.conv2",  # 256
            "module.layer3.5.conv1",  # 256
            "module.layer3.5.conv2",  # 256
            "module.layer4.1.conv2",  # 512, 1/32
            "module.layer4.2.conv2",  # 512
        ),
        channels=2048,
    ),
    BackboneSpec(
        name="efficientnet_b5",
        build=EfficientNetB5,
        layers=(
            "_blocks.24._depthwise_conv",  # 1056 channels, 1/16
            "_blocks.26._depthwise_conv",  # 1056, 1/16
            "_blocks.35._project_conv",  # 304, 1/32
        ),
        channels=2416,
    ),
    BackboneSpec(
        name="densenet201",
        build=partial(densenet201, weights=None),
        layers=(
            "features.denseblock4.denselayer32.norm1",  # 1888 channels, 1/32, before an in-place ReLU
            "features.denseblock4.denselayer32.conv1",  # 128
            "features.denseblock4.denselayer31.conv2",  # 32
        ),
        channels=2048,
    ),
    BackboneSpec(
        name="resnext50_32x4d",
        build=partial(resnext50_32x4d, weights=None),
        layers=(
            "layer3.5.conv1",  # 512 channels, 1/16
            "layer3.5.conv2",  # 512
            "layer3.4.conv2",  # 512
            "layer4.2.conv2",  # 1024, 1/32
        ),
        channels=2560,
    ),
)


def build_feature_extractor(spec: BackboneSpec) -> FeatureExtractor:
    """A frozen `FeatureExtractor` for `spec`: random weights, eval mode, no gradients."""
    extractor = FeatureExtractor(spec.build(), spec.layers)
    extractor.requires_grad_(False)
    return extractor.eval()
