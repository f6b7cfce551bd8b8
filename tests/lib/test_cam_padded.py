"""EigenCAM on a padded model input: our map equals grad-cam's, run on the whole detector, after the documented crop."""

from __future__ import annotations

import pytest
import torch

from saliencylab.cam import build_detector, crop_padded_maps, eigencam_maps, get_detector
from saliencylab.cam.gradcam_reference import gradcam_detector_maps
from saliencylab.seeding import seeded_init, torch_generator

VOC_SIZE = (375, 500)  # a typical PASCAL VOC image; torchvision resizes it to 800×1066, padded to 800×1088


@pytest.mark.slow
def test_padded_faster_rcnn_equals_gradcam_after_the_crop():
    spec = get_detector("faster_rcnn")  # internal resize on: min_size 800, max_size 1333, pad to 32
    with seeded_init(0, "weights", "faster_rcnn"):
        model = build_detector(spec)
    image = torch.rand(1, 3, *VOC_SIZE, generator=torch_generator(0, "padded-image"))
    valid = spec.adapter.model_input(model, image, spec.internal_resize).valid
    assert valid[0] == 1.0 and valid[1] == pytest.approx(1066 / 1088)  # 22 columns of padding on the right

    ours = eigencam_maps(spec, model, image)
    # grad-cam on the full detector, its map taken before its resize to the input size (25×34 grid)
    grid = gradcam_detector_maps(spec, model, image, resize=False)
    assert grid.shape == (1, 25, 34)

    cropped = crop_padded_maps(grid, VOC_SIZE, valid)
    assert ours.shape == cropped.shape == (1, *VOC_SIZE)
    assert (ours - cropped).abs().max().item() <= 1e-4
    assert ours.amax().item() > 0.99  # a non-trivial map
    # grad-cam's own output stretches image plus padding over H×W (this equals it to 3e-6); without the crop they differ
    stretched = crop_padded_maps(grid, VOC_SIZE, (1.0, 1.0))
    assert (ours - stretched).abs().max().item() > 0.1
