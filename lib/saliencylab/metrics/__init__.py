"""Saliency metrics as pure batched functions: (B, H, W) tensors in, (B,) tensors out.

One module per family: `maps` (MAE, CC, KL, SIM), `iou` (paper A's top-set IoU and the
tie-robust variant), `fixations` (NSS, information gain), `auc` (AUC-Judd, shuffled AUC),
`suite` (the `compare` stage's batch of map metrics), `summary` (bootstrap intervals), plus
the shared `normalise`, `resize` and `inputs` helpers. Conventions and citations: docs/metrics.md.
"""

from saliencylab.metrics.auc import auc_judd, auc_shuffled, auc_shuffled_at
from saliencylab.metrics.fixations import information_gain, nss
from saliencylab.metrics.iou import IOU_MODES, iou_top, top_set, top_set_is_degenerate
from saliencylab.metrics.maps import KL_EPS, cc, kldiv, mae, sim
from saliencylab.metrics.normalise import is_constant, minmax_normalise, sum_normalise
from saliencylab.metrics.resize import resize_to
from saliencylab.metrics.suite import FLAG_KEYS, SUITE_KEYS, compare_maps
from saliencylab.metrics.summary import Summary, bootstrap_ci

__all__ = [
    "FLAG_KEYS",
    "IOU_MODES",
    "KL_EPS",
    "SUITE_KEYS",
    "Summary",
    "auc_judd",
    "auc_shuffled",
    "auc_shuffled_at",
    "bootstrap_ci",
    "cc",
    "compare_maps",
    "information_gain",
    "iou_top",
    "is_constant",
    "kldiv",
    "mae",
    "minmax_normalise",
    "nss",
    "resize_to",
    "sim",
    "sum_normalise",
    "top_set",
    "top_set_is_degenerate",
]
