"""The xai stage's default settings as constants, without importing torch.

`saliencylab.xai.classifier` and `saliencylab.xai.rise` use them; the xai stage's config and presets
default to them, and its `--help` must not load torch.
"""

INPUT_SIZE = 224  # the side the ImageNet weights were trained and evaluated at (torchvision IMAGENET1K_V1)
IMAGENET = "imagenet"  # name of the built-in label map: torchvision's IMAGENET1K_V1 category names
DEFAULT_MASKS = 4000  # RISE N: the usual ResNet-50 setting (Xplique's example, TorchRay's defaults), notes §7.2
DEFAULT_CELLS = 7  # RISE s
DEFAULT_P1 = 0.5  # RISE keep-probability of a cell
NOTEBOOK = {"masks": 6000, "cells": 8, "p1": 0.1}  # the RISE settings of the authors' notebook (eclique/RISE)
