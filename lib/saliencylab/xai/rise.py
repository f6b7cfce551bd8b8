"""RISE (Petsiuk et al., BMVC 2018): randomised input sampling, batched over images and masks, seeded.

The algorithm of the authors' code (eclique/RISE, `explanations.py`), notes §7.2:
- N binary grids of s×s cells, each cell kept with probability p1;
- each grid up-sampled bilinearly to (s+1)·cell pixels per side, cell = ⌈H/s⌉ (per axis), and
  cropped to H×W at a random shift in [0, cell) per axis: smooth masks in [0, 1];
- the model (with a softmax) scores every image under every mask, the masks multiplying the
  *normalised* image, so hidden pixels take the mean colour;
- saliency of class c = Σ_n p_c(image ⊙ mask_n) · mask_n / N / p1.

Ours differs only in how it is run: one mask bank for all images, kept compact (the grids and
shifts, N·(s² + 2) numbers) and expanded chunk by chunk on the images' device; many images and
many masks per forward pass; only the target class's probabilities multiply the masks. The
random draws come from a CPU `torch.Generator` (`torch_generator(seed, "rise")` in the stage), so
CPU and CUDA runs use the same masks. The up-sampling is upstream's `skimage.transform.resize(...,
order=1, mode='reflect', anti_aliasing=False)` written as a (rows × s) weight matrix: linear
interpolation at pixel centres, with the grid mirrored about its edge cells beyond them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from saliencylab.xai.classifier import check_targets

FLOAT_BYTES = 4  # float32 throughout a RISE forward pass


def check_rise_params(masks: int, cells: int, p1: float, size: tuple[int, int]) -> None:
    """Refuse RISE settings that are out of range for an image of `size` = (H, W).

    Raises:
        ValueError: masks < 1; cells < 2 (one cell makes every mask constant, hence a constant
            map) or more cells than pixels along a side; p1 outside (0, 1].
    """
    if isinstance(masks, bool) or not isinstance(masks, int) or masks < 1:
        raise ValueError(f"RISE needs at least 1 mask (N), got {masks!r}")
    if isinstance(cells, bool) or not isinstance(cells, int) or not 2 <= cells <= min(size):
        raise ValueError(f"RISE grid size s must be an integer from 2 to the image's shorter side {min(size)}, got {cells!r}")
    if not 0 < p1 <= 1:
        raise ValueError(f"RISE keep-probability p1 must be in (0, 1], got {p1!r}")


def upsampling_matrix(cells: int, size: int) -> Tensor:
    """Weights of order-1 up-sampling of `cells` values to `size`, as skimage's resize with mode='reflect'.

    Output pixel i samples the grid at c = (i + 0.5)·cells/size − 0.5 (pixel centres) between
    cells ⌊c⌋ and ⌊c⌋ + 1; beyond the first and last cell centres the grid is mirrored about
    them (cell −1 is cell 1), scipy.ndimage's 'mirror' mode that skimage's 'reflect' maps to.

    Returns:
        (size, cells) float64 on the CPU; each row sums to 1.

    Raises:
        ValueError: fewer than 2 cells (nothing to interpolate between).
    """
    if cells < 2:
        raise ValueError(f"up-sampling needs at least 2 cells, got {cells}")
    position = (torch.arange(size, dtype=torch.float64) + 0.5) * cells / size - 0.5
    low = torch.floor(position)
    frac = position - low
    period = 2 * (cells - 1)

    def mirrored(index: Tensor) -> Tensor:
        index = index.long().abs() % period
        return torch.where(index >= cells, period - index, index)

    weights = torch.zeros(size, cells, dtype=torch.float64)
    rows = torch.arange(size)
    weights.index_put_((rows, mirrored(low)), 1 - frac, accumulate=True)
    weights.index_put_((rows, mirrored(low + 1)), frac, accumulate=True)
    return weights


@dataclass(frozen=True)
class RiseMasks:
    """A RISE mask bank in compact form; `expand` turns a range of it into masks.

    Attributes:
        grid: (N, s, s) float64 in {0, 1} on the CPU, 1 = the cell is kept.
        shifts: (N, 2) int64 on the CPU, the crop's (row, column) offset, in [0, cell) per axis.
        size: (H, W) of the masks.
        p1: the keep-probability the grid was drawn with (the saliency divides by it).
    """

    grid: Tensor
    shifts: Tensor
    size: tuple[int, int]
    p1: float

    def __len__(self) -> int:
        return self.grid.shape[0]

    def expand(self, start: int, stop: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
        """Masks start..stop−1 as (n, H, W) in [0, 1], `dtype`, on `device` (computed there in float64)."""
        cells = self.grid.shape[1]
        grid = self.grid[start:stop].to(device)
        masks = []
        for axis, extent in enumerate(self.size):
            up = upsampling_matrix(cells, (cells + 1) * math.ceil(extent / cells)).to(device)
            # rows of the up-sampling matrix each mask's crop keeps: (n, extent)
            kept = self.shifts[start:stop, axis, None].to(device) + torch.arange(extent, device=device)
            masks.append(up[kept])  # (n, extent, s)
        rows, cols = masks
        return (rows @ grid @ cols.transpose(1, 2)).to(dtype)  # (n, H, s) @ (n, s, s) @ (n, s, W)


def rise_mask_bank(masks: int, cells: int, p1: float, size: tuple[int, int], generator: torch.Generator) -> RiseMasks:
    """Draw a RISE mask bank: N grids of s×s cells kept with probability p1, and N crop shifts.

    Args:
        masks: N, at least 1.
        cells: s, from 2 to min(H, W).
        p1: keep-probability in (0, 1].
        size: (H, W) of the images the masks will cover (the classifier's input).
        generator: a CPU torch.Generator; draws, in order, the grids (N·s² uniforms, kept where
            < p1), the row shifts and the column shifts.

    Raises:
        ValueError: as `check_rise_params`, or a generator that is not on the CPU.
    """
    check_rise_params(masks, cells, p1, size)
    if generator.device.type != "cpu":
        raise ValueError(f"the RISE mask generator must be a CPU generator (same masks on every device), got {generator.device}")
    grid = (torch.rand(masks, cells, cells, generator=generator, dtype=torch.float64) < p1).double()
    row_shift = torch.randint(math.ceil(size[0] / cells), (masks,), generator=generator)
    col_shift = torch.randint(math.ceil(size[1] / cells), (masks,), generator=generator)
    return RiseMasks(grid, torch.stack([row_shift, col_shift], dim=1), (int(size[0]), int(size[1])), float(p1))


def rise_maps(model: nn.Module, x: Tensor, targets: Tensor, masks: RiseMasks, chunk: int) -> Tensor:
    """RISE saliency of each image's target class: Σ_n p_c(x ⊙ m_n) · m_n / N / p1.

    Args:
        model: classifier in eval mode taking normalised input and returning logits (a softmax
            over dim 1 turns them into probabilities). Not modified.
        x: (B, 3, H, W) float32 or float64, normalised RGB (`normalise`), on the model's device,
            with (H, W) == masks.size. Not modified.
        targets: (B,) int64 class index per image, on x's device.
        masks: the mask bank, shared by all images.
        chunk: masks per forward pass per image; a forward pass holds B·chunk masked images.

    Returns:
        (B, H, W) in x's dtype on x's device: the raw saliency, in probability units (about
        p_c(x) where nothing matters; not min-max scaled).

    Raises:
        TypeError, ValueError: bad targets, x of another size than the masks, or chunk < 1.
    """
    check_targets(targets, x)
    if tuple(x.shape[-2:]) != masks.size:
        raise ValueError(f"images are {tuple(x.shape[-2:])} but the RISE masks are {masks.size}; resize the images first")
    if chunk < 1:
        raise ValueError(f"RISE chunk (masks per forward pass) must be >= 1, got {chunk}")
    batch, (height, width) = x.shape[0], masks.size
    saliency = torch.zeros(batch, height * width, dtype=x.dtype, device=x.device)
    with torch.inference_mode():
        for start in range(0, len(masks), chunk):
            m = masks.expand(start, min(start + chunk, len(masks)), x.device, x.dtype)  # (n, H, W)
            # every image under every mask of the chunk: (B, n, 3, H, W) flattened to (B·n, 3, H, W)
            stack = (x[:, None] * m[None, :, None]).flatten(0, 1)
            probabilities = torch.softmax(model(stack), dim=1).view(batch, len(m), -1)
            p = probabilities.gather(2, targets.view(batch, 1, 1).expand(batch, len(m), 1))[..., 0]  # (B, n)
            saliency += p @ m.flatten(1)
    return (saliency / len(masks) / masks.p1).view(batch, height, width)


def rise_memory_bytes(batch: int, chunk: int, size: tuple[int, int], activation_factor: int) -> int:
    """Estimated peak memory of `rise_maps` beyond the model's weights, in bytes (float32).

    Per forward pass: the masked stack (B·chunk·3·H·W), the network's live activations
    (`activation_factor` times the stack), the chunk's masks in float64 and float32
    (12·chunk·H·W bytes) and the saliency accumulator (B·H·W). An estimate, not a bound: CUDA
    kernels may add workspace.
    """
    pixels = size[0] * size[1]
    stack = batch * chunk * 3 * pixels * FLOAT_BYTES
    return stack * (1 + activation_factor) + 12 * chunk * pixels + batch * pixels * FLOAT_BYTES


def check_rise_memory(batch: int, chunk: int, size: tuple[int, int], activation_factor: int, available: int) -> None:
    """Refuse a RISE run whose estimated memory (`rise_memory_bytes`) exceeds `available` bytes.

    Raises:
        ValueError: saying the estimate, the budget and the largest chunk that fits at this batch
            size (or that even a chunk of 1 needs a smaller batch).
    """
    need = rise_memory_bytes(batch, chunk, size, activation_factor)
    if need <= available:
        return
    base = rise_memory_bytes(batch, 0, size, activation_factor)
    per_mask = rise_memory_bytes(batch, 1, size, activation_factor) - base  # the estimate is linear in chunk
    fits = (available - base) // per_mask
    advice = (
        f"use --rise-chunk {fits} or less (masks per forward pass per image)"
        if fits >= 1
        else f"even one mask per forward pass does not fit at --batch-size {batch}; lower --batch-size"
    )
    gib = 2**30
    raise ValueError(
        f"RISE with batch {batch} x chunk {chunk} at {size[0]}x{size[1]} needs about {need / gib:.2f} GiB, "
        f"more than the {available / gib:.2f} GiB available: {advice}"
    )
