"""The reference EigenCAM: pytorch-grad-cam 1.5.7's `EigenCAM`, one image at a time as paper A ran it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM
from torch import nn

from saliencylab.cam.detectors import DetectorSpec
from saliencylab.cam.eigencam import pin_sign
from saliencylab.cam.inputs import image_batch
from saliencylab.cam.layers import resolve_layer


class _SignPinnedEigenCAM(EigenCAM):
    """grad-cam's EigenCAM whose projection gets our `pin_sign` before BaseCAM's ReLU and scaling."""

    def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
        projection = super().get_cam_image(input_tensor, target_layer, target_category, activations, grads, eigen_smooth)
        pinned = pin_sign(torch.from_numpy(projection).flatten(1), torch.from_numpy(np.asarray(activations)))
        return pinned.view(projection.shape).numpy()


class _FeaturePath(nn.Module):
    """The same path the engine runs (preprocess, model transform, adapter.run), without the early stop."""

    def __init__(self, spec: DetectorSpec, model: nn.Module):
        super().__init__()
        self.spec, self.model = spec, model

    def forward(self, images: torch.Tensor) -> object:
        x = self.spec.preprocess(images)
        model_input = self.spec.adapter.model_input(self.model, x, self.spec.internal_resize)
        return self.spec.adapter.run(self.model, model_input.tensor)


def gradcam_eigencam_maps(
    spec: DetectorSpec,
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    target_layer: str | None = None,
    sign_rule: bool = True,
) -> torch.Tensor:
    """EigenCAM maps from pytorch-grad-cam, image by image, for comparison with `eigencam_maps`.

    The library runs the whole feature path with autograd on, copies the activation to the CPU,
    takes a full NumPy SVD per image, ReLU, min-max, `cv2.resize` to H×W, min-max again.
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
        cropped when the model padded its input (only for inputs whose resized size is not a
        multiple of 32 in R-CNN-type detectors).

    Raises:
        ValueError: As for `eigencam_maps` (images, layer).
        RuntimeError: If grad-cam raised an IndexError.
    """
    batch = image_batch(images, spec.size_multiple)
    layer = resolve_layer(model, spec.target_layer if target_layer is None else target_layer)
    cam_class = _SignPinnedEigenCAM if sign_rule else EigenCAM
    maps = []
    with cam_class(_FeaturePath(spec, model), [layer]) as cam:
        try:
            for image in batch:
                maps.append(torch.from_numpy(cam(image[None], targets=[])))
        except IndexError as error:
            raise RuntimeError(f"pytorch-grad-cam raised IndexError: {error}") from error
    return torch.cat(maps).to(batch.device)
