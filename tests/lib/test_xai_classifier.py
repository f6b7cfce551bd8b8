"""The explained classifier: seeded random builds, strict weights, normalisation, labels to class indices."""

from __future__ import annotations

import pytest
import torch

from saliencylab.xai import IMAGENET_MEAN, IMAGENET_STD, LabelMap, build_classifier, imagenet_label_map, normalise
from saliencylab.xai.classifier import check_targets, imagenet_categories


def test_random_builds_follow_the_seed_and_weights_load_strictly():
    a, b, c = (build_classifier("resnet18", None, seed) for seed in (0, 0, 1))
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    loaded = build_classifier("resnet18", c.state_dict(), seed=0)
    assert torch.equal(loaded.fc.weight, c.fc.weight) and not loaded.training
    state = dict(c.state_dict())
    del state["fc.bias"]
    with pytest.raises(ValueError, match="fc.bias"):
        build_classifier("resnet18", state, seed=0)
    with pytest.raises(ValueError, match=r"valid: \['resnet18', 'resnet50'\]"):
        build_classifier("vgg16", None, seed=0)


def test_normalise_uses_the_named_imagenet_statistics():
    images = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 5).clone()
    assert torch.allclose(normalise(images), torch.zeros(2, 3, 4, 5), atol=1e-7)
    ones = normalise(torch.ones(1, 3, 2, 2, dtype=torch.float64))
    assert ones.dtype == torch.float64
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in (IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(ones[0, :, 0, 0], (1 - mean) / std)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normalise(torch.zeros(3, 4, 4))


def test_imagenet_labels_by_name_case_or_index():
    labels = imagenet_label_map()
    categories = imagenet_categories()
    assert len(categories) == 1000 and categories[0] == "tench" and categories[281] == "tabby"
    assert labels.class_index("tabby") == 281 and labels.class_index("Tabby") == 281 and labels.class_index(207) == 207
    with pytest.raises(ValueError, match="label map imagenet") as error:
        labels.class_index("dog")
    assert "'tench': 0" in str(error.value) and "closest" in str(error.value)
    with pytest.raises(ValueError, match="outside the classifier's 1000 classes"):
        labels.class_index(1000)
    with pytest.raises(ValueError, match="neither a class name nor an integer"):
        labels.class_index(2.5)


def test_a_small_label_map_is_listed_whole_and_checked():
    labels = LabelMap("coco.json", {"dog": 207, "cat": 281})
    assert labels.class_index("cat") == 281
    with pytest.raises(ValueError, match=r"label map coco.json = \{'dog': 207, 'cat': 281\}"):
        labels.class_index("zebra")
    with pytest.raises(ValueError, match=r"integers in \[0, 1000\).*'cow': 1000"):
        LabelMap("bad.json", {"dog": 207, "cow": 1000})
    with pytest.raises(ValueError, match="'bird': '12'"):
        LabelMap("bad.json", {"bird": "12"})


def test_targets_are_checked():
    x = torch.zeros(2, 3, 8, 8)
    check_targets(torch.tensor([0, 999]), x)
    with pytest.raises(TypeError, match="int64"):
        check_targets(torch.tensor([0.0, 1.0]), x)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        check_targets(torch.tensor([0]), x)
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        check_targets(torch.tensor([0, 1000]), x)
