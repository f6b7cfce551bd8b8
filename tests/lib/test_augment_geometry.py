"""Boxes move with the pixels: every geometric op of policy v3 keeps an object inside its box."""

from __future__ import annotations

import numpy as np
import pytest

from saliencylab.augment import GEOMETRIC_OPS, Op, augment_once, geometric_matrix
from saliencylab.augment.geometry import rotation, shear, transform_boxes, translation, warp


def _iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _bright_box(image: np.ndarray) -> list[float]:
    """The pixel-edge bounding box of the bright pixels (the object)."""
    rows, cols = np.nonzero(image[..., 0] > 200)
    return [cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0]


@pytest.mark.parametrize("name", GEOMETRIC_OPS)
@pytest.mark.parametrize("magnitude", [2, 6, 10])
@pytest.mark.parametrize("negative", [False, True])
def test_every_geometric_op_keeps_the_object_in_its_box(name, magnitude, negative):
    # dark image, bright object with its box; 600 px so that 250 px translations (m = 10) keep it inside
    image = np.full((600, 600, 3), 10, np.uint8)
    image[280:320, 275:335] = 250
    box = np.array([[275.0, 280.0, 335.0, 320.0]])
    matrix, _ = geometric_matrix(name, magnitude, negative, image.shape[:2])
    moved = warp(image, matrix, fill=128)
    boxes, keep = transform_boxes(box, matrix, image.shape[:2])
    assert keep.tolist() == [True]
    assert _iou(boxes[0], _bright_box(moved)) >= 0.9


def test_translation_moves_pixels_and_boxes_exactly():
    image = np.zeros((30, 40, 3), np.uint8)
    image[5:10, 6:12] = 255
    matrix = translation(7, -3)
    moved = warp(image, matrix, fill=0)
    assert np.array_equal(moved[2:7, 13:19], image[5:10, 6:12]) and moved.sum() == image.sum()
    boxes, _ = transform_boxes(np.array([[6.0, 5.0, 12.0, 10.0]]), matrix, (30, 40))
    assert boxes.tolist() == [[13.0, 2.0, 19.0, 7.0]]


def test_rotation_by_ninety_degrees_is_a_transpose_of_a_square():
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    turned = warp(image, rotation(90, (16, 16)), fill=0)
    assert np.array_equal(turned, np.rot90(image))  # counter-clockwise as displayed, like PIL's rotate


def test_shear_is_about_the_top_left_corner():
    matrix = shear(0.5, "x")
    boxes, _ = transform_boxes(np.array([[0.0, 0.0, 4.0, 4.0]]), matrix, (100, 100))
    assert boxes.tolist() == [[0.0, 0.0, 6.0, 4.0]]
    with pytest.raises(ValueError, match="'x' or 'y'"):
        shear(0.1, "z")


def test_boxes_are_clipped_and_degenerate_ones_dropped():
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 50.0, 40.0], [45.0, 0.0, 49.5, 5.0]])
    out, keep = transform_boxes(boxes, translation(8, 0), (50, 50))
    assert keep.tolist() == [True, True, False]  # the last one leaves the image
    assert out.tolist() == [[8.0, 0.0, 18.0, 10.0], [38.0, 30.0, 50.0, 40.0]]  # the second is clipped at x = 50
    assert boxes[1].tolist() == [30.0, 30.0, 50.0, 40.0]  # input not modified


def test_warp_fills_uncovered_pixels_and_keeps_masks_two_dimensional():
    mask = np.full((10, 10), 255, np.uint8)
    moved = warp(mask, translation(0, 4), fill=0)
    assert moved.shape == (10, 10) and (moved[:4] == 0).all() and (moved[4:] == 255).all()


def test_consecutive_rotations_are_composed_and_keep_a_tight_box():
    image = np.full((300, 300, 3), 10, np.uint8)
    image[130:170, 120:180] = 250
    two_rotations = ((Op("Rotate_BBox", 1.0, 8), Op("Rotate_BBox", 1.0, 10)),)  # sub-policy 3 at p = 1
    for seed in range(4):
        out = augment_once(image, np.array([[120.0, 130.0, 180.0, 170.0]]), np.random.default_rng(seed), policy=two_rotations)
        assert _iou(out.boxes[0], _bright_box(out.image)) >= 0.9, out.ops
