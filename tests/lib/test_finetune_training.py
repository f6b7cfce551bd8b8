"""Fine-tuning state: the model built for VOC, one optimizer step, checkpoints that restore exactly."""

from __future__ import annotations

import json

import pytest
import torch

from saliencylab.storage import LocalStorage
from saliencylab.training.checkpoint import LATEST_KEY, Position, load_checkpoint, save_checkpoint
from saliencylab.training.loop import LOSS_NAMES, NonFiniteLossError, train_step
from saliencylab.training.defaults import ARCHITECTURE_NAMES, PAPER_ARCHITECTURE
from saliencylab.training.model import ARCHITECTURES, build_finetune_model
from saliencylab.training.recipe import Recipe, build_optimizer

SMALL = "fasterrcnn_mobilenet_v3_large_fpn"


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([15])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # a negative image
    ]
    return images, targets


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    return build_finetune_model(SMALL, None, min_size=64, max_size=64, seed=3)


def test_the_model_has_a_21_class_head_and_frozen_early_stages():
    model = build_finetune_model("fasterrcnn_resnet50_fpn", None, min_size=64, max_size=64)
    assert model.roi_heads.box_predictor.cls_score.out_features == 21
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 21 * 4
    frozen = {name.split(".")[2] for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}  # trainable_backbone_layers=3: layer2..layer4 train
    assert model.training and all(type(m).__name__ != "BatchNorm2d" for m in model.modules())


def test_random_init_is_seeded_and_leaves_the_global_rng_alone(small_model):
    before = torch.get_rng_state()
    again = build_finetune_model(SMALL, None, min_size=64, max_size=64, seed=3)
    other = build_finetune_model(SMALL, None, min_size=64, max_size=64, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    first, second, third = small_model.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["roi_heads.box_predictor.cls_score.weight"], third["roi_heads.box_predictor.cls_score.weight"])


def test_coco_layout_weights_load_and_the_head_is_replaced(small_model):
    coco = build_finetune_model(SMALL, None, min_size=64, max_size=64, num_classes=91, seed=9).state_dict()
    model = build_finetune_model(SMALL, coco, min_size=64, max_size=64)
    state = model.state_dict()
    assert torch.equal(state["backbone.body.0.0.weight"], coco["backbone.body.0.0.weight"])
    assert state["roi_heads.box_predictor.cls_score.weight"].shape == (21, 1024)


def test_weights_of_another_architecture_name_the_mismatching_keys():
    with pytest.raises(ValueError, match="COCO layout") as info:
        build_finetune_model(SMALL, {"features.0.weight": torch.zeros(3)}, min_size=64, max_size=64)
    assert "unexpected keys (1)" in str(info.value) and "features.0.weight" in str(info.value)
    assert "missing keys" in str(info.value) and "backbone.body" in str(info.value)


def test_the_torch_free_name_list_matches_the_architectures():
    """saliencylab.training.defaults (read by `finetune --help`) names the registry's architectures, in order, the paper's first."""
    assert tuple(a.name for a in ARCHITECTURES) == ARCHITECTURE_NAMES and ARCHITECTURE_NAMES[0] == PAPER_ARCHITECTURE


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_fpn"):
        build_finetune_model("yolo", None)


def test_train_step_updates_trainable_parameters_only():
    model = build_finetune_model(SMALL, None, min_size=64, max_size=64, seed=1)
    optimizer = build_optimizer(model, Recipe())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    losses = train_step(model, optimizer, *_batch(), iteration=0, keys=["a", "b"])
    assert set(losses) == {*LOSS_NAMES, "loss"} and losses["loss"] == pytest.approx(sum(losses[n] for n in LOSS_NAMES))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert "roi_heads.box_predictor.cls_score.weight" in changed and changed <= trainable


def test_a_nan_loss_stops_before_touching_the_weights():
    model = build_finetune_model(SMALL, None, min_size=64, max_size=64, seed=1)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[3] = float("nan")
    optimizer = build_optimizer(model, Recipe())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="iteration 17") as info:
        train_step(model, optimizer, *_batch(), iteration=17, keys=["img_a", "img_b"])
    assert info.value.keys == ("img_a", "img_b") and "img_b" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if not torch.isnan(v).any())
    assert not optimizer.state  # no step taken


def _trained(seed: int) -> tuple[torch.nn.Module, torch.optim.SGD]:
    """A small real network after one SGD step with momentum (checkpoints work on any module)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
        model[0].weight.requires_grad_(False)  # a frozen parameter has no optimizer state
        optimizer = build_optimizer(model, Recipe())
        model(torch.rand(2, 3, 8, 8)).square().sum().backward()
        optimizer.step()
    return model, optimizer


def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path):
    out = LocalStorage(tmp_path)
    model, optimizer = _trained(5)
    rng = torch.get_rng_state()
    position = Position(epoch=1, iteration=2, global_step=7, curve=({"loss": 1.5},))
    save_checkpoint(out, "run-a", position, model, optimizer, [rng], [])
    loaded = load_checkpoint(out, "run-a")
    assert loaded.position == position and torch.equal(loaded.rng_cpu[0], rng) and loaded.rng_cuda == ()
    fresh, _ = _trained(99)
    fresh.load_state_dict(loaded.model)
    fresh_optimizer = build_optimizer(fresh, Recipe())
    fresh_optimizer.load_state_dict(loaded.optimizer)
    state, restored = model.state_dict(), fresh.state_dict()
    assert all(torch.equal(state[k], restored[k]) for k in state)
    for group_a, group_b in zip(optimizer.param_groups, fresh_optimizer.param_groups):
        for a, b in zip(group_a["params"], group_b["params"]):
            assert torch.equal(optimizer.state[a]["momentum_buffer"], fresh_optimizer.state[b]["momentum_buffer"])
    assert load_checkpoint(out, "another-run") is None


def test_a_new_checkpoint_replaces_the_old_one_and_damage_is_reported(tmp_path):
    out = LocalStorage(tmp_path)
    model, optimizer = _trained(6)
    save_checkpoint(out, "r", Position(0, 2, 2), model, optimizer, [torch.get_rng_state()], [])
    save_checkpoint(out, "r", Position(0, 4, 4), model, optimizer, [torch.get_rng_state()], [])
    assert out.list("checkpoints") == ["checkpoints/latest.json", "checkpoints/state-e000-i000004.safetensors"]
    latest = json.loads(out.read_bytes(LATEST_KEY))
    out.write_bytes(latest["tensors"], out.read_bytes(latest["tensors"])[:-1] + b" ")
    with pytest.raises(ValueError, match="does not match its sha256"):
        load_checkpoint(out, "r")


def test_r50_layouts_agree_with_the_cam_registry_and_evaluate():
    """COCO-release layout in (cam's `faster_rcnn` builder mirrors it), and what evaluate rebuilds comes out."""
    from saliencylab.cam.torchvision_detectors import faster_rcnn
    from saliencylab.detection import build_faster_rcnn

    coco = faster_rcnn(min_size=64, max_size=64).state_dict()
    tuned = build_finetune_model("fasterrcnn_resnet50_fpn", coco, min_size=64, max_size=64).state_dict()
    assert torch.equal(tuned["backbone.body.layer1.0.conv1.weight"], coco["backbone.body.layer1.0.conv1.weight"])
    evaluated = build_faster_rcnn(tuned, 21, min_size=64, max_size=64).state_dict()
    assert all(torch.equal(evaluated[k], tuned[k]) for k in tuned)
