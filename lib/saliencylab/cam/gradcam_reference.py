"""The reference EigenCAM: pytorch-grad-cam 1.5.7's `EigenCAM`, one image at a time as paper A ran it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM
from torch import nn

from saliencylab.cam.detectors import DetectorSpec
from saliencylab.cam.eigencam import pin_sign
from saliencylab.cam.inputs import image_batch
from saliencylab.cam.layers import resolve_layer
from saliencylab.cam.torchvision_detectors import TorchvisionAdapter


class _ReferenceEigenCAM(EigenCAM):
    """grad-cam's EigenCAM with two optional changes: our `pin_sign` on the projection, no final resize.

    `sign_rule` applies `pin_sign` before BaseCAM's ReLU and scaling. `resize=False` makes
    BaseCAM skip its `cv2.resize` to the input size (its `scale_cam_image` takes None as "keep
    the size"), so the map stays at the target layer's h×w, ReLU'd and min-max scaled twice.
    """

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], reshape_transform: Callable | None,
                 sign_rule: bool, resize: bool):
        super().__init__(model, target_layers, reshape_transform)
        self.sign_rule, self.resize = sign_rule, resize

    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
        projection = super().get_cam_image(input_tensor, target_layer, target_category, activations, grads, eigen_smooth)
        if not self.sign_rule:
            return projection
        pinned = pin_sign(torch.from_numpy(projection).flatten(1), torch.from_numpy(np.asarray(activations)))
        return pinned.view(projection.shape).numpy()

    def get_target_width_height(self, input_tensor):
        return super().get_target_width_height(input_tensor) if self.resize else None


class _FeaturePath(nn.Module):
    """The same path the engine runs (preprocess, model transform, adapter.run), without the early stop."""

    def __init__(self, spec: DetectorSpec, model: nn.Module):
        super().__init__()
        self.spec, self.model = spec, model

    def forward(self, images: torch.Tensor) -> object:
        x = self.spec.preprocess(images)
        model_input = self.spec.adapter.model_input(self.model, x, self.spec.internal_resize)
        return self.spec.adapter.run(self.model, model_input.tensor)


def _per_image(cam: EigenCAM, images: torch.Tensor) -> torch.Tensor:
    """grad-cam's maps for each image of (B, 3, H, W), called one at a time as paper A did; (B, ...) float32."""
    maps = []
    with cam:
        try:
            for image in images:
                maps.append(torch.from_numpy(cam(image[None], targets=[])))
        except IndexError as error:
            raise RuntimeError(f"pytorch-grad-cam raised IndexError: {error}") from error
    return torch.cat(maps).to(images.device)


def gradcam_eigencam_maps(
    spec: DetectorSpec,
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    target_layer: str | None = None,
    sign_rule: bool = True,
) -> torch.Tensor:
    """EigenCAM maps from pytorch-grad-cam on the engine's feature path, image by image.

    The CAM object wraps the same path `eigencam_maps` runs (preprocess, model transform, the
    part of the detector that holds the layer: the backbone of torchvision detectors), so the
    heads never run. The library runs that path with autograd on, copies the activation to the
    CPU, takes a full NumPy SVD per image, ReLU, min-max, `cv2.resize` to H×W, min-max again.
    `targets=[]` is passed because 1.5.7 requires the argument and `None` would make BaseCAM
    take an argmax over detector outputs (notes §2.3); EigenCAM ignores targets. The CAM object
    lives in a `with` block so its hooks are released (#78, #483). grad-cam's `__exit__` prints
    and swallows IndexError; one raised inside is re-raised as RuntimeError so it cannot vanish.

    Args:
        spec, model, images, target_layer: as for `eigencam_maps`.
        sign_rule: apply `pin_sign` to the library's projection (inside `get_cam_image`, before
            the ReLU); False gives the library's maps with whatever sign its SVD returned.

    Returns:
        (B, H, W) float32 in [0, 1] on the images' device. Unlike `eigencam_maps`, a map is not
        cropped when the model padded its input (R-CNN-type detectors, when the resized size is
        not a multiple of 32): image plus padding are stretched over H×W.

    Raises:
        ValueError: As for `eigencam_maps` (images, layer).
        RuntimeError: If grad-cam raised an IndexError.
    """
    batch = image_batch(images, spec.size_multiple)
    layer = resolve_layer(model, spec.target_layer if target_layer is None else target_layer)
    return _per_image(_ReferenceEigenCAM(_FeaturePath(spec, model), [layer], None, sign_rule, True), batch)


def gradcam_detector_maps(
    spec: DetectorSpec,
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    target_layer: str | None = None,
    sign_rule: bool = True,
    resize: bool = True,
    reshape_transform: Callable | None = None,
) -> torch.Tensor:
    """EigenCAM maps from pytorch-grad-cam as its detection tutorials run it: on the whole detector.

    `EigenCAM(model, target_layers=[layer], reshape_transform=...)` wraps the detector itself
    and is called once per image: the model runs in full (resize, backbone, FPN, RPN and ROI
    heads or SSD/YOLO heads, post-processing) with autograd on, while a hook copies the layer's
    output to the CPU; then grad-cam's full NumPy SVD, ReLU, min-max, `cv2.resize` to the input
    H×W and min-max again. `targets=[]` as in `gradcam_eigencam_maps`. The maps equal that
    function's: the parts after the layer do not change the activation.

    Args:
        spec, model, images, target_layer, sign_rule: as for `gradcam_eigencam_maps`. Images
            go through `spec.preprocess` and then into `model` as they are; torchvision
            detectors resize them with their own transform.
        resize: False skips grad-cam's final resize and returns the maps at the layer's h×w
            (still ReLU'd and min-max scaled); `crop_padded_maps` then turns them into maps of
            the image that equal `eigencam_maps`' when the model padded its input.
        reshape_transform: passed to grad-cam, for a layer whose output is not a (1, C, h, w)
            tensor (the tutorial's `fasterrcnn_reshape_transform` for the FPN's dict). None for
            every registry layer.

    Returns:
        (B, H, W) float32 in [0, 1] on the images' device, or (B, h, w) with `resize=False`.
        With `resize=True` and a padded model input, image plus padding are stretched over H×W.

    Raises:
        ValueError: As for `eigencam_maps` (images, layer), or if `spec.internal_resize` is
            False for a torchvision detector, whose whole forward always resizes.
        RuntimeError: If grad-cam raised an IndexError.
    """
    batch = image_batch(images, spec.size_multiple)
    if isinstance(spec.adapter, TorchvisionAdapter) and not spec.internal_resize:
        raise ValueError(f"{spec.name}'s whole forward always runs its own resize; use internal_resize=True, or "
                         "gradcam_eigencam_maps, which runs the backbone alone")
    layer = resolve_layer(model, spec.target_layer if target_layer is None else target_layer)
    cam = _ReferenceEigenCAM(model, [layer], reshape_transform, sign_rule, resize)
    return _per_image(cam, spec.preprocess(batch))
