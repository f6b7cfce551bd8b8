"""DeepGaze IIE throughput, peak memory and where the time goes, with random weights.

Run: .venv/bin/python -m bench.bench_deepgaze [--device cpu|cuda] [--size 512] [--batches 1 4]

For each batch size: images per second at size×size (median of the timed runs after one warm-up,
`model(images, centerbias)` under `torch.inference_mode`) and peak memory (process RSS high-water
mark on CPU, `torch.cuda.max_memory_allocated` on GPU). Then a breakdown from one staged forward
that calls the model's own steps one by one (checked against `model(...)`): input checks, each
backbone (with its ½ downsampling and feature resizing), the 120 readout heads, the 120
finalisers, and the mixing of heads and members with the final upsampling.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from saliencylab.deepgaze import build_deepgaze_iie, uniform_centerbias
from saliencylab.deepgaze.backbones import BACKBONES
from saliencylab.deepgaze.finalizer import finalize_heads, upsample_to
from saliencylab.deepgaze.heads import fixation_selection_heads, saliency_heads
from saliencylab.deepgaze.inputs import check_centerbias, check_images


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def staged_forward(model, images, centerbias, clock):
    """`model(images, centerbias)`, step by step, each step timed under `clock(name)`."""
    with clock("input checks"):
        check_images(images)
        check_centerbias(centerbias, images)
    members = []
    for spec, member in zip(BACKBONES, model.models):
        with clock(f"backbone {spec.name}"):
            features = member.readout_features(images)
        with clock("readout heads (120)"):
            saliency = saliency_heads(features, member.saliency_networks)
            readouts = fixation_selection_heads(saliency, member.fixation_selection_networks)
        with clock("finalisers (120)"):
            heads = finalize_heads(readouts, centerbias, member.finalizers)
        with clock("mixing + upsampling"):
            members.append(torch.logsumexp(heads - math.log(heads.shape[1]), dim=1, keepdim=True))
    with clock("mixing + upsampling"):
        members = torch.cat(members, dim=1)
        mixed = torch.logsumexp(members - math.log(members.shape[1]), dim=1, keepdim=True)
        return upsample_to(mixed, images.shape[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per batch size, after one warm-up")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    start = time.perf_counter()
    model = build_deepgaze_iie(seed=0).to(device)
    build_s = time.perf_counter() - start
    print(f"device {device} | torch {torch.__version__} | CPU threads {torch.get_num_threads()}")
    print(f"build (random init, no download): {build_s:.1f} s; peak memory after build {peak_memory_mib(device):.0f} MiB")

    print(f"\n{args.size}x{args.size}, median of {args.runs} timed runs after 1 warm-up:")
    print(f"{'batch':>5} {'s/batch':>8} {'img/s':>7} {'peak MiB':>9}")
    inputs = {}
    for batch in args.batches:
        images = torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(batch)) * 255
        bias = uniform_centerbias((args.size, args.size)).expand(batch, -1, -1)
        images, bias = images.to(device), bias.to(device)
        inputs[batch] = images, bias
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        with torch.inference_mode():
            for run in range(args.runs + 1):
                sync()
                t0 = time.perf_counter()
                model(images, bias)
                sync()
                if run:  # run 0 is the warm-up
                    times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        print(f"{batch:>5} {median:>8.2f} {batch / median:>7.2f} {peak_memory_mib(device):>9.0f}")

    for batch, (images, bias) in inputs.items():
        totals: dict[str, float] = defaultdict(float)

        @contextmanager
        def clock(name):
            sync()
            t0 = time.perf_counter()
            yield
            sync()
            totals[name] += time.perf_counter() - t0

        with torch.inference_mode():
            staged = staged_forward(model, images, bias, clock)
            reference = model(images, bias)
        drift = float((staged - reference).abs().max())
        total = sum(totals.values())
        print(f"\nbreakdown, batch {batch} (one staged forward, {total:.2f} s; max |staged - model| = {drift:.1e}):")
        for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
            print(f"  {name:<30} {seconds:>7.3f} s {100 * seconds / total:>5.1f} %")


if __name__ == "__main__":
    main()
