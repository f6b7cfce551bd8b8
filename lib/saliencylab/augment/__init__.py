"""Detection augmentation with boxes that move with the pixels: AutoAugment policy v3, applied once per image.

`geometry` (affine matrices, nearest-neighbour warps, box transforms), `pixels` (colour ops and
cutouts, no colour inversion), `policy` (the v3 table and `augment_once`). See docs/augment.md.
"""

from saliencylab.augment.policy import GEOMETRIC_OPS, POLICY_V3, Augmented, Op, augment_once, geometric_matrix

__all__ = ["GEOMETRIC_OPS", "POLICY_V3", "Augmented", "Op", "augment_once", "geometric_matrix"]
