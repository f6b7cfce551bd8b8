"""The HSI network: CLIP RN50 features, a dense text-aligned embedding, a label score map and a decoder.

For a (B, 3, 224, 224) batch of RGB images in [0, 1] and B labels it computes (RN50 at 224):

    u4 = visual.layer3(x)                    (B, 1024, 14, 14), average-pooled 2x2 to 7x7
    u5 = visual.layer4(x)                    (B, 2048, 7, 7)
    z  = dense embedding of u5               (B, 1024, 7, 7)   DenseCLIP (default) or MaskCLIP
    s  = encode_text(prompt.format(label))   (B, 1024)
    a  = cos(z, s) per position              (B, 1, 7, 7)      raw cosine in [-1, 1], no temperature
    p  = up224(sigmoid(conv1x1(relu(conv3x3(u4 || u5 || z || a)))))   (B, 1, 224, 224) in [0, 1]

The decoder input is 4097 channels with all four features; the paper's no-text baseline drops a
(`saliencylab.hsi.spec.NO_TEXT_FEATURES`). Nothing here reads files: weights go through `saliencylab.hsi.clip_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from saliencylab.hsi.spec import DENSE_VARIANTS, HSISpec
from saliencylab.seeding import seeded_init

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's normalisation (open_clip OPENAI_DATASET_MEAN)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)  # (open_clip OPENAI_DATASET_STD)


def prompt_texts(template: str, labels: Sequence[str]) -> list[str]:
    """The prompts for `labels`: `template.format(label=...)` per label.

    Labels are used as given (multi-word names such as "traffic light" stay as they are; non-ASCII
    characters are tokenised as is by CLIP's byte-level BPE).

    Raises:
        ValueError: If a label is not a string or is empty/whitespace, naming it.
    """
    texts = []
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label {label!r} cannot fill the prompt {template!r}: labels must be non-empty text")
        texts.append(template.format(label=label.strip()))
    return texts


def dense_embedding(pool: nn.Module, u5: torch.Tensor, variant: str = "denseclip") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The dense visual embedding z of CLIP's attention pool, one vector per u5 position.

    `denseclip` (Rao et al., DenseCLIP): the mean token is prepended, the positional embedding added,
    and every token (not only the mean one) is a query of the pool's multi-head attention with its
    q/k/v projections and c_proj as output projection. Token 0 is then exactly the pooled CLIP image
    embedding. `maskclip` (Zhou et al., MaskCLIP): z = c_proj(v_proj(u5)) per position, with no
    positional embedding and no attention.

    Args:
        pool: open_clip's `AttentionPool2d` (`visual.attnpool`), not modified.
        u5: (B, C, h, w) float, the last ResNet stage; h*w + 1 must equal the positional embedding's
            length (7x7 for RN50 at 224).
        variant: "denseclip" or "maskclip".

    Returns:
        z: (B, D, h, w) on u5's device (D = 1024 for RN50), and for `denseclip` the pooled token
        (B, D), for `maskclip` None.

    Raises:
        ValueError: For an unknown variant or a grid that does not fit the positional embedding.
    """
    if variant not in DENSE_VARIANTS:
        raise ValueError(f"dense variant must be one of {DENSE_VARIANTS}, got {variant!r}")
    b, c, h, w = u5.shape
    tokens = u5.flatten(2).permute(2, 0, 1)  # (h*w, B, C): sequence first, as the attention expects
    if variant == "maskclip":
        z = pool.c_proj(F.linear(tokens, pool.v_proj.weight, pool.v_proj.bias))  # (h*w, B, D)
        return z.permute(1, 2, 0).reshape(b, -1, h, w), None
    positions = pool.positional_embedding
    if positions.shape[0] != h * w + 1:
        raise ValueError(
            f"u5 grid {h}x{w} does not fit the positional embedding ({positions.shape[0] - 1} positions); "
            "feed images of the model's image_size"
        )
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0) + positions[:, None, :].to(tokens.dtype)
    out, _ = F.multi_head_attention_forward(
        query=tokens,
        key=tokens,
        value=tokens,
        embed_dim_to_check=c,
        num_heads=pool.num_heads,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        training=False,
        need_weights=False,
        use_separate_proj_weight=True,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
    )  # (1 + h*w, B, D)
    return out[1:].permute(1, 2, 0).reshape(b, -1, h, w), out[0]


def score_map(z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """a = cos(z, s): the cosine between each position's embedding and the label's text embedding.

    Args:
        z: (B, D, h, w) float dense image embedding.
        text: (B, D) float text embedding, one per image.

    Returns:
        (B, 1, h, w) raw cosine in [-1, 1] (no temperature), on z's device.
    """
    if z.shape[:2] != text.shape:
        raise ValueError(f"z {tuple(z.shape)} and text {tuple(text.shape)} need the same (B, D)")
    return torch.einsum("bdhw,bd->bhw", F.normalize(z, dim=1), F.normalize(text, dim=1))[:, None]


class SaliencyDecoder(nn.Module):
    """3x3 conv -> ReLU -> 1x1 conv -> sigmoid -> bilinear up-sampling (the HSI decoder)."""

    def __init__(self, in_channels: int, hidden: int, out_size: int):
        super().__init__()
        self.conv3 = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(hidden, 1, kernel_size=1)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> (B, 1, out_size, out_size) in [0, 1]."""
        p = torch.sigmoid(self.conv1(F.relu(self.conv3(x))))
        return F.interpolate(p, size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)


class HSIModel(nn.Module):
    """CLIP (image and text towers) plus the HSI decoder; see the module docstring for the shapes."""

    def __init__(self, spec: HSISpec, clip: nn.Module, tokenizer):
        super().__init__()
        self.spec = spec
        self.clip = clip
        self.tokenizer = tokenizer
        visual = clip.visual
        channels = {
            "u4": visual.layer3[-1].conv3.out_channels,
            "u5": visual.layer4[-1].conv3.out_channels,
            "z": visual.attnpool.c_proj.out_features,
            "a": 1,
        }
        self.decoder = SaliencyDecoder(sum(channels[f] for f in spec.features), spec.decoder_channels, spec.image_size)
        self.register_buffer("mean", torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def uses_text(self) -> bool:
        return "a" in self.spec.features

    def visual_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """u4 (pooled to u5's grid), u5, z and (DenseCLIP) the pooled embedding of (B, 3, S, S) RGB in [0, 1]."""
        size = self.spec.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"images must be (B, 3, {size}, {size}), got {tuple(images.shape)}")
        if images.numel() and float(images.max()) > 1.0 + 1e-3:
            raise ValueError(f"images must be RGB in [0, 1], got values up to {float(images.max()):.1f} (0-255 input?)")
        visual = self.clip.visual
        u4, u5 = visual.forward_intermediates((images - self.mean) / self.std, indices=[3, 4], intermediates_only=True)[
            "image_intermediates"
        ]
        z, pooled = dense_embedding(visual.attnpool, u5, self.spec.dense)
        return {"u4": F.adaptive_avg_pool2d(u4, u5.shape[-2:]), "u5": u5, "z": z, "pooled": pooled}

    def tokens(self, labels: Sequence[str]) -> tuple[list[str], torch.Tensor]:
        """The prompts of `labels` and their (len(labels), 77) int64 CLIP tokens, on the CPU.

        Raises:
            ValueError: For an empty label or a prompt that does not fit CLIP's context, naming it.
        """
        texts = prompt_texts(self.spec.prompt, labels)
        tokens = self.tokenizer(texts)
        for text, row in zip(texts, tokens):
            if row[-1] != 0:  # the last slot is taken: the tokenizer truncated the prompt
                raise ValueError(f"prompt {text!r} is longer than CLIP's {tokens.shape[-1]} tokens")
        return texts, tokens

    def text_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """(B, D) CLIP text embeddings of the prompts of `labels` (one forward per distinct label)."""
        texts, _ = self.tokens(labels)
        distinct = sorted(set(texts))
        embedded = self.clip.encode_text(self.tokenizer(distinct).to(self.mean.device))
        return embedded[torch.tensor([distinct.index(t) for t in texts], device=embedded.device)]

    def forward(self, images: torch.Tensor, labels: Sequence[str] | None = None, text: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted saliency maps.

        Args:
            images: (B, 3, S, S) float32 RGB in [0, 1], S = spec.image_size (224); not mutated.
            labels: B label names (e.g. COCO category names); ignored (may be None) without text.
            text: optional (B, D) text embeddings of the labels, computed beforehand (training with a
                frozen CLIP caches them); when given, `labels` is only checked for its length.

        Returns:
            (B, 1, S, S) float32 in [0, 1] on the images' device.

        Raises:
            ValueError: For a wrong image shape or range, a missing/empty label or a prompt over 77 tokens.
        """
        features = self.visual_features(images)
        if self.uses_text:
            if labels is None or len(labels) != len(images):
                raise ValueError(f"the model uses text: give one label per image ({len(images)}), got {labels!r}")
            features["a"] = score_map(features["z"], self.text_embeddings(labels) if text is None else text)
        return self.decoder(torch.cat([features[f] for f in self.spec.features], dim=1))


def build_hsi_model(spec: HSISpec = HSISpec(), seed: int = 0) -> HSIModel:
    """A randomly initialised HSI network (seeded, so equal seeds give equal weights), on the CPU, in eval mode.

    Raises:
        ValueError: If `spec.clip_model` is not an open_clip ResNet config (the list of names is given).
    """
    import open_clip

    names = [n for n in open_clip.list_models() if n.startswith("RN")]
    if spec.clip_model not in names:
        raise ValueError(f"unknown CLIP model {spec.clip_model!r}; valid open_clip ResNet configs: {names}")
    config = open_clip.get_model_config(spec.clip_model)
    config["vision_cfg"] = {**config["vision_cfg"], "image_size": spec.image_size}
    with seeded_init(seed, "weights", "hsi", spec.clip_model):
        clip = open_clip.CLIP(**config)  # what create_model(pretrained=None) builds, without its log noise
        model = HSIModel(spec, clip, open_clip.get_tokenizer(spec.clip_model))
    return model.eval()
