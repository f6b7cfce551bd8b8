"""EigenCAM throughput per detector: the cam stage's engine vs pytorch-grad-cam 1.5.7 as its users run it.

Run: .venv/bin/python -m bench.bench_cam [--detectors faster_rcnn ssdlite yolov5s] [--images 4]
     [--size 512 | --size 375x500] [--rounds 2] [--device auto] [--seed 0]

Per detector: random init drawn as the stage draws it (`seeded_init(seed, "weights", name)`), the
registry's target layer and internal resize, and the same `--images` RGB [0, 1] noise images for
every line (sizes are rounded to the detector's stride multiple, e.g. 32 for YOLOv5s). Lines:
- ours: `eigencam_maps` with the cam stage's defaults (jobs/cam.py: batches of `batch_size` 8;
  `forward_batch` 1 on a CPU, the whole batch on CUDA).
- grad-cam as run: `gradcam_detector_maps`, i.e. `EigenCAM(model, target_layers=[layer])` on the
  whole detector, called once per image as the library's detection tutorials and paper A do:
  the heads, NMS and autograd run every time. No reshape_transform: every registry layer gives
  a plain (1, C, h, w) tensor. The one change from the library's class is our sign rule on the
  projection (`pin_sign`, well under 1 % of a call), so that the maps can be compared.
- grad-cam, backbone-only wrapper: `gradcam_eigencam_maps`, the CAM object wraps the engine's
  feature path (our `_FeaturePath`), so the heads never run: faster than grad-cam as its users
  run it, hence a ratio that understates ours.
- floor: a plain forward pass to the target layer (preprocess, the model's transform, the feature
  path stopped at the layer) under `torch.inference_mode`, in the default memory layout, in the
  same forward steps as ours, with no CAM: what the CAM adds is read against it (ours runs
  channels-last, so it can come out below it).
Each line gets one warm-up call of its timed batch size; then the lines take turns for `--rounds`
rounds, each after a pause of IDLE_S, and the fastest round counts (a shared machine's load only
ever adds time).
Columns:
- img/s;
- speed-up: grad-cam-as-run's time / the line's (target for ours: >= 3x);
- t/floor: the line's time / the floor's (target for ours on YOLOv5s: <= 1.2x);
- peak memory: CPU peak RSS, reset before each line through /proc/self/clear_refs where Linux
  allows it (the allocator keeps what earlier lines freed); CUDA max allocated;
- max |diff|: from grad-cam-as-run's maps; for ours "padding" where the model padded its resized
  input (R-CNN types at sizes like 375×500): there the maps differ by design, as only ours crops
  the padding (docs/cam.md, "Padding");
- map max: the smallest per-image maximum of the line's maps (below 1 where activations are
  tiny, docs/cam.md, "Small activations").
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

from saliencylab.cam import build_detector, eigencam_maps, get_detector
from saliencylab.cam.gradcam_reference import gradcam_detector_maps, gradcam_eigencam_maps
from saliencylab.cam.layers import capture_activation, resolve_layer
from saliencylab.devices import pick_device
from saliencylab.seeding import seeded_init, torch_generator

from jobs.cam import CamConfig

DEFAULT_DETECTORS = ("faster_rcnn", "ssdlite", "yolov5s")
AS_RUN = "grad-cam 1.5.7 as run (full detector)"
# NumPy's OpenBLAS threads keep spinning for a while after grad-cam's SVD; a pause before each
# timed line lets them go idle, so that they do not take the cores from whichever line comes next.
IDLE_S = 0.5


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


def _timed(run: Callable[[torch.Tensor], torch.Tensor | None], images: torch.Tensor, batch: int,
           device: torch.device) -> tuple[torch.Tensor | None, float, float]:
    """`run` over `images` in chunks of `batch`: (maps or None, seconds, peak MiB during the run)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _reset_peak(device)
    sync()
    time.sleep(IDLE_S)
    start = time.perf_counter()
    outputs = [run(images[i : i + batch]) for i in range(0, len(images), batch)]
    sync()
    seconds = time.perf_counter() - start
    maps = torch.cat(outputs) if outputs[0] is not None else None
    return maps, seconds, _peak_mib(device)


def _floor(spec, model, step: int | None) -> Callable[[torch.Tensor], None]:
    """A plain forward pass of a batch to the target layer, `step` images at a time; nothing else."""
    layer = resolve_layer(model, spec.target_layer)

    def run(images: torch.Tensor) -> None:
        with torch.inference_mode():
            x = spec.adapter.model_input(model, spec.preprocess(images), spec.internal_resize).tensor
            size = step or len(x)
            for i in range(0, len(x), size):
                capture_activation(layer, lambda: spec.adapter.run(model, x[i : i + size]))

    return run


def _lines(spec, model, device: torch.device) -> dict[str, tuple[Callable, int]]:
    """Line name -> (function of an image batch, images per call)."""
    defaults = CamConfig()
    step = defaults.forward_batch or (None if device.type == "cuda" else 1)  # as jobs/cam.py resolves it
    step_text = "whole batch" if step is None else str(step)
    return {
        f"ours (stage default: batch {defaults.batch_size}, forward_batch {step_text})": (
            lambda x: eigencam_maps(spec, model, x, forward_batch=step), defaults.batch_size
        ),
        AS_RUN: (lambda x: gradcam_detector_maps(spec, model, x), 1),
        "grad-cam 1.5.7, backbone-only wrapper": (lambda x: gradcam_eigencam_maps(spec, model, x), 1),
        f"floor: plain forward to the layer, {step_text} per pass": (_floor(spec, model, step), defaults.batch_size),
    }


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width or height)


def bench_detector(name: str, args: argparse.Namespace, device: torch.device) -> None:
    """Time every line on one detector and print its table."""
    spec = get_detector(name)
    with seeded_init(args.seed, "weights", name):
        model = build_detector(spec).to(device)
    multiple = spec.size_multiple
    height, width = (max(multiple, round(s / multiple) * multiple) for s in args.size)
    images = torch.rand(args.images, 3, height, width, generator=torch_generator(args.seed, "bench-images", name))
    images = images.to(device)
    valid = spec.adapter.model_input(model, images[:1], spec.internal_resize).valid
    padded = valid != (1.0, 1.0)
    print(f"\n{name}: layer {spec.target_layer}, {args.images} images {height}×{width}"
          f"{', padded by the internal resize' if padded else ''}, fastest of {args.rounds} rounds")

    lines = _lines(spec, model, device)
    for run, batch in lines.values():
        run(images[:batch])  # warm-up, with the batch shape the timed calls use
    results: dict[str, tuple[torch.Tensor | None, float, float]] = {}
    for _ in range(args.rounds):
        for line, (run, batch) in lines.items():
            maps, seconds, peak = _timed(run, images, batch, device)
            if line not in results or seconds < results[line][1]:
                results[line] = (maps, seconds, max(peak, results.get(line, (None, 0.0, 0.0))[2]))

    reference_maps, reference_s, _ = results[AS_RUN]
    floor_s = next(seconds for line, (_, seconds, _) in results.items() if line.startswith("floor"))
    memory = "CUDA max alloc MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"{'':<52} {'img/s':>7} {'speed-up':>8} {'t/floor':>7} {memory:>18} {'max |diff|':>10} {'map max':>8}")
    for line, (maps, seconds, peak) in results.items():
        diff, top = "-", "-"
        if maps is not None:
            by_design = padded and line.startswith("ours")  # only our engine crops the padding
            diff = "padding" if by_design else f"{(maps - reference_maps).abs().max().item():.1e}"
            top = f"{maps.amax(dim=(1, 2)).min().item():.6f}"
        print(f"{line:<52} {args.images / seconds:>7.3f} {reference_s / seconds:>7.2f}x {seconds / floor_s:>6.2f}x "
              f"{peak:>18.0f} {diff:>10} {top:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=list(DEFAULT_DETECTORS), help="registry names")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    parser.add_argument("--images", type=int, default=4, help="timed images per line and round")
    parser.add_argument("--size", type=_size, default=(512, 512), help="H or HxW of the images (paper A: 512)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per line; the fastest counts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and images")
    args = parser.parse_args()
    for name in args.detectors:
        get_detector(name)  # an unknown name fails before any model is built
    device = pick_device(args.device)
    print(f"device {device} | torch {torch.__version__} | CPU threads {torch.get_num_threads()}")
    for name in args.detectors:
        bench_detector(name, args, device)


if __name__ == "__main__":
    main()
