"""EigenCAM throughput: our batched engine vs pytorch-grad-cam 1.5.7's EigenCAM, on random-init Faster R-CNN.

Run: .venv/bin/python -m bench.bench_cam [--device cpu|cuda] [--images 8] [--batch 8] [--size 512] [--rounds 2]

All sides get the same `--images` RGB [0, 1] images of size×size, the same model and the same
layer (`backbone.body.layer4`, the paper's), with torchvision's internal resize to 800 px.
- ours: `eigencam_maps` on batches of `--batch`: inference mode, channels-last, stops at layer4,
  batched float64 `eigh` on the smaller Gram matrix, resize on the device. Timed twice: with
  the whole batch in one forward pass, and with `forward_batch=1` (one image per forward pass,
  still one call and one batched eigendecomposition), which suits CPU caches better.
- grad-cam: `gradcam_eigencam_maps`, one image at a time as paper A did: autograd on, the whole
  transform + backbone (body and FPN), activation copied to the CPU, full NumPy SVD per image,
  cv2 resize. Paper A also ran the RPN and ROI heads on every image, so its cost was higher still.
Each side gets one warm-up image; then the sides take turns for `--rounds` rounds and the
fastest round counts (a shared machine's load only ever adds time). Reported: images/s, the
ratio to grad-cam, peak memory per side (CPU: peak RSS, reset before each side through
/proc/self/clear_refs where Linux allows it, else cumulative; CUDA: max allocated), and the max
abs difference from grad-cam's maps (both with our sign rule).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from saliencylab.cam import build_detector, eigencam_maps, get_detector
from saliencylab.cam.gradcam_reference import gradcam_eigencam_maps
from saliencylab.devices import pick_device

LAYER = "backbone.body.layer4"


def _reset_peak(device: torch.device) -> None:
    """Reset the peak-memory counter where possible (CUDA; Linux RSS through clear_refs)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak RSS
    except OSError:
        pass  # then VmHWM/ru_maxrss stay cumulative since the process started


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run_all(run, images: torch.Tensor, batch: int, device: torch.device) -> tuple[torch.Tensor, float, float]:
    """Maps for all `images` in chunks of `batch`: (maps, seconds, peak MiB during the run)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _reset_peak(device)
    sync()
    start = time.perf_counter()
    maps = torch.cat([run(images[i : i + batch]) for i in range(0, len(images), batch)])
    sync()
    return maps, time.perf_counter() - start, _peak_mib(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    parser.add_argument("--images", type=int, default=8, help="timed images per side and round")
    parser.add_argument("--batch", type=int, default=8, help="our engine's batch size")
    parser.add_argument("--size", type=int, default=512, help="input images are size×size (paper A: 512)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per side; the fastest counts")
    args = parser.parse_args()
    device = pick_device(args.device)

    torch.manual_seed(0)
    spec = get_detector("faster_rcnn")
    model = build_detector(spec).to(device)
    images = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"device {device} | torch {torch.__version__} | CPU threads {torch.get_num_threads()}")
    print(f"Faster R-CNN R50-FPN, random init, layer {LAYER}, {args.images} images {args.size}×{args.size} "
          f"(internal resize to {model.transform.min_size[-1]} px), fastest of {args.rounds} rounds")

    sides = {
        f"ours, batch {args.batch}, one forward": (lambda x: eigencam_maps(spec, model, x, LAYER), args.batch),
        f"ours, batch {args.batch}, forward_batch=1": (
            lambda x: eigencam_maps(spec, model, x, LAYER, forward_batch=1), args.batch
        ),
        "grad-cam 1.5.7 EigenCAM, per image": (lambda x: gradcam_eigencam_maps(spec, model, x, LAYER), 1),
    }
    for run, _ in sides.values():
        run(images[:1])  # warm-up
    results: dict[str, tuple[torch.Tensor, float, float]] = {}
    for _ in range(args.rounds):
        for name, (run, batch) in sides.items():
            maps, seconds, peak = _run_all(run, images, batch, device)
            if name not in results or seconds < results[name][1]:
                results[name] = (maps, seconds, max(peak, results.get(name, (None, 0, 0))[2]))

    reference_maps, reference_s, _ = results["grad-cam 1.5.7 EigenCAM, per image"]
    memory = "CUDA max allocated MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"{'':<40} {'img/s':>7} {'s':>7} {'vs grad-cam':>11} {memory:>22} {'max |diff|':>10}")
    for name, (maps, seconds, peak) in results.items():
        diff = (maps - reference_maps).abs().max().item()
        print(f"{name:<40} {args.images / seconds:>7.3f} {seconds:>7.2f} {reference_s / seconds:>10.2f}x "
              f"{peak:>22.0f} {diff:>10.1e}")


if __name__ == "__main__":
    main()
