"""CAM detector registry: offline builds, maps for all seven, layer shapes, strict loading, YOLOv5 layout and conversion."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d

from saliencylab.cam import (
    DETECTOR_NAMES,
    DETECTORS,
    build_detector,
    convert_yolov5_checkpoint,
    eigencam_maps,
    get_detector,
    resolve_layer,
)
from saliencylab.cam.layers import capture_activation
from saliencylab.weights import load_weights

# Target-layer activation (C, h, w) for one 512×512 image with each spec's defaults (docs/cam.md).
SHAPES_AT_512 = {
    "faster_rcnn": (2048, 25, 25),  # resized to 800
    "mask_rcnn": (2048, 25, 25),
    "retinanet": (2048, 25, 25),
    "ssd300": (512, 10, 10),  # resized to 300
    "ssdlite": (480, 10, 10),  # resized to 320; reduced tail halves the last stage
    "yolov5s": (512, 16, 16),
    "detr": (2048, 16, 16),
}


@pytest.fixture(scope="module")
def detector():
    """Random-init models built once per module, seeded."""
    cache: dict = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_detector(name)
        return cache[name]

    return get


def test_registry_names():
    assert DETECTOR_NAMES == ("faster_rcnn", "mask_rcnn", "retinanet", "ssd300", "ssdlite", "yolov5s", "detr")


def test_the_torch_free_name_list_matches_the_registry():
    """saliencylab.cam.names (read by `--help`) and the DetectorSpec registry name the same detectors, in order."""
    assert tuple(spec.name for spec in DETECTORS) == DETECTOR_NAMES


def test_unknown_detector_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown detector 'yolov8'.*faster_rcnn.*ssdlite.*detr"):
        get_detector("yolov8")
    with pytest.raises(ValueError, match="valid names"):
        build_detector("fasterrcnn")


# Mask R-CNN and RetinaNet share Faster R-CNN's adapter and transform; skipping their resize to
# 800 px saves two ResNet-50 passes at 800² (the default path's shapes are checked on "meta" below).
SMOKE_OVERRIDES = {"mask_rcnn": {"internal_resize": False}, "retinanet": {"internal_resize": False}}


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_every_detector_builds_offline_and_gives_maps(detector, name):
    spec, model = replace(get_detector(name), **SMOKE_OVERRIDES.get(name, {})), detector(name)
    assert not model.training
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    maps = eigencam_maps(spec, model, images)
    assert maps.shape == (2, 64, 64) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize("name", DETECTOR_NAMES)
def test_activation_shape_at_512(name):
    spec = get_detector(name)
    with torch.device("meta"):  # shapes only: no weights are allocated, nothing is computed
        model = spec.builder().eval()
        x = spec.preprocess(torch.empty(1, 3, 512, 512))
        model_input = spec.adapter.model_input(model, x, spec.internal_resize)
        layer = resolve_layer(model, spec.target_layer)
        acts = capture_activation(layer, lambda: spec.adapter.run(model, model_input.tensor))
    assert tuple(acts.shape[1:]) == SHAPES_AT_512[name]


def test_resolve_layer_accepts_index_notation(detector):
    model = detector("ssd300")
    assert resolve_layer(model, "backbone.extra[1]") is resolve_layer(model, "backbone.extra.1") is model.backbone.extra[1]
    yolo = detector("yolov5s")
    assert resolve_layer(yolo, "model[-2]") is resolve_layer(yolo, "model.23")


def test_faster_rcnn_has_the_frozen_batchnorm_layout_of_the_coco_release(detector):
    reference = FasterRCNN(resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d), 91)
    ours = detector("faster_rcnn").state_dict()
    assert list(ours) == list(reference.state_dict())
    assert not [k for k in ours if k.endswith("num_batches_tracked")]


def test_strict_load_round_trip_and_mismatch_report(detector):
    state = {k: v.clone() for k, v in detector("yolov5s").state_dict().items()}
    torch.manual_seed(1)
    loaded = build_detector("yolov5s", state)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())

    broken = dict(state)
    missing = next(iter(broken))
    del broken[missing]
    broken["model.25.extra.weight"] = torch.zeros(1)
    shape_key = "model.24.m.0.weight"
    broken[shape_key] = torch.zeros(3, 3)
    with pytest.raises(ValueError) as info:
        build_detector("yolov5s", broken)
    message = str(info.value)
    expected_parts = ("missing keys (1)", missing, "unexpected keys (1)", "model.25.extra.weight", "shape mismatches (1)", shape_key)
    for expected in expected_parts:
        assert expected in message


def test_builder_kwargs_pass_through():
    model = build_detector("yolov5s", num_classes=20)
    assert model.model[24].m[0].weight.shape[0] == 3 * (5 + 20)


def test_yolov5s_layout(detector):
    model = detector("yolov5s")
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 7_235_389  # upstream's yolov5s summary, 80 classes
    for key in ("model.0.conv.weight", "model.9.cv2.bn.running_var", "model.23.cv3.conv.weight", "model.24.m.2.weight"):
        assert key in state
    assert tuple(state["model.24.anchors"].shape) == (3, 3, 2)
    torch.testing.assert_close(state["model.24.anchors"][0, 0], torch.tensor([10 / 8, 13 / 8]))
    with torch.no_grad():
        decoded, raw = model(torch.rand(1, 3, 64, 96))
    assert decoded.shape == (1, 3 * (8 * 12 + 4 * 6 + 2 * 3), 85)
    assert [tuple(r.shape) for r in raw] == [(1, 3, 8, 12, 85), (1, 3, 4, 6, 85), (1, 3, 2, 3, 85)]


def test_yolov5_conversion_refuses_pickle_by_default(tmp_path):
    with pytest.raises(ValueError, match="refusing to unpickle.*executes code.*allow_pickle=True"):
        convert_yolov5_checkpoint(tmp_path / "absent.pt", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_yolov5_safetensors_state_dict_loads(detector, tmp_path):
    model = detector("yolov5s")
    path = tmp_path / "yolov5s.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = build_detector("yolov5s", load_weights(str(path)))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    images = torch.rand(1, 3, 64, 64)
    spec = get_detector("yolov5s")
    torch.testing.assert_close(eigencam_maps(spec, loaded, images), eigencam_maps(spec, model, images))


def test_yolov5_conversion_of_a_pickled_model_object(detector, tmp_path):
    """The unpickling path, with our own YOLOv5 class standing in for upstream's (importable here)."""
    model = copy.deepcopy(detector("yolov5s"))
    torch.save({"epoch": -1, "model": copy.deepcopy(model).half(), "ema": None}, tmp_path / "yolov5s.pt")
    classes = convert_yolov5_checkpoint(tmp_path / "yolov5s.pt", tmp_path / "yolov5s.safetensors", allow_pickle=True)
    assert classes == 80
    converted = load_weights(str(tmp_path / "yolov5s.safetensors"))
    assert converted.keys() == model.state_dict().keys()
    assert converted["model.0.conv.weight"].dtype == torch.float32
    torch.testing.assert_close(converted["model.0.conv.weight"], model.state_dict()["model.0.conv.weight"].half().float())
