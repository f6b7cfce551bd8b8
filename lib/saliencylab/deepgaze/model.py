"""DeepGaze IIE: four backbones × 30 readout heads, averaged in probability space.

Linardos, Kümmerer, Press & Bethge (2021), "Calibrated prediction in and out-of-domain for
state-of-the-art saliency modeling", arXiv:2105.12441. Module tree and parameter names follow
upstream `deepgaze_pytorch.deepgaze2e.DeepGazeIIE` (matthias-k/DeepGaze, commit c87b106e), so the
released `deepgaze2e.pth` loads strictly; the code is an independent implementation.

Differences from upstream that leave the state dict unchanged and the numbers equal up to float
rounding: the 30 heads of a member run together as grouped convolutions (`heads.py`); heads and
members are normalised and mixed at half resolution and upsampled once at the end
(`finalizer.py`); the empty `scanpath_networks` slots are left out (they hold no tensors); inputs
are validated; and `train()` keeps the frozen backbones in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from saliencylab.deepgaze.backbones import BACKBONES, BackboneSpec, build_feature_extractor
from saliencylab.deepgaze.finalizer import Finalizer, finalize_heads, upsample_to
from saliencylab.deepgaze.heads import fixation_selection_heads, saliency_heads
from saliencylab.deepgaze.inputs import check_centerbias, check_images
from saliencylab.deepgaze.readout import build_fixation_selection_network, build_saliency_network

DOWNSAMPLE = 2  # the backbones see the image at 1/2 resolution
READOUT_FACTOR = 16  # readout grid = ⌈H / (2·16)⌉ × ⌈W / (2·16)⌉
HEADS_PER_MEMBER = 30  # 3 training runs × 10 cross-validation folds


class BackboneMixture(nn.Module):
    """One member of DeepGaze IIE: a frozen backbone and `heads` readout heads, mixed equally.

    Children (state-dict prefixes): `features`, `saliency_networks.{k}`,
    `fixation_selection_networks.{k}`, `finalizers.{k}`.
    """

    def __init__(self, spec: BackboneSpec, heads: int = HEADS_PER_MEMBER):
        super().__init__()
        self.features = build_feature_extractor(spec)
        self.saliency_networks = nn.ModuleList(build_saliency_network(spec.channels) for _ in range(heads))
        self.fixation_selection_networks = nn.ModuleList(build_fixation_selection_network() for _ in range(heads))
        self.finalizers = nn.ModuleList(Finalizer() for _ in range(heads))

    def train(self, mode: bool = True) -> BackboneMixture:
        super().train(mode)
        self.features.eval()  # frozen: BatchNorm statistics are part of the checkpoint
        return self

    def readout_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0–255 RGB → (B, C, ⌈H/32⌉, ⌈W/32⌉) hooked features, concatenated.

        The image is downsampled by nearest ×½ (pixels (2i, 2j)); every hooked map is then
        resized by nearest to the readout grid, computed from the original H and W.
        """
        height, width = images.shape[2:]
        half = F.interpolate(images, scale_factor=1 / DOWNSAMPLE, recompute_scale_factor=False)
        grid = (
            math.ceil(height / DOWNSAMPLE / READOUT_FACTOR),
            math.ceil(width / DOWNSAMPLE / READOUT_FACTOR),
        )
        return torch.cat([F.interpolate(f, size=grid) for f in self.features(half)], dim=1)

    def half_resolution_log_density(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """The member's log density before the final nearest resize to H × W.

        Args:
            images: (B, 3, H, W) float, RGB in [0, 255]; not validated here.
            centerbias: (B, H, W) log centre bias, same dtype and device.

        Returns:
            (B, 1, ⌊H/2⌋, ⌊W/2⌋); `upsample_to(result, (H, W))` is the (B, 1, H, W) log density.
        """
        saliency = saliency_heads(self.readout_features(images), self.saliency_networks)
        readouts = fixation_selection_heads(saliency, self.fixation_selection_networks)
        heads = finalize_heads(readouts, centerbias, self.finalizers)  # (B, K, H₂, W₂)
        return torch.logsumexp(heads - math.log(heads.shape[1]), dim=1, keepdim=True)

    def forward(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0–255 RGB and (B, H, W) log centre bias → (B, 1, H, W) log density.

        Inputs are not validated here; `DeepGazeIIE.forward` does that.
        """
        return upsample_to(self.half_resolution_log_density(images, centerbias), centerbias.shape[1:])


class DeepGazeIIE(nn.Module):
    """DeepGaze IIE saliency model (see module docstring); random weights until loaded.

    Call it as `model(images, centerbias)`:
        images: (B, 3, H, W) float, RGB in [0, 255] (not [0, 1]), H and W ≥ 64. Not modified.
        centerbias: (B, H, W) log centre-bias density at image size (an additive constant does
            not matter), e.g. `centerbias_from_template(template, (H, W))` expanded to the
            batch, or `uniform_centerbias((H, W))`. Cast to the images' dtype and device.
    It returns (B, 1, H, W) log density in the images' dtype and on their device, with
    logsumexp over H×W equal to 0 for every item. Items of a batch are independent.
    """

    def __init__(self, heads_per_member: int = HEADS_PER_MEMBER):
        super().__init__()
        self.models = nn.ModuleList(BackboneMixture(spec, heads_per_member) for spec in BACKBONES)

    def _half_resolution_members(self, images: torch.Tensor, centerbias: torch.Tensor | None) -> torch.Tensor:
        check_images(images)
        check_centerbias(centerbias, images)
        centerbias = centerbias.to(device=images.device, dtype=images.dtype)
        return torch.cat([member.half_resolution_log_density(images, centerbias) for member in self.models], dim=1)

    def member_log_densities(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        """The four members' log densities, (B, 4, H, W), in `BACKBONES` order; validated like forward."""
        return upsample_to(self._half_resolution_members(images, centerbias), images.shape[2:])

    def forward(self, images: torch.Tensor, centerbias: torch.Tensor | None = None) -> torch.Tensor:
        """Log density of fixations; see the class docstring for shapes and ranges.

        Raises:
            TypeError: If images or centerbias are not floating-point tensors.
            ValueError: If images are not (B, 3, H, W) with H, W ≥ 64, look [0, 1]-scaled or leave
                [0, 255]; or if centerbias is missing, not (B, H, W) or not finite.
        """
        members = self._half_resolution_members(images, centerbias)
        mixed = torch.logsumexp(members - math.log(members.shape[1]), dim=1, keepdim=True)
        return upsample_to(mixed, images.shape[2:])


def build_deepgaze_iie(seed: int | None = None) -> DeepGazeIIE:
    """DeepGaze IIE with random weights, in eval mode, without downloading anything.

    Its `state_dict()` has exactly the keys, order and shapes of the authors' `deepgaze2e.pth`
    (5,461 entries), so `load_state_dict_strict(model, torch.load(path, weights_only=True))`
    restores the trained model.

    Args:
        seed: If given, the random initialisation is drawn from `torch.manual_seed(seed)` inside
            `torch.random.fork_rng`, so the global RNG state is left as it was.
    """
    if seed is None:
        return DeepGazeIIE().eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepGazeIIE().eval()
