"""RISE throughput: our batched `rise_maps` vs the upstream algorithm run one image at a time, same model and masks.

Run: .venv/bin/python -m bench.bench_rise [--device cpu|cuda] [--arch resnet50] [--size 224] [--masks 32]
                                         [--images 2] [--batch 2] [--chunk 16] [--rounds 1]

Both sides explain `--images` random images of size×size with one random-init classifier and one
mask bank of `--masks` masks (N), s = 7, p1 = 0.5.
- batched (ours): `rise_maps` on `--batch` images at a time, `--chunk` masks per image per
  forward pass (a pass holds batch × chunk masked images), masks expanded chunk by chunk from
  the compact bank, only the target class's probabilities multiplied into the masks.
- one image at a time (eclique/RISE's `RISE.forward`): all N masks held expanded, the image's
  whole masked stack (N×3×H×W) built at once, forward passes of `--chunk` masked images,
  softmax of every class, saliency of every class = pᵀ·masks / N / p1, the target's kept.
Each side gets one warm-up run on one image with a few masks; then the sides take turns for
`--rounds` rounds and the fastest round counts (a shared machine's load only ever adds time).
Printed: masks/s (masked images scored per second), images/hour at this N, the ratio, what
N = 4000 would cost per image at the measured rate, and the max abs difference of the maps
relative to their largest value.
"""

from __future__ import annotations

import argparse
import time

import torch

from saliencylab.devices import pick_device
from saliencylab.seeding import torch_generator
from saliencylab.xai import DEFAULT_CELLS, DEFAULT_MASKS, DEFAULT_P1, build_classifier, normalise, rise_mask_bank, rise_maps


def one_image_at_a_time(model, x, targets, bank, chunk):
    """Upstream's per-image RISE on our masks: (B, H, W) maps of the target classes."""
    masks = bank.expand(0, len(bank), x.device, x.dtype)[:, None]  # (N, 1, H, W), all held as upstream does
    n, _, height, width = masks.shape
    maps = []
    with torch.inference_mode():
        for image, target in zip(x, targets):
            stack = masks * image[None]  # (N, 3, H, W)
            p = torch.cat([torch.softmax(model(stack[i : i + chunk]), dim=1) for i in range(0, n, chunk)])
            saliency = (p.T @ masks.view(n, height * width)).view(-1, height, width) / n / bank.p1
            maps.append(saliency[target])
    return torch.stack(maps)


def batched(model, x, targets, bank, chunk, batch):
    return torch.cat([rise_maps(model, x[i : i + batch], targets[i : i + batch], bank, chunk) for i in range(0, len(x), batch)])


def timed(run, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    maps = run()
    sync()
    return maps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--masks", type=int, default=32)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    device = pick_device(args.device)
    model = build_classifier(args.arch, None, seed=0).to(device)
    x = normalise(torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))).to(device)
    targets = torch.arange(args.images, device=device) * 7
    bank = rise_mask_bank(args.masks, DEFAULT_CELLS, DEFAULT_P1, (args.size, args.size), torch_generator(0, "rise"))
    warm = rise_mask_bank(min(4, args.masks), DEFAULT_CELLS, DEFAULT_P1, (args.size, args.size), torch_generator(1, "rise"))
    sides = {
        "batched (ours)": lambda b: batched(model, x, targets, b, args.chunk, args.batch),
        "one image at a time": lambda b: one_image_at_a_time(model, x, targets, b, args.chunk),
    }
    for run in sides.values():
        run(warm)
    best, maps = {name: float("inf") for name in sides}, {}
    for _ in range(args.rounds):
        for name, run in sides.items():
            maps[name], seconds = timed(lambda: run(bank), device)
            best[name] = min(best[name], seconds)

    torch_threads = torch.get_num_threads()
    print(f"RISE on {device} ({torch_threads} threads), random-init {args.arch}, {args.images} images of {args.size}x{args.size}, "
          f"N={args.masks}, s={DEFAULT_CELLS}, p1={DEFAULT_P1}, chunk={args.chunk}, batch={args.batch}, best of {args.rounds}")  # fmt: skip
    for name, seconds in best.items():
        rate = args.images * args.masks / seconds
        print(f"  {name:22s} {seconds:8.2f} s  {rate:8.1f} masks/s  {3600 * rate / args.masks:10.1f} images/h at N={args.masks}  "
              f"{DEFAULT_MASKS / rate:8.1f} s/image at N={DEFAULT_MASKS}")  # fmt: skip
    names = list(sides)
    print(f"  ratio batched / one image at a time: {best[names[1]] / best[names[0]]:.2f}x")
    scale = float(maps[names[1]].abs().max())
    print(f"  max |difference| of the maps: {float((maps[names[0]] - maps[names[1]]).abs().max()) / scale:.2e} of the largest value")


if __name__ == "__main__":
    main()
