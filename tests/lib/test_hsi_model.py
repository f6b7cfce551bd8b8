"""The HSI network on random weights: feature shapes, dense embeddings, score map, decoder, weights."""

from __future__ import annotations


import pytest
import torch

from saliencylab.hsi.clip_weights import convert_openai_checkpoint, load_clip_state, load_hsi_state
from saliencylab.hsi.model import HSISpec, build_hsi_model, dense_embedding, prompt_texts, score_map
from saliencylab.hsi.spec import NO_TEXT_FEATURES
from saliencylab.weights import load_weights


@pytest.fixture(scope="module")
def model():
    return build_hsi_model(HSISpec(), seed=0)


@pytest.fixture(scope="module")
def other():
    """The no-text baseline under another seed; the weights round-trip test (last) loads into it."""
    return build_hsi_model(HSISpec(features=NO_TEXT_FEATURES), seed=1)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_encoder_shapes_and_4097_decoder_channels(model, images):
    with torch.no_grad():
        normalised = (images - model.mean) / model.std
        u4, u5 = model.clip.visual.forward_intermediates(normalised, indices=[3, 4], intermediates_only=True)["image_intermediates"]
        features = model.visual_features(images)
    assert u4.shape == (2, 1024, 14, 14) and u5.shape == (2, 2048, 7, 7)
    assert features["u4"].shape == (2, 1024, 7, 7) and features["z"].shape == (2, 1024, 7, 7)
    torch.testing.assert_close(features["u4"][:, :, 0, 0], u4[:, :, :2, :2].mean(dim=(2, 3)))
    assert model.decoder.conv3.in_channels == 4097


def test_random_model_maps_batch_and_labels_to_unit_maps(model, images):
    with torch.no_grad():
        maps = model(images, ["dog", "traffic light"])
    assert maps.shape == (2, 1, 224, 224) and maps.dtype == torch.float32
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


def test_denseclip_token0_is_the_pooled_clip_embedding(model, images):
    normalised = (images - model.mean) / model.std
    with torch.no_grad():
        pooled = model.clip.encode_image(normalised)
        _, token0 = dense_embedding(model.clip.visual.attnpool, model.visual_features(images)["u5"], "denseclip")
    torch.testing.assert_close(token0, pooled, rtol=1e-5, atol=1e-5)


def test_maskclip_is_value_then_output_projection_per_position(model):
    pool = model.clip.visual.attnpool
    u5 = torch.randn(1, 2048, 7, 7, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z, pooled = dense_embedding(pool, u5, "maskclip")
    w_v, b_v = pool.v_proj.weight.double(), pool.v_proj.bias.double()
    w_c, b_c = pool.c_proj.weight.double(), pool.c_proj.bias.double()
    pixel = u5[0, :, 3, 5].double()  # row 3, column 5
    expected = w_c @ (w_v @ pixel + b_v) + b_c
    assert pooled is None and z.shape == (1, 1024, 7, 7)
    torch.testing.assert_close(z[0, :, 3, 5].double(), expected, rtol=1e-4, atol=1e-4)


def test_dense_embedding_refuses_other_grids_and_variants(model):
    pool = model.clip.visual.attnpool
    with pytest.raises(ValueError, match="does not fit the positional embedding"):
        dense_embedding(pool, torch.zeros(1, 2048, 8, 8))
    with pytest.raises(ValueError, match="dense variant"):
        dense_embedding(pool, torch.zeros(1, 2048, 7, 7), "gradcam")


def test_score_map_golden_cosines():
    z = torch.zeros(1, 2, 1, 3)
    z[0, :, 0, 0] = torch.tensor([3.0, 0.0])  # parallel to the text
    z[0, :, 0, 1] = torch.tensor([0.0, -2.0])  # orthogonal
    z[0, :, 0, 2] = torch.tensor([-1.0, -1.0])  # 135 degrees
    a = score_map(z, torch.tensor([[5.0, 0.0]]))
    torch.testing.assert_close(a, torch.tensor([[[[1.0, 0.0, -(2**-0.5)]]]]))


def test_no_text_baseline_is_a_configuration(other, images):
    assert other.decoder.conv3.in_channels == 4096 and not other.uses_text
    with torch.no_grad():
        maps = other(images[:1], None)
    assert maps.shape == (1, 1, 224, 224)


def test_same_seed_same_weights_other_seed_other_weights(model, other):
    again = build_hsi_model(seed=0)
    assert torch.equal(again.decoder.conv3.weight, model.decoder.conv3.weight)
    assert torch.equal(again.clip.visual.conv1.weight, model.clip.visual.conv1.weight)
    assert not torch.equal(other.clip.visual.conv1.weight, model.clip.visual.conv1.weight)


def test_bad_labels_and_inputs_are_named(model, images):
    assert prompt_texts("a photo of a {label}", ["hot dog", "café"]) == ["a photo of a hot dog", "a photo of a café"]
    with pytest.raises(ValueError, match="label '  '"):
        prompt_texts("a photo of a {label}", ["dog", "  "])
    with torch.no_grad():
        with pytest.raises(ValueError, match="longer than CLIP's 77 tokens"):
            model(images[:1], ["word " * 80])
        with pytest.raises(ValueError, match="one label per image"):
            model(images, ["dog"])
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            model(images * 255, ["dog", "cat"])
        with pytest.raises(ValueError, match=r"\(B, 3, 224, 224\)"):
            model(images[:, :, :100], ["dog", "cat"])
    with pytest.raises(ValueError, match="prompt must contain"):
        HSISpec(prompt="a photo")
    with pytest.raises(ValueError, match="valid open_clip ResNet configs"):
        build_hsi_model(HSISpec(clip_model="RN49"))


def test_openai_torchscript_archive_converted_only_with_the_flag(model, tmp_path):
    archive = tmp_path / "RN50.pt"
    clip = model.clip.eval()
    tokens = model.tokenizer(["a photo of a dog"])
    with pytest.warns(FutureWarning):
        traced = torch.jit.trace(clip, (torch.rand(1, 3, 224, 224), tokens), check_trace=False)
        torch.jit.save(traced, str(archive))
    with pytest.raises(ValueError, match="allow_torchscript=True"):
        convert_openai_checkpoint(archive, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    out = tmp_path / "RN50.safetensors"
    count = convert_openai_checkpoint(archive, out, allow_torchscript=True)
    state = load_weights(str(out))
    assert count == len(state) == len(clip.state_dict())
    assert torch.equal(state["visual.attnpool.c_proj.weight"], clip.visual.attnpool.c_proj.weight)
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match="not a TorchScript archive"):
        convert_openai_checkpoint(plain, out, allow_torchscript=True)


def test_clip_weights_round_trip_through_safetensors(model, other, images, tmp_path):
    """Runs last: it overwrites `other`'s CLIP weights."""
    from safetensors.torch import save_file

    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.clip.state_dict().items()}, str(path))
    load_clip_state(other, load_weights(str(path)))
    with torch.no_grad():
        torch.testing.assert_close(other.visual_features(images[:1])["z"], model.visual_features(images[:1])["z"])
    with pytest.raises(ValueError, match="unexpected keys"):
        load_clip_state(other, model.state_dict())  # a whole HSI checkpoint is not CLIP weights
    with pytest.raises(ValueError, match="missing keys"):
        load_hsi_state(other, model.clip.state_dict())
