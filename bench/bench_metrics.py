"""compare_maps throughput against the per-image NumPy reference, and the largest differences.

Run: .venv/bin/python -m bench.bench_metrics [--batch 64] [--size 512] [--repeats 5] [--threads N]

Two kinds of seeded float64 pairs at size×size: `distinct` (uniform noise, no ties) and `masks`
(smooth predictions against quantised mask-like targets that are 85–95 % zero, so ties, the
paper's tie collapse and the exact-IoU tie path all occur). For each, pairs per second of
- `compare_maps` on CPU (the numba kernels) on the whole batch,
- `compare_maps_torch` on the whole batch (the implementation used on CUDA, here on CPU),
- `bench.reference_metrics.compare_maps`, one pair at a time,
- pysaliency's CC, SIM and MIT KL, one pair at a time, when pysaliency is installed (optional),
their ratios to the reference, and the largest absolute difference per metric between the
kernels and the reference over the batch (flags must agree). Timings are best-of (best of the
timed runs after one warm-up, best of two passes for the reference), as `timeit` recommends,
because other processes on a shared machine slow the parallel implementations far more than
the single-threaded reference; the load average is printed first so that contended runs can
be told apart. The thread count (--threads) applies to torch and numba alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench import reference_metrics as ref
from saliencylab.metrics import FLAG_KEYS, SUITE_KEYS, compare_maps
from saliencylab.metrics.suite import compare_maps_torch

TOLERANCE = 1e-6  # float64 agreement required between the two implementations


def smooth_noise(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(B, size, size) float64 smooth random fields in [0, 1], like upsampled CAMs or densities."""
    coarse = torch.rand(batch, 1, size // 16, size // 16, generator=generator, dtype=torch.float64)
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    fine = fine + 1e-3 * torch.rand(batch, size, size, generator=generator, dtype=torch.float64)
    low = fine.amin(dim=(1, 2), keepdim=True)
    high = fine.amax(dim=(1, 2), keepdim=True)
    return (fine - low) / (high - low)


def make_pairs(kind: str, batch: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if kind == "distinct":
        shape = (batch, size, size)
        pred = torch.rand(shape, generator=generator, dtype=torch.float64)
        return pred, torch.rand(shape, generator=generator, dtype=torch.float64)
    pred = smooth_noise(batch, size, generator)
    field = smooth_noise(batch, size, generator)
    zero_share = torch.linspace(0.85, 0.95, batch, dtype=torch.float64)[:, None, None]
    cut = torch.quantile(field.flatten(1), zero_share.flatten(), dim=1).diagonal()[:, None, None]
    mask = torch.where(field > cut, torch.round(field * 255) / 255, torch.zeros_like(field))
    return pred, mask


def time_batched(
    implementation: Callable[..., dict[str, torch.Tensor]], pred: torch.Tensor, target: torch.Tensor, repeats: int
) -> tuple[float, dict[str, torch.Tensor]]:
    results = implementation(pred, target)  # warm-up (and numba's compilation or cache load)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = implementation(pred, target)
        times.append(time.perf_counter() - start)
    return pred.shape[0] / min(times), results


def time_reference(pred: np.ndarray, target: np.ndarray) -> tuple[float, list[dict]]:
    best, results = float("inf"), []
    for _ in range(2):
        start = time.perf_counter()
        results = [ref.compare_maps(pred[i], target[i]) for i in range(pred.shape[0])]
        best = min(best, time.perf_counter() - start)
    return pred.shape[0] / best, results


PYSALIENCY_KEYS = {"cc": "CC", "sim": "SIM", "kldiv": "MIT_KLDiv"}  # the suite's metrics pysaliency has


def time_pysaliency(pred: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, np.ndarray]] | None:
    """pysaliency's CC, SIM and MIT KL one pair at a time on the min-max scaled maps (as the suite
    scales them), best of two passes; None when pysaliency is not installed (it is optional)."""
    try:
        with warnings.catch_warnings():  # pysaliency 0.2.22 imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            from pysaliency import metrics as pys_metrics
    except ImportError:
        return None
    scaled = [(ref.minmax(pred[i]), ref.minmax(target[i])) for i in range(pred.shape[0])]
    functions = {key: getattr(pys_metrics, name) for key, name in PYSALIENCY_KEYS.items()}
    best, values = float("inf"), {}
    for _ in range(2):
        start = time.perf_counter()
        with np.errstate(divide="ignore"):  # its MIT KL takes log(0) of all-zero pixels, then masks them
            values = {key: np.array([f(p, t) for p, t in scaled]) for key, f in functions.items()}
        best = min(best, time.perf_counter() - start)
    return pred.shape[0] / best, values


def largest_differences(ours: dict[str, torch.Tensor], theirs: list[dict]) -> dict[str, float]:
    diffs = {}
    for key in SUITE_KEYS:
        expected = np.array([r[key] for r in theirs])
        diffs[key] = float(np.max(np.abs(ours[key].numpy() - expected)))
    for key in FLAG_KEYS:
        expected = np.array([r[key] for r in theirs])
        diffs[key] = float(np.sum(ours[key].numpy() != expected))  # count of disagreements
    return diffs


def run(kind: str, args: argparse.Namespace) -> bool:
    pred, target = make_pairs(kind, args.batch, args.size, args.seed)
    kernel_rate, ours = time_batched(compare_maps, pred, target, args.repeats)
    torch_rate, _ = time_batched(compare_maps_torch, pred, target, args.repeats)
    reference_rate, theirs = time_reference(pred.numpy(), target.numpy())
    diffs = largest_differences(ours, theirs)
    print(f"\n[{kind}] {args.batch} pairs of {args.size}x{args.size} float64")
    print(f"  compare_maps (numba kernels, CPU):   {kernel_rate:9.1f} pairs/s  {kernel_rate / reference_rate:5.1f}x the reference")
    print(f"  compare_maps_torch (the CUDA path):  {torch_rate:9.1f} pairs/s  {torch_rate / reference_rate:5.1f}x the reference")
    print(f"  reference (NumPy, per image):        {reference_rate:9.1f} pairs/s")
    pysaliency = time_pysaliency(pred.numpy(), target.numpy())
    if pysaliency is None:
        print("  pysaliency: not installed (optional), not compared")
    else:
        rate, values = pysaliency
        print(f"  pysaliency (CC, SIM, KL only):       {rate:9.1f} pairs/s  (kernels: {kernel_rate / rate:.1f}x, doing more)")
        for key, expected in values.items():
            print(f"    {key:18s} largest |difference| kernels vs pysaliency {np.max(np.abs(ours[key].numpy() - expected)):.3g}")
    print("  largest |difference| kernels vs reference per metric (flags: pairs that disagree):")
    for key, value in diffs.items():
        print(f"    {key:18s} {value:.3g}")
    degenerate = int(ours["target_degenerate"].sum())
    tied = int((ours["iou_exact"] != ours["iou_paper"]).sum())
    print(f"  targets with the tie collapse: {degenerate}; pairs where exact and paper IoU differ: {tied}")
    return all(diffs[key] <= TOLERANCE for key in SUITE_KEYS) and all(diffs[key] == 0 for key in FLAG_KEYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="pairs per compare_maps call")
    parser.add_argument("--size", type=int, default=512, help="map height and width in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed compare_maps runs after the warm-up")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated maps")
    parser.add_argument("--kinds", nargs="+", default=["distinct", "masks"], choices=["distinct", "masks"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # compare_maps hands torch's count to numba
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.2f}")
    ok = [run(kind, args) for kind in args.kinds]
    print(f"\nagreement within {TOLERANCE:g}: {'yes' if all(ok) else 'NO'}")
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
