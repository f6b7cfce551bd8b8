"""Detection model helpers: boxes mapped back to original pixels, bad arguments named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliencylab.detection import Detections, build_faster_rcnn, detect, rescale


def test_rescale_maps_x_by_width_and_y_by_height():
    # A 96×96 squash of a 300 (H) × 480 (W) image: x scales by 480/96 = 5, y by 300/96 = 3.125.
    found = Detections([[10, 20, 30, 40]], [0.7], [3])
    mapped = rescale(found, (96, 96), (300, 480))
    np.testing.assert_allclose(mapped.boxes, [[50, 62.5, 150, 125]])
    assert mapped.scores.tolist() == [0.7] and mapped.labels.tolist() == [3]
    assert found.boxes.tolist() == [[10, 20, 30, 40]]  # input untouched


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="1 <= min_size <= max_size"):
        build_faster_rcnn(None, 21, min_size=128, max_size=64)
    with pytest.raises(ValueError, match="images must be \\(B, 3, H, W\\)"):
        detect(torch.nn.Identity(), torch.zeros(3, 8, 8))
