"""Weights resolution: random, local files, safetensors, S3, the named cache; pickle refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from saliencylab.storage import open_storage
from saliencylab.weights import load_weights


def _state():
    return {"conv.weight": torch.arange(6.0).reshape(2, 3), "conv.bias": torch.zeros(2)}


def test_random_is_none():
    assert load_weights("random") is None


def test_local_pth_and_safetensors(tmp_path):
    torch.save(_state(), tmp_path / "w.pth")
    save_file(_state(), tmp_path / "w.safetensors")
    torch.save({"model": _state(), "epoch": 3}, tmp_path / "ckpt.pth")
    for name in ("w.pth", "w.safetensors", "ckpt.pth"):
        loaded = load_weights(str(tmp_path / name))
        assert torch.equal(loaded["conv.weight"], _state()["conv.weight"])
    assert load_weights(f"file://{tmp_path}/w.pth").keys() == _state().keys()


def test_pickled_objects_are_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a whole pickled module, as YOLOv5 releases are
    with pytest.raises(ValueError, match="weights_only=True.*convert"):
        load_weights(str(tmp_path / "model.pt"))


def test_missing_named_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"hub/checkpoints/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth.*Nothing is downloaded"):
        load_weights("torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1")
    with pytest.raises(ValueError, match="unknown torchvision weights"):
        load_weights("torchvision:NoSuch.X")


def test_named_weights_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_state(), tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth")
    assert load_weights("torchvision:ResNet50_Weights.IMAGENET1K_V1").keys() == _state().keys()


@pytest.mark.s3
def test_weights_from_s3(s3_env):
    import io

    buffer = io.BytesIO()
    torch.save(_state(), buffer)
    open_storage(f"s3://{s3_env.bucket}/weights").write_bytes("w.pth", buffer.getvalue())
    assert load_weights(f"s3://{s3_env.bucket}/weights/w.pth").keys() == _state().keys()
