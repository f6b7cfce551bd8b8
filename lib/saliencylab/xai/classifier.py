"""The explained classifier: a torchvision ResNet with its input normalisation and its label -> class mapping.

The network is built with `weights=None` (nothing is downloaded) and gets its weights from a
state dict the caller loaded (`saliencylab.weights.load_weights`: a file, `s3://` or
`torchvision:ResNet50_Weights.IMAGENET1K_V1` in the local cache), or a random initialisation
drawn inside `seeded_init(seed, "weights", arch)`. It takes normalised RGB input
(`normalise`) and returns raw logits over `NUM_CLASSES` ImageNet classes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torchvision.models as models
from torch import Tensor, nn

from saliencylab.checkpoints import load_state_dict_strict
from saliencylab.seeding import seeded_init
from saliencylab.xai.defaults import IMAGENET

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel RGB mean of [0, 1] ImageNet pixels (torchvision's transforms)
IMAGENET_STD = (0.229, 0.224, 0.225)  # per-channel RGB standard deviation, same source
NUM_CLASSES = 1000  # ImageNet-1k
LISTED_LABELS = 30  # a label map up to this size is listed whole in an error; larger ones by examples


@dataclass(frozen=True)
class Architecture:
    """A classifier the xai stage can explain.

    Attributes:
        build: torchvision constructor, called with weights=None.
        gradcam_layer: dotted path of Grad-CAM's target layer (the last convolutional stage).
        activation_factor: peak bytes of live activations in an inference forward pass per byte
            of float32 input, measured on CPU as peak RSS (ResNet-50: about 23 at 224 px, ResNet-18:
            about 10), rounded up to a power of two; used only to estimate RISE's memory.
    """

    build: Callable[..., nn.Module]
    gradcam_layer: str
    activation_factor: int


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType({
    "resnet50": Architecture(models.resnet50, "layer4", 32),
    "resnet18": Architecture(models.resnet18, "layer4", 16),  # for fast tests; same layer names
})  # fmt: skip


def get_architecture(arch: str) -> Architecture:
    """The registered architecture `arch`; ValueError lists the valid names."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {arch!r}; valid: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_classifier(arch: str, state_dict: Mapping[str, Tensor] | None, seed: int) -> nn.Module:
    """A torchvision classifier in eval mode on the CPU.

    Args:
        arch: a name of `ARCHITECTURES`.
        state_dict: the full state dict (strictly loaded), or None for a random initialisation
            drawn from `seed` (the same model for every run, resume and worker of one seed).
        seed: the run's seed; used only when `state_dict` is None.

    Raises:
        ValueError: unknown `arch`, or a state dict whose keys or shapes do not match (named).
    """
    spec = get_architecture(arch)
    with seeded_init(seed, "weights", arch):
        model = spec.build(weights=None, num_classes=NUM_CLASSES)
    if state_dict is not None:
        load_state_dict_strict(model, state_dict)
    return model.eval()


def normalise(images: Tensor) -> Tensor:
    """ImageNet normalisation: (x - IMAGENET_MEAN) / IMAGENET_STD per channel.

    Args:
        images: (B, 3, H, W) float32 or float64, RGB in [0, 1]. Not modified.

    Returns:
        (B, 3, H, W) in the input's dtype, on its device; a mean-coloured pixel becomes 0.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names in index order, as torchvision ships them (no download)."""
    return tuple(models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass(frozen=True)
class LabelMap:
    """Class indices of labels: `name` says which mapping is in use (reported in errors).

    Attributes:
        name: "imagenet" or the URI of the JSON file the mapping came from.
        indices: label -> class index in [0, num_classes).
        num_classes: the classifier's class count.
    """

    name: str
    indices: Mapping[str, int]
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.indices.items() if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.num_classes}
        if bad:
            shown = dict(list(bad.items())[:LISTED_LABELS])
            raise ValueError(
                f"label map {self.name}: class indices must be integers in [0, {self.num_classes}) for this classifier; "
                f"got {shown}"
            )

    def describe(self) -> str:
        """The mapping in a few lines: whole when small, else its size and the first entries."""
        entries = [f"{label!r}: {index}" for label, index in self.indices.items()]
        if len(entries) <= LISTED_LABELS:
            return f"label map {self.name} = {{{', '.join(entries)}}}"
        return f"label map {self.name} ({len(entries)} labels: {', '.join(entries[:5])}, ...; see docs/xai.md)"

    def class_index(self, label: object) -> int:
        """The class index of `label`: a label of the map, or an int index in [0, num_classes).

        Names match exactly, then ignoring case when that leaves one class.

        Raises:
            ValueError: naming the label and describing the mapping in use, with the closest labels.
        """
        if isinstance(label, int) and not isinstance(label, bool):
            if 0 <= label < self.num_classes:
                return label
            raise ValueError(f"class index {label} is outside the classifier's {self.num_classes} classes (0..{self.num_classes - 1})")
        if not isinstance(label, str):
            raise ValueError(f"label {label!r} is neither a class name nor an integer class index; {self.describe()}")
        if label in self.indices:
            return self.indices[label]
        folded = [(name, i) for name, i in self.indices.items() if name.casefold() == label.casefold()]
        if len({i for _, i in folded}) == 1:
            return folded[0][1]
        close = difflib.get_close_matches(label, list(self.indices), n=5, cutoff=0.6)
        hint = f"; closest: {close}" if close else ""
        raise ValueError(f"label {label!r} is not a class of the classifier under {self.describe()}{hint}")


def imagenet_label_map() -> LabelMap:
    """ImageNet class names -> indices (torchvision's 1000 names are distinct)."""
    return LabelMap(IMAGENET, {name: i for i, name in enumerate(imagenet_categories())})


def top_classes(model: nn.Module, x: Tensor) -> Tensor:
    """The top prediction of each image: argmax of the logits (ties: the lowest index).

    Args:
        model: a classifier taking normalised input, e.g. from `build_classifier`.
        x: (B, 3, H, W) float32 or float64, normalised (`normalise`), on the model's device.

    Returns:
        (B,) int64 class indices on x's device.
    """
    with torch.no_grad():  # not inference_mode: the indices feed autograd-tracked code (gather)
        return model(x).argmax(dim=1)


def check_targets(targets: Tensor, x: Tensor, num_classes: int = NUM_CLASSES) -> None:
    """Refuse target classes that are not one (B,) int64 index in [0, num_classes) per image of x.

    Raises:
        TypeError: targets is not an int64 tensor.
        ValueError: wrong shape or device, or an index out of range (the batch positions named).
    """
    if not isinstance(targets, Tensor) or targets.dtype != torch.int64:
        raise TypeError(f"targets must be an int64 tensor of class indices, got {getattr(targets, 'dtype', type(targets).__name__)}")
    if targets.shape != (x.shape[0],) or targets.device != x.device:
        raise ValueError(f"targets must have shape ({x.shape[0]},) on {x.device}, got {tuple(targets.shape)} on {targets.device}")
    outside = ((targets < 0) | (targets >= num_classes)).nonzero().flatten().tolist()
    if outside:
        raise ValueError(f"targets at batch positions {outside} are outside the classifier's {num_classes} classes")
