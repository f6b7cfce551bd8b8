"""Up-front plan checks: --set stages and keys, declared choices, weights references, external inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from saliencylab.config import field
from saliencylab.pipeline import Step
from saliencylab.plan import StageParams, check_plan, split_sets, unknown_name
from saliencylab.weights import check_weights


@dataclass(frozen=True)
class ToyConfig:
    size: int = field(64, "Side in pixels.")
    detector: str = field("alpha", "Registry name.")
    mode: Literal["a", "b"] = field("a", "Mode.")
    weights: str = field("random", "Weights spec.")


PARAMS = StageParams(ToyConfig, {"detector": ("alpha", "beta")}, ("weights",))


def _describe(stage: str) -> StageParams:
    return PARAMS


def test_unknown_name_suggests_a_close_match_only_when_one_is_close():
    assert unknown_name("stage", "ingset", ["ingest", "cam"]) == "unknown stage 'ingset'; did you mean 'ingest'? valid: ['cam', 'ingest']"
    assert "did you mean" not in unknown_name("stage", "zzz", ["ingest", "cam"])


def test_split_sets_groups_by_stage():
    assert split_sets({"ingest.size": "256", "cam.batch_size": "2", "ingest.limit": "3"}, ["ingest", "cam"]) == {
        "ingest": {"size": "256", "limit": "3"},
        "cam": {"batch_size": "2"},
    }


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ingset.size", "unknown stage 'ingset'; did you mean 'ingest'? valid: ['cam', 'ingest', 'report']"),
        ("size", "expected <stage>.<key>=<value>, e.g. ingest.size=256; stages: ['ingest', 'cam', 'report']"),
        ("ingest.", "expected <stage>.<key>=<value>"),
    ],
)
def test_split_sets_refuses_a_missing_or_unknown_stage(key, message):
    with pytest.raises(ValueError, match="^--set " + key.replace(".", r"\.") + "=1: ") as info:
        split_sets({key: "1"}, ["ingest", "cam", "report"])
    assert message in str(info.value)


def test_check_plan_resolves_every_step(tmp_path):
    steps = (Step("a", "toy", {}, {"size": "32"}), Step("b", "toy", {}, {"detector": "beta", "mode": "b"}))
    configs = check_plan(steps, _describe, {})
    assert configs == (ToyConfig(size=32), ToyConfig(detector="beta", mode="b"))


def test_check_plan_refuses_an_unknown_key_with_a_suggestion():
    with pytest.raises(ValueError) as info:
        check_plan((Step("b", "toy", {}, {"sise": "32"}),), _describe, {})
    assert str(info.value) == "step b: unknown toy parameter 'sise'; did you mean 'size'? valid: ['detector', 'mode', 'size', 'weights']"


def test_check_plan_refuses_a_bad_value_naming_the_step():
    with pytest.raises(ValueError, match=r"step b \(toy\): size must be int, got 'big'"):
        check_plan((Step("b", "toy", {}, {"size": "big"}),), _describe, {})


def test_check_plan_refuses_a_value_outside_the_declared_choices():
    with pytest.raises(ValueError) as info:
        check_plan((Step("c", "toy", {}, {"detector": "betta"}),), _describe, {})
    assert str(info.value) == "step c: unknown toy.detector 'betta'; did you mean 'beta'? valid: ['alpha', 'beta']"


def test_check_plan_refuses_missing_weights_and_accepts_present_ones(tmp_path):
    present = tmp_path / "w.pth"
    present.write_bytes(b"not loaded, only looked for")
    check_plan((Step("c", "toy", {}, {"weights": str(present)}),), _describe, {})
    with pytest.raises(FileNotFoundError, match=r"step c: toy.weights: weights .*missing.pth: no such file"):
        check_plan((Step("c", "toy", {}, {"weights": str(tmp_path / "missing.pth")}),), _describe, {})


def test_check_plan_refuses_a_missing_external_input(tmp_path):
    steps = (Step("a", "toy", {"images": "@images"}),)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.jpg").write_bytes(b"x")
    check_plan(steps, _describe, {"images": str(tmp_path / "images")})
    with pytest.raises(FileNotFoundError, match="--images .*nowhere: no such folder"):
        check_plan(steps, _describe, {"images": str(tmp_path / "nowhere")})


def test_check_weights_torchvision_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="is not in the weights cache"):
        check_weights("torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    with pytest.raises(ValueError, match="unknown torchvision weights"):
        check_weights("torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V9")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth").write_bytes(b"x")
    check_weights("torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1")


def test_check_weights_finetune_artifact(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished finetune artifact"):
        check_weights(f"finetune:{tmp_path}#epoch-1")
    (tmp_path / "_manifest.json").write_text("{}")
    check_weights(f"finetune:{tmp_path}#epoch-1")
    check_weights("random")


def test_check_weights_s3_object(s3_env):
    from saliencylab.storage import open_storage

    with pytest.raises(FileNotFoundError, match="no such file"):
        check_weights(f"s3://{s3_env.bucket}/weights/deepgaze2e.pth")
    open_storage(f"s3://{s3_env.bucket}/weights").write_bytes("deepgaze2e.pth", b"x")
    check_weights(f"s3://{s3_env.bucket}/weights/deepgaze2e.pth")
