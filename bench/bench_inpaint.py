"""Deep Image Prior inpainting: the batched engine vs one image at a time, and fill quality vs OpenCV.

Run: .venv/bin/python -m bench.bench_inpaint [--device cpu|cuda] [--images 4] [--size 64]
     [--iterations 30] [--rounds 2] [--quality-size 64] [--quality-iterations 200] [--skip-quality]

Speed. The same `--images` random images (size x size, a CAM-like blob hidden in each) are fitted
for `--iterations` Adam steps by `inpaint_images` twice per network: with batch_size = images (all
networks in one grouped step) and batch_size = 1 (one network after the other; the same code with
G = 1). The sides take turns for `--rounds` rounds and the fastest round counts (load on a shared
machine only adds time). Networks: the paper's resnet (8 blocks x 32 channels) and a reduced
upstream skip net (4 scales x 32 channels, 4-channel skips; the full 5 x 128 preset costs ~16x as
much per step). Printed: images/hour of each side (wall clock) and the ratio, plus the ratio of the
process's CPU seconds (less sensitive to other processes on a shared machine) and the load average.

Quality. Four bundled scikit-image photographs (astronaut, coffee, chelsea, rocket; centre square,
resized to --quality-size) each lose the pixels of a CAM-like mask: a smooth random map (a few
Gaussian blobs) thresholded strictly above its 97.5th percentile, as the erase stage does with a CAM
(about 2.5 % of the pixels, set to 0). Filled by DIP (the upstream skip net above, lr 0.01,
--quality-iterations steps, batched), OpenCV Telea and Navier-Stokes (radius 3), or left erased.
Scores on the hidden pixels only: PSNR (dB, peak 255) and the mean of SSIM's map (7x7 window,
per channel, data range 255) over them. Composited results: known pixels are the input's.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from skimage.metrics import structural_similarity

from saliencylab.devices import pick_device
from saliencylab.inpaint import FitSettings, InpaintItem, NetSpec, composite, inpaint_images

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
NETS = {
    "resnet 8x32 (paper)": NetSpec("resnet", 32, 8),
    "skip 4x32, skips 4": NetSpec("skip", 32, 4, skip_channels=4),
}
TOP_PERCENTILE = 97.5  # the erase stage's default: pixels strictly above it are hidden


def cam_like_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) bool hidden mask: a sum of 3 random Gaussian blobs, strictly above its 97.5th percentile."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    field = np.zeros((size, size))
    for _ in range(3):
        cy, cx, sigma, weight = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15), rng.uniform(0.5, 1)
        field += weight * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
    return field > np.percentile(field, TOP_PERCENTILE)


def photo(name: str, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB: the centre square of a bundled scikit-image photograph, resized."""
    image = getattr(skdata, name)()[..., :3]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))


def _items(images: list[np.ndarray], hidden: list[np.ndarray], names: list[str]) -> list[InpaintItem]:
    return [
        InpaintItem(name, torch.tensor(image).permute(2, 0, 1).float() / 255, torch.from_numpy(~mask))
        for image, mask, name in zip(images, hidden, names)
    ]


def speed(args: argparse.Namespace, device: torch.device) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
    hidden = [cam_like_mask(args.size, rng) for _ in range(args.images)]
    items = _items(images, hidden, [f"img{i}" for i in range(args.images)])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(
        f"speed: {args.images} images of {args.size}x{args.size}, {args.iterations} iterations each, {device}, "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}; fastest of {args.rounds} rounds"
    )
    print("| network | batched (images/h) | one at a time (images/h) | ratio | ratio of CPU seconds |")
    print("|---|---|---|---|---|")
    for label, net in NETS.items():
        settings = FitSettings(net=net, iterations=args.iterations, lr=0.01)
        inpaint_images(items[:1], FitSettings(net=net, iterations=2), 0, 1, device)  # warm-up
        best = {args.images: (float("inf"), float("inf")), 1: (float("inf"), float("inf"))}
        for _ in range(args.rounds):
            for batch in best:
                sync()
                wall, cpu = time.perf_counter(), time.process_time()
                inpaint_images(items, settings, 0, batch, device)
                sync()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[batch] = (min(best[batch][0], wall), min(best[batch][1], cpu))
        wall = {batch: 3600 * args.images / seconds for batch, (seconds, _) in best.items()}
        cpu = {batch: 3600 * args.images / seconds for batch, (_, seconds) in best.items()}
        print(
            f"| {label} | {wall[args.images]:.0f} | {wall[1]:.0f} | {wall[args.images] / wall[1]:.2f}x "
            f"| {cpu[args.images] / cpu[1]:.2f}x |"
        )


def _scores(truth: np.ndarray, filled: np.ndarray, hidden: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, mean SSIM) of `filled` against `truth` over the hidden pixels."""
    error = (truth[hidden].astype(np.float64) - filled[hidden]) ** 2
    psnr = 10 * np.log10(255**2 / max(error.mean(), 1e-12))
    _, ssim_map = structural_similarity(truth, filled, win_size=7, channel_axis=2, data_range=255, full=True)
    return psnr, float(ssim_map[hidden].mean())


def quality(args: argparse.Namespace, device: torch.device) -> None:
    rng = np.random.default_rng(1)
    truths = [photo(name, args.quality_size) for name in PHOTOS]
    hidden = [cam_like_mask(args.quality_size, rng) for _ in PHOTOS]
    erased = [np.where(mask[..., None], 0, truth).astype(np.uint8) for truth, mask in zip(truths, hidden)]
    settings = FitSettings(net=NETS["skip 4x32, skips 4"], iterations=args.quality_iterations, lr=0.01)
    start = time.perf_counter()
    fits = inpaint_images(_items(erased, hidden, list(PHOTOS)), settings, 0, len(PHOTOS), device)
    seconds = time.perf_counter() - start
    methods = {
        "DIP (skip 4x32, lr 0.01)": [composite(e, ~m, f.output) for e, m, f in zip(erased, hidden, fits)],
        "OpenCV Telea": [cv2.inpaint(e, m.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA) for e, m in zip(erased, hidden)],
        "OpenCV Navier-Stokes": [cv2.inpaint(e, m.astype(np.uint8) * 255, 3, cv2.INPAINT_NS) for e, m in zip(erased, hidden)],
        "erased (0)": erased,
    }
    print(f"\nquality: {len(PHOTOS)} photographs at {args.quality_size}x{args.quality_size}, hidden "
          f"{np.mean([m.mean() for m in hidden]) * 100:.1f} % of pixels; DIP {args.quality_iterations} iterations, "
          f"{seconds:.0f} s for all four (batched)")
    print("| method | " + " | ".join(f"{p} PSNR / SSIM" for p in PHOTOS) + " | mean PSNR | mean SSIM |")
    print("|---" * (len(PHOTOS) + 3) + "|")
    for method, outputs in methods.items():
        scores = [_scores(t, o, m) for t, o, m in zip(truths, outputs, hidden)]
        cells = " | ".join(f"{p:.1f} / {s:.3f}" for p, s in scores)
        print(f"| {method} | {cells} | {np.mean([p for p, _ in scores]):.1f} | {np.mean([s for _, s in scores]):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quality-size", type=int, default=64)
    parser.add_argument("--quality-iterations", type=int, default=200)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    device = pick_device(args.device)
    speed(args, device)
    if not args.skip_quality:
        quality(args, device)


if __name__ == "__main__":
    main()
