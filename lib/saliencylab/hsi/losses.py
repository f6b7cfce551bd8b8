"""Differentiable saliency losses of HSI training: λ₁·KL + λ₂·CC + λ₃·NSS with λ = (1, −1, −1).

Each term follows the convention of its metric in `saliencylab.metrics` (KL(G‖P) with the MIT eps
on sum-normalised maps, an all-zero map taken as uniform; Pearson CC; NSS with the ddof-1 std) and is
tested against it; unlike the metrics these keep the autograd graph and skip the input checks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saliencylab.hsi.recipe import LOSS_WEIGHTS
from saliencylab.metrics import KL_EPS


def _density(x: Tensor) -> Tensor:
    """(B, H*W) rows divided by their sums; an all-zero row becomes uniform."""
    total = x.sum(dim=1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / x.shape[1])
    return torch.where(total > 0, x / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def kl_term(p: Tensor, g: Tensor) -> Tensor:
    """KL(G‖P) = Σ G · log(eps + G / (P + eps)), natural log, per map (metrics.kldiv).

    Args:
        p: (B, H, W) float prediction, non-negative (e.g. the model's sigmoid output).
        g: (B, H, W) float target saliency map, non-negative.

    Returns:
        (B,) ≥ 0, differentiable in p (and g), on p's device.
    """
    pd, gd = _density(p.flatten(1)), _density(g.flatten(1))
    return (gd * torch.log(KL_EPS + gd / (pd + KL_EPS))).sum(dim=1)


def cc_term(p: Tensor, g: Tensor) -> Tensor:
    """Pearson correlation of each pair of (B, H, W) maps (metrics.cc); 0 where either is constant."""
    pc = p.flatten(1) - p.flatten(1).mean(dim=1, keepdim=True)
    gc = g.flatten(1) - g.flatten(1).mean(dim=1, keepdim=True)
    denominator = torch.sqrt((pc * pc).sum(dim=1) * (gc * gc).sum(dim=1))
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, (pc * gc).sum(dim=1) / safe, torch.zeros_like(denominator))


def nss_term(p: Tensor, fixations: Tensor) -> Tensor:
    """Mean z-scored prediction (ddof 1) at fixated pixels (metrics.nss); 0 for a constant map.

    Args:
        p: (B, H, W) float prediction, H*W > 1.
        fixations: (B, H, W) fixation map, bool or non-negative numbers; nonzero = fixated, each
            fixated pixel counted once; every map needs at least one.

    Raises:
        ValueError: If a map has no fixation (batch indices listed).
    """
    fixated = (fixations != 0).flatten(1).to(p.dtype)
    counts = fixated.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError(f"maps without fixations at batch indices {torch.nonzero(counts == 0).flatten().tolist()}")
    flat = p.flatten(1)
    std = flat.std(dim=1, correction=1)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    z = (flat - flat.mean(dim=1, keepdim=True)) / safe[:, None]
    return torch.where(std > 0, (z * fixated).sum(dim=1) / counts, torch.zeros_like(std))


def hsi_loss(p: Tensor, g: Tensor, fixations: Tensor, weights: tuple[float, float, float] = LOSS_WEIGHTS) -> Tensor:
    """The batch mean of λ₁·KL(G‖P) + λ₂·CC(P, G) + λ₃·NSS(P, fixations); a scalar to minimise.

    Args:
        p: (B, H, W) prediction in [0, 1]; g: (B, H, W) target saliency map; fixations: (B, H, W).
        weights: (λ₁, λ₂, λ₃), HSI default (1, −1, −1).
    """
    kl_w, cc_w, nss_w = weights
    return (kl_w * kl_term(p, g) + cc_w * cc_term(p, g) + nss_w * nss_term(p, fixations)).mean()
