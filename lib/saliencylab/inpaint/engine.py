"""Deep Image Prior inpainting (Ulyanov et al., CVPR 2018), many images' independent networks fitted in one step.

For each image x (3, H, W) in [0, 1] with known mask m (1 = known), an untrained generator f with
fixed noise input z (32 channels, U[0, 1) x 0.1) is fitted by Adam to

    L(theta) = sum((f(z + n_t) - x)^2 * m) / (3 H W),   n_t ~ N(0, 1) x reg_noise_std, fresh each step,

(the upstream notebook's MSE(out*mask, img*mask) with a 0/1 mask), for `iterations` steps; the
result is f(z) without the regularisation noise, BatchNorm in training mode as upstream.

Batching: images padded to the same size are fitted together, G at a time, by one grouped net
(`nets.stack_nets`): G networks with their own weights, Adam moments and per-image BatchNorm
statistics; the loss is the SUM of the per-image losses, so each network's gradient is that of its
own loss. Every random stream is derived from (seed, purpose, image key): an image's result does
not depend on its batch, except for floating-point summation order (grouped vs plain kernels).

Early stopping (off when `early_stop_window` is 0): after every multiple t of the window W (t >= 2W),
an image stops when the best known-pixel loss of its last W steps improved on the best before by
less than a fraction `early_stop_eps`: (best_before - best_recent) / best_before < eps. Its
result is taken at that step; its network rides along (unused) until its batch finishes.

On CUDA, `amp` runs the forward pass in float16 autocast with a gradient scaler and the tensors in
channels-last layout; on the CPU everything is float32 and reruns are bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from saliencylab.inpaint.canvas import padded_size, reflect_pad
from saliencylab.inpaint.nets import NetSpec, build_net, stack_nets
from saliencylab.seeding import seeded_init, torch_generator


@dataclass(frozen=True)
class FitSettings:
    """How every image is fitted (see the module docstring for the rules)."""

    net: NetSpec = NetSpec()
    iterations: int = 4001  # Adam steps (paper: 4001)
    lr: float = 1e-3  # Adam learning rate (paper: 1e-3 with the resnet)
    input_scale: float = 0.1  # noise input z = U[0, 1) * input_scale (upstream get_noise 'u', var 1/10)
    reg_noise_std: float = 0.03  # std of the noise added to z at every step (upstream 0.03; 0 = none)
    early_stop_window: int = 0  # W steps; 0 = off (paper)
    early_stop_eps: float = 1e-3  # minimum relative improvement over a window to go on
    amp: bool = True  # CUDA only: float16 autocast + grad scaler, channels-last

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.lr <= 0 or self.early_stop_window < 0:
            raise ValueError(
                f"need iterations >= 1, lr > 0, early_stop_window >= 0; got {self.iterations}, {self.lr}, {self.early_stop_window}"
            )


@dataclass(frozen=True)
class InpaintItem:
    """One image to fill: its key (labels its random streams), pixels and known mask.

    image: (3, H, W) float32 RGB in [0, 1] (float64 runs the whole fit in float64, for reference checks).
    known: (H, W) bool, True = known pixel.
    """

    key: str
    image: torch.Tensor
    known: torch.Tensor


@dataclass(frozen=True)
class FitResult:
    """The network output for one image and how the fit went.

    output: (3, H, W) float32 in (0, 1) on the CPU, the whole net output (composite it yourself).
    iterations: Adam steps taken. final_loss: known-pixel loss of `output` (the L above without noise).
    padded: the (H, W) the network ran at.
    """

    output: torch.Tensor
    iterations: int
    final_loss: float
    padded: tuple[int, int]


class _Plateau:
    """The early-stopping rule of the module docstring, for one image."""

    def __init__(self, window: int, eps: float):
        self.window, self.eps, self.losses = window, eps, []

    def stop(self, loss: float) -> bool:
        self.losses.append(loss)
        t, w = len(self.losses), self.window
        if not w or t % w or t < 2 * w:
            return False
        before, recent = min(self.losses[:-w]), min(self.losses[-w:])
        return before <= 0 or (before - recent) / before < self.eps


def _net_for(spec: NetSpec, seed: int, key: str) -> torch.nn.Module:
    with seeded_init(seed, "inpaint", "weights", key):
        return build_net(spec, 1)


def _per_image_loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(G,) known-pixel losses of out/target (1, G*3, H, W) under mask (1, G*3, H, W); counts (G,) = 3HW."""
    g = counts.numel()
    return (((out.to(target.dtype) - target) * mask) ** 2).reshape(g, -1).sum(1) / counts


def fit_group(items: Sequence[InpaintItem], settings: FitSettings, seed: int, device: torch.device) -> list[FitResult]:
    """Fit one network per item, all in one grouped net; every item must pad to the same size.

    Args:
        items: G images (see InpaintItem); not modified.
        settings: the fit.
        seed: the run's seed; item i's weights, input and noise come from (seed, purpose, items[i].key).
        device: where to fit.

    Returns:
        One FitResult per item, in order.
    """
    spec, g = settings.net, len(items)
    size = padded_size(tuple(items[0].image.shape[-2:]), spec.multiple, spec.min_side)
    if any(padded_size(tuple(it.image.shape[-2:]), spec.multiple, spec.min_side) != size for it in items):
        raise ValueError("fit_group needs images that pad to one size; group them with inpaint_images")
    cuda = device.type == "cuda"
    amp = settings.amp and cuda
    layout = torch.channels_last if cuda else torch.contiguous_format
    dtype = items[0].image.dtype
    if dtype not in (torch.float32, torch.float64) or any(it.image.dtype != dtype for it in items):
        raise ValueError(f"images must all be float32 (or float64 for reference runs), got {[it.image.dtype for it in items]}")
    net = stack_nets(spec, [_net_for(spec, seed, it.key) for it in items]).to(device, dtype, memory_format=layout).train()
    target, mask, counts, z = _stacked_inputs(items, size, settings, seed, device)
    z = z.contiguous(memory_format=layout)
    shape = (spec.input_channels, *size)
    noise = [torch_generator(seed, "inpaint", "reg-noise", it.key, device=device) for it in items]
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    plateaus = [_Plateau(settings.early_stop_window, settings.early_stop_eps) for _ in items]
    done: dict[int, tuple[torch.Tensor, int]] = {}
    for step in range(1, settings.iterations + 1):
        x = z
        if settings.reg_noise_std > 0:
            n = torch.cat([torch.randn(shape, generator=gen, device=device, dtype=dtype) for gen in noise]).unsqueeze(0)
            x = z + n * settings.reg_noise_std
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            losses = _per_image_loss(net(x), target, mask, counts)
        scaler.scale(losses.sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        if settings.early_stop_window:
            stopping = [i for i, v in enumerate(losses.tolist()) if i not in done and plateaus[i].stop(v)]
            if stopping:
                clean = _clean_output(net, z)
                done.update({i: (clean[3 * i : 3 * i + 3], step) for i in stopping})
            if len(done) == g:
                break
    if len(done) < g:
        clean = _clean_output(net, z)
        done.update({i: (clean[3 * i : 3 * i + 3], settings.iterations) for i in range(g) if i not in done})
    return [_result(it, *done[i], size) for i, it in enumerate(items)]


def _stacked_inputs(
    items: Sequence[InpaintItem], size: tuple[int, int], settings: FitSettings, seed: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Padded targets and masks (1, G*3, H', W'), pixel counts (G,) and noise inputs z (1, G*C_in, H', W').

    Channels are group-major, as the grouped net expects; dtype is the images'.
    """
    dtype = items[0].image.dtype
    target = torch.cat([reflect_pad(it.image, size) for it in items]).unsqueeze(0).to(device)
    mask = torch.cat([_pad_zero(it.known, size) for it in items])
    mask = mask.repeat_interleave(3, 0).unsqueeze(0).to(device, dtype)
    counts = torch.tensor([3.0 * it.known.numel() for it in items], device=device, dtype=dtype)
    shape = (settings.net.input_channels, *size)
    z = torch.cat([torch.rand(shape, generator=torch_generator(seed, "inpaint", "input", it.key), dtype=dtype) for it in items])
    return target, mask, counts, (z * settings.input_scale).unsqueeze(0).to(device)


def _result(item: InpaintItem, out: torch.Tensor, steps: int, size: tuple[int, int]) -> FitResult:
    """Crop the padded output back to the image and score it on the known pixels (float64)."""
    h, w = item.image.shape[-2:]
    out = out[:, :h, :w].to(item.image.dtype).cpu()
    known = item.known.double()
    loss = float((((out.double() - item.image.double()) ** 2) * known).sum() / (3 * h * w))
    return FitResult(out, steps, loss, size)


def _pad_zero(known: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, H', W') known mask with the padding marked unknown: padded pixels are not data."""
    h, w = known.shape
    return torch.nn.functional.pad(known.float()[None], (0, size[1] - w, 0, size[0] - h))


def _clean_output(net: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """(G*3, H', W') net output for the noise-free input, in z's dtype (BatchNorm in training mode, as upstream)."""
    with torch.no_grad():
        return net(z)[0].to(z.dtype)


def inpaint_images(
    items: Sequence[InpaintItem], settings: FitSettings, seed: int, batch_size: int, device: torch.device
) -> list[FitResult]:
    """Fit every item, `batch_size` networks at a time, images grouped by padded size (in input order).

    batch_size 1 is the one-image-at-a-time engine. Returns one FitResult per item, in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = settings.net
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, it in enumerate(items):
        if it.image.ndim != 3 or it.image.shape[0] != 3 or tuple(it.known.shape) != tuple(it.image.shape[1:]):
            raise ValueError(f"{it.key}: need image (3, H, W) and known (H, W); got {tuple(it.image.shape)}, {tuple(it.known.shape)}")
        by_size.setdefault(padded_size(tuple(it.image.shape[1:]), spec.multiple, spec.min_side), []).append(i)
    results: dict[int, FitResult] = {}
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            results.update(zip(chunk, fit_group([items[i] for i in chunk], settings, seed, device)))
    return [results[i] for i in range(len(items))]
