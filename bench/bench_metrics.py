"""Metric throughput against the per-image NumPy reference and pysaliency, and the largest differences.

Run: .venv/bin/python -m bench.bench_metrics [--batch 64] [--size 512] [--repeats 5] [--threads N]
                                              [--sections compare fixations]

Every rate is pairs per second (a pair: one saliency map and its target or fixations), on
seeded float64 maps of size×size. Timings are best-of (best of the timed runs after one
warm-up for our batched calls; best of two passes for the fixation metrics' torch path, the
reference and pysaliency, whose first pass includes its compilation), as `timeit` recommends,
because other processes on a shared machine slow the parallel implementations far more than
the single-threaded ones; the load average is printed first so that contended runs can be
told apart. The thread count (--threads) applies to torch and numba alike.

`compare` section: two kinds of pairs, `distinct` (uniform noise, no ties) and `masks` (smooth
predictions against quantised mask-like targets that are 85–95 % zero, so ties, the paper's
tie collapse and the exact-IoU tie path all occur). For each, `compare_maps` on CPU (the numba
kernels), `compare_maps_torch` (the CUDA implementation, here on CPU), the reference
`bench.reference_metrics.compare_maps` one pair at a time, and pysaliency's CC, SIM and MIT KL
one pair at a time when it is installed (optional); ratios, and the largest absolute
difference per metric between the kernels and the reference (flags must agree).

`fixations` section: smooth saliency maps; per image a fixation map of 10–40 fixated pixels
drawn from a "human" density correlated with the map (so scores lie above chance), the union
of 10 other images' fixation maps as `other_fixations`, and one shared centre-bias baseline
(H, W). For AUC-Judd, shuffled AUC, NSS and information gain: the CPU kernels and the torch
path on the batch, the reference one image at a time, pysaliency one image at a time
(AUC-Judd: `roc.general_roc(s[f], s[~f], judd=1)`; shuffled AUC: `general_roc(s[f], s[o],
judd=0)` given the same two fixation maps; NSS: `metrics.NSS` with coordinates, ddof
converted; pysaliency has no MIT information gain), ratios and largest differences; then
`auc_shuffled_at` given coordinates against `general_roc` on the values at the same
coordinates (pysaliency's native input), both the best of POINT_PASSES calls. The
read floor is one plain read of the same saliency maps (a numba sum of each map on the same
threads); NSS and information gain are printed as multiples of its time. Last, the suite
CC + SIM + KL + NSS + AUC-Judd: ours `compare_maps` (which adds MAE and both IoUs) + `nss` +
`auc_judd` on the batch against a target map, pysaliency's CC, SIM, MIT_KLDiv, NSS and
AUC-Judd one image at a time.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange

from bench import reference_metrics as ref
from saliencylab.metrics import FLAG_KEYS, SUITE_KEYS, auc_judd, auc_shuffled, auc_shuffled_at, compare_maps, information_gain, nss
from saliencylab.metrics.auc import auc_judd_torch, auc_shuffled_torch
from saliencylab.metrics.fixations import information_gain_torch, nss_torch
from saliencylab.metrics.kernels import torch_thread_count
from saliencylab.metrics.suite import compare_maps_torch

TOLERANCE = 1e-6  # float64 agreement required between the implementations
FIXATIONS_PER_IMAGE = (10, 40)  # fixated pixels per image, like one image's human fixations
OTHER_IMAGES = 10  # images pooled into other_fixations (Borji's shuffled-AUC protocol)
MIN_KERNEL_PASSES = 20  # the kernels and the read floor take milliseconds: more passes than --repeats steady the best
POINT_PASSES = 50  # sub-millisecond calls: both sides get this many timed passes after a warm-up
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# shared helpers


def best_time(run: Callable[[], T], passes: int, warm_up: bool) -> tuple[float, T]:
    """Best wall time of `passes` calls of run (after one untimed call when warm_up) and the last result."""
    result = run() if warm_up else None
    best = math.inf
    for _ in range(passes):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def per_image(function: Callable[[int], float], batch: int) -> tuple[float, np.ndarray]:
    """Rate (images/s, best of two passes) and values of a per-image function of the index."""
    seconds, values = best_time(lambda: np.array([function(i) for i in range(batch)]), passes=2, warm_up=False)
    return batch / seconds, values


def import_pysaliency() -> ModuleType | None:
    """pysaliency, or None when it is not installed (it is optional)."""
    try:
        with warnings.catch_warnings():  # pysaliency 0.2.22 imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import pysaliency.metrics
            import pysaliency.roc
    except ImportError:
        return None
    return pysaliency


@contextmanager
def numpy_trapz() -> Iterator[None]:
    """Let pysaliency 0.2.22's ROC run on NumPy ≥ 2.4, which removed the `np.trapz` it calls (restored after)."""
    missing = not hasattr(np, "trapz")
    if missing:
        np.trapz = np.trapezoid
    try:
        yield
    finally:
        if missing:
            del np.trapz


def largest(ours: torch.Tensor | np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ours, dtype=np.float64) - theirs))) if len(theirs) else 0.0


def smooth_noise(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(B, size, size) float64 smooth random fields in [0, 1], like upsampled CAMs or densities."""
    coarse = torch.rand(batch, 1, size // 16, size // 16, generator=generator, dtype=torch.float64)
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    fine = fine + 1e-3 * torch.rand(batch, size, size, generator=generator, dtype=torch.float64)
    low = fine.amin(dim=(1, 2), keepdim=True)
    high = fine.amax(dim=(1, 2), keepdim=True)
    return (fine - low) / (high - low)


# ---------------------------------------------------------------------------------------------
# compare section


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


PYSALIENCY_KEYS = {"cc": "CC", "sim": "SIM", "kldiv": "MIT_KLDiv"}  # the suite's metrics pysaliency has


def pysaliency_map_metrics(pysaliency: ModuleType, pred: np.ndarray, target: np.ndarray) -> dict[str, Callable[[int], float]]:
    """pysaliency's CC, SIM and MIT KL of pair i on the min-max scaled maps (as the suite scales them)."""
    scaled = [(ref.minmax(pred[i]), ref.minmax(target[i])) for i in range(pred.shape[0])]
    functions = {key: getattr(pysaliency.metrics, name) for key, name in PYSALIENCY_KEYS.items()}
    return {key: (lambda i, f=f: f(*scaled[i])) for key, f in functions.items()}


def run_compare(kind: str, args: argparse.Namespace, pysaliency: ModuleType | None) -> bool:
    pred, target = make_pairs(kind, args.batch, args.size, args.seed)
    kernel_time, ours = best_time(lambda: compare_maps(pred, target), args.repeats, warm_up=True)
    torch_time, _ = best_time(lambda: compare_maps_torch(pred, target), args.repeats, warm_up=True)
    kernel_rate, torch_rate = args.batch / kernel_time, args.batch / torch_time
    p, t = pred.numpy(), target.numpy()
    reference_rate, theirs = per_image(lambda i: ref.compare_maps(p[i], t[i]), args.batch)
    print(f"\n[compare: {kind}] {args.batch} pairs of {args.size}x{args.size} float64")
    print(f"  compare_maps (numba kernels, CPU):   {kernel_rate:9.1f} pairs/s  {kernel_rate / reference_rate:5.1f}x the reference")
    print(f"  compare_maps_torch (the CUDA path):  {torch_rate:9.1f} pairs/s  {torch_rate / reference_rate:5.1f}x the reference")
    print(f"  reference (NumPy, per image):        {reference_rate:9.1f} pairs/s")
    if pysaliency is None:
        print("  pysaliency: not installed (optional), not compared")
    else:
        functions = pysaliency_map_metrics(pysaliency, p, t)
        with np.errstate(divide="ignore"):  # its MIT KL takes log(0) of all-zero pixels, then masks them
            rate, values = per_image(lambda i: [f(i) for f in functions.values()], args.batch)
        print(f"  pysaliency (CC, SIM, KL only):       {rate:9.1f} pairs/s  (kernels: {kernel_rate / rate:.1f}x, doing more)")
        for column, key in enumerate(functions):
            print(f"    {key:18s} largest |difference| kernels vs pysaliency {largest(ours[key], values[:, column]):.3g}")
    diffs = {key: largest(ours[key], np.array([r[key] for r in theirs])) for key in SUITE_KEYS}
    # flags: the number of pairs that disagree
    diffs |= {key: float(np.sum(ours[key].numpy() != np.array([r[key] for r in theirs]))) for key in FLAG_KEYS}
    print("  largest |difference| kernels vs reference per metric (flags: pairs that disagree):")
    for key, value in diffs.items():
        print(f"    {key:18s} {value:.3g}")
    degenerate = int(ours["target_degenerate"].sum())
    tied = int((ours["iou_exact"] != ours["iou_paper"]).sum())
    print(f"  targets with the tie collapse: {degenerate}; pairs where exact and paper IoU differ: {tied}")
    return all(diffs[key] <= TOLERANCE for key in SUITE_KEYS) and all(diffs[key] == 0 for key in FLAG_KEYS)


# ---------------------------------------------------------------------------------------------
# fixations section


@dataclass(frozen=True)
class FixationData:
    """Seeded inputs of the fixation section, (B, H, W) unless noted."""

    saliency: torch.Tensor  # float64 in [0, 1]
    target: torch.Tensor  # float64 in [0, 1], the "human" map the fixations are drawn from
    fixations: torch.Tensor  # bool
    others: torch.Tensor  # bool, union of OTHER_IMAGES other images' fixations
    baseline: torch.Tensor  # (H, W) float64 centre bias, shared by the batch


def make_fixation_data(batch: int, size: int, seed: int) -> FixationData:
    generator = torch.Generator().manual_seed(seed)
    saliency = smooth_noise(batch, size, generator)
    target = 0.5 * saliency + 0.5 * smooth_noise(batch, size, generator)
    counts = torch.randint(FIXATIONS_PER_IMAGE[0], FIXATIONS_PER_IMAGE[1] + 1, (batch,), generator=generator)
    fixations = torch.zeros(batch, size * size, dtype=torch.bool)
    weights = target.flatten(1) ** 4  # people look where the target is high
    for i in range(batch):
        fixations[i, torch.multinomial(weights[i], int(counts[i]), generator=generator)] = True
    fixations = fixations.view(batch, size, size)
    others = torch.zeros_like(fixations)
    for step in range(1, min(OTHER_IMAGES, batch - 1) + 1):
        others |= fixations.roll(step, dims=0)
    if batch == 1:
        others = fixations.clone()
    grid = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    baseline = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * (size / 4) ** 2))
    return FixationData(saliency, target, fixations, others, baseline)


@njit(parallel=True, fastmath=True, cache=True)
def _row_sums(rows: np.ndarray) -> np.ndarray:
    """Sum of each row of a (B, n) array: one plain read of every value, rows in parallel."""
    sums = np.zeros(rows.shape[0])
    for i in prange(rows.shape[0]):
        row = rows[i]
        total = 0.0
        for j in range(row.size):
            total += row[j]
        sums[i] = total
    return sums


def read_floor(saliency: torch.Tensor, repeats: int) -> float:
    """Maps per second of one plain read of the saliency maps on torch's thread count."""
    rows = saliency.flatten(1).numpy()
    with torch_thread_count():
        seconds, _ = best_time(lambda: _row_sums(rows), repeats, warm_up=True)
    return saliency.shape[0] / seconds


@dataclass(frozen=True)
class FixationMetric:
    """One fixation metric: ours (kernels on CPU), its torch path, the reference and pysaliency's per-image call."""

    name: str
    kernels: Callable[..., torch.Tensor]
    torch_path: Callable[..., torch.Tensor]
    reference: Callable[..., float]
    arguments: Callable[[FixationData], tuple[torch.Tensor, ...]]  # after the saliency map


FIXATION_METRICS = (
    FixationMetric("auc_judd", auc_judd, auc_judd_torch, ref.auc_judd, lambda d: (d.fixations,)),
    FixationMetric("auc_shuffled", auc_shuffled, auc_shuffled_torch, ref.auc_shuffled, lambda d: (d.fixations, d.others)),
    FixationMetric("nss", nss, nss_torch, ref.nss, lambda d: (d.fixations,)),
    FixationMetric("information_gain", information_gain, information_gain_torch, ref.information_gain, lambda d: (d.fixations, d.baseline)),
)


def pysaliency_fixation_metrics(pysaliency: ModuleType, data: FixationData) -> dict[str, Callable[[int], float]]:
    """pysaliency's per-image call for each fixation metric it has, on its native inputs (coordinates
    computed here, outside the timing), with our conventions (ddof 1 for NSS)."""
    maps = data.saliency.numpy()
    fixated, others = data.fixations.numpy(), data.others.numpy()
    coordinates = [np.nonzero(f) for f in fixated]  # (rows y, columns x)
    other_coordinates = [np.nonzero(o) for o in others]
    general_roc = pysaliency.roc.general_roc
    ddof = math.sqrt((maps[0].size - 1) / maps[0].size)  # pysaliency's NSS uses ddof 0

    def judd(i: int) -> float:
        return general_roc(maps[i][fixated[i]], maps[i][~fixated[i]], judd=1)[0]

    def shuffled_from_maps(i: int) -> float:  # given auc_shuffled's input, the two fixation maps
        return general_roc(maps[i][fixated[i]], maps[i][others[i]], judd=0)[0]

    def shuffled_from_coordinates(i: int) -> float:  # given auc_shuffled_at's input
        return general_roc(maps[i][coordinates[i]], maps[i][other_coordinates[i]], judd=0)[0]

    def nss_of(i: int) -> float:
        ys, xs = coordinates[i]
        return float(np.mean(pysaliency.metrics.NSS(maps[i], xs, ys))) * ddof

    return {"auc_judd": judd, "auc_shuffled": shuffled_from_maps, "auc_shuffled_at": shuffled_from_coordinates, "nss": nss_of}


def time_fixation_metric(metric: FixationMetric, data: FixationData, repeats: int) -> dict[str, float | np.ndarray]:
    """Rates and values of the kernels, the torch path and the reference for one metric."""
    batch = data.saliency.shape[0]
    arguments = metric.arguments(data)
    kernel_time, ours = best_time(lambda: metric.kernels(data.saliency, *arguments), max(repeats, MIN_KERNEL_PASSES), warm_up=True)
    torch_time, torch_values = best_time(lambda: metric.torch_path(data.saliency, *arguments), 2, warm_up=False)
    maps = data.saliency.numpy()
    per_map = [a.numpy() for a in arguments]
    reference_rate, expected = per_image(
        lambda i: metric.reference(maps[i], *(a[i] if a.ndim == 3 else a for a in per_map)), batch
    )
    return {
        "kernels": batch / kernel_time,
        "torch": batch / torch_time,
        "reference": reference_rate,
        "ours": ours.numpy(),
        "torch values": torch_values.numpy(),
        "expected": expected,
    }


def run_fixations(args: argparse.Namespace, pysaliency: ModuleType | None) -> bool:
    data = make_fixation_data(args.batch, args.size, args.seed)
    counts = data.fixations.flatten(1).sum(dim=1).double()
    others = data.others.flatten(1).sum(dim=1).double()
    print(
        f"\n[fixations] {args.batch} maps of {args.size}x{args.size} float64, {int(counts.min())}-{int(counts.max())} "
        f"fixated pixels each (mean {counts.mean():.1f}), other_fixations pooled from {OTHER_IMAGES} other images "
        f"(mean {others.mean():.0f} pixels), a shared centre-bias baseline"
    )
    floor = read_floor(data.saliency, max(args.repeats, MIN_KERNEL_PASSES))
    print(f"  read floor (one numba sum of each map, {torch.get_num_threads()} threads): {floor:9.1f} maps/s")
    theirs = pysaliency_fixation_metrics(pysaliency, data) if pysaliency is not None else {}
    header = f"  {'metric':17s} {'kernels':>9s} {'torch':>9s} {'reference':>9s} {'pysaliency':>10s}   (pairs/s)"
    print(header + "   kernels vs: torch, reference, pysaliency; read floor's time")
    agree = True
    rates = {}
    for metric in FIXATION_METRICS:
        timed = time_fixation_metric(metric, data, args.repeats)
        rates[metric.name] = timed["kernels"]
        line = f"  {metric.name:17s} {timed['kernels']:9.1f} {timed['torch']:9.1f} {timed['reference']:9.1f}"
        ratios = f"{timed['kernels'] / timed['torch']:7.1f}x {timed['kernels'] / timed['reference']:7.1f}x"
        differences = (
            f"largest |difference| vs reference {largest(timed['ours'], timed['expected']):.2g}, "
            f"vs torch path {largest(timed['ours'], timed['torch values']):.2g}"
        )
        if metric.name in theirs:
            with numpy_trapz():
                theirs_rate, values = per_image(theirs[metric.name], args.batch)
            line += f" {theirs_rate:10.1f}"
            ratios += f" {timed['kernels'] / theirs_rate:7.1f}x"
            differences += f", vs pysaliency {largest(timed['ours'], values):.2g}"
        else:
            line += f" {'-':>10s}"
            ratios += f" {'-':>8s}"
        if metric.name in ("nss", "information_gain"):
            ratios += f"  {floor / timed['kernels']:5.2f}x the floor"
        print(f"{line}   {ratios}")
        print(f"    {differences}")
        agree &= largest(timed["ours"], timed["expected"]) <= TOLERANCE
    agree &= run_points(data, args, rates, theirs.get("auc_shuffled_at"))
    if pysaliency is None:
        print("  pysaliency: not installed (optional), not compared")
    else:
        print("  pysaliency has no MIT information gain (its information_gain scores probabilistic models), not compared")
        run_suite(data, args, pysaliency)
    return agree


def run_points(data: FixationData, args: argparse.Namespace, rates: dict[str, float], theirs: Callable[[int], float] | None) -> bool:
    """`auc_shuffled_at` given the fixations as coordinates (computed outside the timing), against
    pysaliency's `general_roc` on the values at the same coordinates, both best of POINT_PASSES."""
    points, other_points = data.fixations.nonzero(), data.others.nonzero()
    seconds, values = best_time(lambda: auc_shuffled_at(data.saliency, points, other_points), POINT_PASSES, warm_up=True)
    rate = args.batch / seconds
    versus = ""
    if theirs is not None:
        with numpy_trapz():
            their_seconds, _ = best_time(lambda: [theirs(i) for i in range(args.batch)], POINT_PASSES, warm_up=True)
        versus = f", pysaliency given coordinates {args.batch / their_seconds:.1f} pairs/s: {their_seconds / seconds:.1f}x"
    difference = largest(values, auc_shuffled(data.saliency, data.fixations, data.others).numpy())
    print(
        f"  auc_shuffled_at (coordinates in, only their values read): {rate:.1f} pairs/s{versus}; "
        f"{rate / rates['auc_shuffled']:.1f}x the map kernel, largest |difference| vs it {difference:.2g}"
    )
    return difference <= TOLERANCE


def run_suite(data: FixationData, args: argparse.Namespace, pysaliency: ModuleType) -> None:
    """CC + SIM + KL + NSS + AUC-Judd: ours on the batch against pysaliency one image at a time."""
    s, f = data.saliency, data.fixations

    def ours() -> dict[str, torch.Tensor]:
        return compare_maps(s, data.target) | {"nss": nss(s, f), "auc_judd": auc_judd(s, f)}

    seconds, values = best_time(ours, args.repeats, warm_up=True)
    functions = pysaliency_map_metrics(pysaliency, s.numpy(), data.target.numpy())
    functions |= {key: g for key, g in pysaliency_fixation_metrics(pysaliency, data).items() if key in ("nss", "auc_judd")}
    with numpy_trapz(), np.errstate(divide="ignore"):
        rate, theirs = per_image(lambda i: [g(i) for g in functions.values()], args.batch)
    ours_rate = args.batch / seconds
    print(
        f"  suite CC+SIM+KL+NSS+AUC-Judd: ours {ours_rate:.1f} pairs/s (compare_maps + nss + auc_judd), "
        f"pysaliency {rate:.1f} pairs/s: {ours_rate / rate:.1f}x"
    )
    gaps = ", ".join(f"{key} {largest(values[key], theirs[:, column]):.2g}" for column, key in enumerate(functions))
    print(f"    largest |difference| vs pysaliency: {gaps}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="pairs per batched call")
    parser.add_argument("--size", type=int, default=512, help="map height and width in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed batched runs after the warm-up")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated maps")
    parser.add_argument("--kinds", nargs="+", default=["distinct", "masks"], choices=["distinct", "masks"])
    parser.add_argument("--sections", nargs="+", default=["compare", "fixations"], choices=["compare", "fixations"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the kernels run on torch's count
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.2f}")
    pysaliency = import_pysaliency()
    ok = []
    if "compare" in args.sections:
        ok += [run_compare(kind, args, pysaliency) for kind in args.kinds]
    if "fixations" in args.sections:
        ok.append(run_fixations(args, pysaliency))
    print(f"\nagreement with the reference within {TOLERANCE:g}: {'yes' if all(ok) else 'NO'}")
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
