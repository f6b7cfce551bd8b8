"""Per-image cost of each step of the empirical study, run through the local runner on the demo photographs.

Run: .venv/bin/python -m bench.bench_study [--images 6] [--shard-size 2] [--detectors faster_rcnn,ssd300]
     [--device auto|cpu|cuda] [--size 512] [--threads N] [--estimate-for 898] [--workdir DIR] [--markdown]

What runs: `saliencylab.pipeline.study_steps` (preset `corrected`: ingest, deepgaze, one cam and
two compare steps per detector, report) through `jobs.local.run_steps`, the code path of
`saliencylab study`, with random weights (their cost equals trained weights'), the stages'
default batch sizes, real shards and manifests in a temporary folder. The images are the demo
photographs that have an attention mask (`saliencylab.demo`; the study's `split=masked`),
copied under new ids when `--images` asks for more, squashed to `--size` (the study's 512).

How a step's wall time is split: the runner hands each step a progress reporter that notes when
the step starts, when its shard loop starts (after `prepare`: inputs opened, model built) and
when each shard has been written. `s/image` is the fastest shard's time per image (a shared
machine's load only ever adds time, as the other benches take their fastest round). `fixed` is
what a run pays once: prepare, the first shard's time beyond that rate (warm-up: first forward
pass, allocator, first-use imports), then merge, the stage's summary and the manifest. `lost` is
the rest of the wall time, what the shards spent above the fastest rate (other load; about 0 on
an idle machine): wall = fixed + images × s/image + lost. A run of M images then costs about
Σ fixed + M × Σ s/image (printed for `--estimate-for`). With a single shard its time counts as
per-image, warm-up included (an overestimate); `report` has no shard loop, all of its time is
fixed. `--shard-size` is smaller than the study's 64 so that a few images make several shards;
batches never span a shard, so cam's (8) and deepgaze's (4) batches are at most this size here
(on CPU, where cam runs one image per forward pass, that barely changes the per-image cost).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from saliencylab.cam.names import DETECTOR_NAMES
from saliencylab.datasets.masks import MASK_DIR
from saliencylab.demo import write_demo_dataset
from saliencylab.devices import pick_device
from saliencylab.pipeline import Step, study_steps
from saliencylab.progress import Progress

from jobs.local import run_steps


class StepClock(Progress):
    """A silent progress reporter that notes when its step starts, its shard loop starts and each shard ends."""

    def __init__(self, step: Step):
        super().__init__(step.stage, (), stream=io.StringIO(), interactive=False)
        self.step = step
        self.started = time.perf_counter()
        self.loop_started: float | None = None
        self.shard_ends: list[tuple[float, int]] = []  # (time, samples written) per shard, in order

    def skip(self, shards) -> None:  # the runner calls it once, right before the shard loop
        self.loop_started = time.perf_counter()
        super().skip(shards)

    def shard_done(self, shard: str, samples: int, **fields: Any) -> None:
        self.shard_ends.append((time.perf_counter(), samples))
        super().shard_done(shard, samples, **fields)


@dataclass(frozen=True)
class Cost:
    """A step's (or a group's) wall time in seconds: wall = fixed + images × per_image + lost."""

    wall: float
    fixed: float
    per_image: float | None  # None: no shard loop (report)
    images: int

    @property
    def lost(self) -> float:
        return self.wall - self.fixed - self.images * (self.per_image or 0.0)


def step_cost(start: float, loop_start: float | None, shard_ends: list[tuple[float, int]], end: float) -> Cost:
    """Split a step's wall time `end - start` by its shard marks (see the module docstring).

    Args:
        start, end: when the step started and ended.
        loop_start: when its shard loop started (None: it had none).
        shard_ends: (time, samples written) of each shard, in order.
    """
    wall = end - start
    images = sum(n for _, n in shard_ends)
    if loop_start is None or images == 0:
        return Cost(wall, wall, None, images)
    marks = [loop_start] + [t for t, _ in shard_ends]
    durations = [(b - a, n) for a, b, (_, n) in zip(marks, marks[1:], shard_ends)]
    per_image = min(seconds / n for seconds, n in durations if n)
    first_seconds, first_images = durations[0]
    warm_up = first_seconds - first_images * per_image
    return Cost(wall, (loop_start - start) + warm_up + (end - marks[-1]), per_image, images)


def add_costs(costs: list[Cost]) -> Cost:
    """Several steps' costs together (e.g. the 14 compare steps): sums; images of the largest step."""
    loops = [c.per_image for c in costs if c.per_image is not None]
    return Cost(sum(c.wall for c in costs), sum(c.fixed for c in costs), sum(loops) if loops else None, max(c.images for c in costs))


def write_images(root: Path, count: int) -> tuple[Path, Path]:
    """The demo VOC and mask folders under `root`, with masked photographs copied to new ids until `count` have masks.

    Copies are named `demo_copy_<n>` (they sort after the originals, so `ingest.limit=count` keeps
    the originals first) and get the original's JPEG, annotation and masks, byte for byte.
    """
    voc, masks = write_demo_dataset(root)
    masked = sorted({p.stem for p in (masks / MASK_DIR).glob("*/*.jpg")})
    for n in range(count - len(masked)):
        original, copy = masked[n % len(masked)], f"demo_copy_{n + 1:06d}"
        shutil.copyfile(voc / "JPEGImages" / f"{original}.jpg", voc / "JPEGImages" / f"{copy}.jpg")
        shutil.copyfile(voc / "Annotations" / f"{original}.xml", voc / "Annotations" / f"{copy}.xml")
        for mask in (masks / MASK_DIR).glob(f"*/{original}.jpg"):
            shutil.copyfile(mask, mask.with_name(f"{copy}.jpg"))
    return voc, masks


def run_study(workdir: Path, detectors: tuple[str, ...], args: argparse.Namespace) -> dict[str, Cost]:
    """Run the study on `args.images` images under `workdir`; each step's cost by step name, in run order."""
    voc, masks = write_images(workdir / "data", args.images)
    overrides = {
        "ingest": {"size": args.size, "shard_size": args.shard_size, "split": "masked", "limit": args.images},
        "cam": {"device": args.device},
        "deepgaze": {"device": args.device},
    }
    steps = study_steps(detectors, "corrected", overrides)
    root = str((workdir / "run").resolve())
    clocks: list[StepClock] = []

    def clock(step: Step) -> StepClock:
        clocks.append(StepClock(step))
        return clocks[-1]

    run_steps(steps, root, {"images": str(voc), "masks": str(masks), "run": root}, progress=clock)
    ends = [c.started for c in clocks[1:]] + [time.perf_counter()]  # a step ends where the next starts
    return {c.step.name: step_cost(c.started, c.loop_started, c.shard_ends, end) for c, end in zip(clocks, ends)}


def grouped(costs: dict[str, Cost], detectors: tuple[str, ...]) -> list[tuple[str, Cost]]:
    """Table rows: ingest, deepgaze, cam per detector, all cams, all compares, report."""
    compares = [c for name, c in costs.items() if name.startswith("compare/")]
    return [
        ("ingest", costs["ingest"]),
        ("deepgaze", costs["deepgaze"]),
        *((f"cam: {d}", costs[f"cam/{d}"]) for d in detectors),
        (f"cam: all {len(detectors)} together", add_costs([costs[f"cam/{d}"] for d in detectors])),
        (f"compare ({len(compares)} comparisons)", add_costs(compares)),
        ("report", costs["report"]),
    ]


def machine_line(device: torch.device) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.machine())
    gpu = f" | GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _row(name: str, cost: Cost, total_per_image: float) -> str:
    if cost.per_image is None:
        per_image = rate = share = "-"
    else:
        per_image, share = f"{cost.per_image:.3f}", f"{100 * cost.per_image / total_per_image:.0f} %"
        rate = f"{1 / cost.per_image:.2f}" if cost.per_image > 0 else "-"
    return f"{name:<32} {cost.wall:>8.1f} {cost.fixed:>8.1f} {per_image:>8} {rate:>9} {share:>6} {cost.lost:>7.1f}"


def print_table(rows: list[tuple[str, Cost]], total: Cost, estimate_for: int) -> None:
    """The cost table (share: of the summed s/image) and the estimate for `estimate_for` images."""
    print(f"{'step':<32} {'wall s':>8} {'fixed s':>8} {'s/image':>8} {'images/s':>9} {'share':>6} {'lost s':>7}")
    for name, cost in rows:
        print(_row(("  " if name.startswith("cam: all") else "") + name, cost, total.per_image))
    print(_row("all steps", total, total.per_image))
    print(f"\n{estimate_line(total, estimate_for)} on this machine at this load")


def markdown_table(rows: list[tuple[str, Cost]], detectors: tuple[str, ...], total: Cost, estimate_for: int) -> str:
    """The README's run-time table ("How long the full study takes") from the rows of `grouped`."""
    by_name = dict(rows)
    cams = [by_name[f"cam: {d}"] for d in detectors]
    together = by_name[f"cam: all {len(detectors)} together"]
    (compare_name, compare), (_, report) = rows[-2:]
    lines = [
        "| step | seconds per image | fixed seconds per step |",
        "|---|---|---|",
        *(f"| {name} | {by_name[name].per_image:.2f} | {by_name[name].fixed:.1f} |" for name in ("ingest", "deepgaze")),
        f"| cam: {', '.join(detectors)} | {', '.join(f'{c.per_image:.2f}' for c in cams)} ({together.per_image:.2f} together) "
        f"| {', '.join(f'{c.fixed:.1f}' for c in cams)} ({together.fixed:.0f} together) |",
        f"| {compare_name} | {compare.per_image:.2f} together | {compare.fixed:.1f} together |",
        f"| report | - | {report.fixed:.1f} |",
        f"| **all steps** | **{total.per_image:.2f}** | **{total.fixed:.0f}** |",
    ]
    return "\n".join(lines) + "\n\n" + estimate_line(total, estimate_for)


def estimate_line(total: Cost, count: int) -> str:
    """Σ fixed + count × Σ s/image, in seconds and hours."""
    seconds = total.fixed + count * total.per_image
    return f"{count} images: about {total.fixed:.0f} s + {count} × {total.per_image:.2f} s = {seconds:.0f} s ({seconds / 3600:.1f} h)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="images through the study (the 4 masked demo photographs, then copies)")
    parser.add_argument("--shard-size", type=int, default=2, help="ingest.shard_size (the study: 64); several shards give a per-image rate without warm-up")
    parser.add_argument("--detectors", default=",".join(DETECTOR_NAMES), help="comma-separated; default all seven")
    parser.add_argument("--device", default="auto", help="cam and deepgaze device: auto (cuda if available), cpu, cuda, cuda:1")
    parser.add_argument("--size", type=int, default=512, help="ingest.size: images squashed to size×size (the study: 512)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--estimate-for", type=int, default=898, help="image count of the printed estimate (the paper's masked set: 898)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data and run here (default: a temporary folder, removed)")
    parser.add_argument("--markdown", action="store_true", help="also print the README's run-time table for this run")
    args = parser.parse_args()
    detectors = tuple(d.strip() for d in args.detectors.split(",") if d.strip())
    unknown = sorted(set(detectors) - set(DETECTOR_NAMES))
    if unknown or not detectors or args.images < 1 or args.shard_size < 1:
        parser.error(f"need --images >= 1, --shard-size >= 1 and --detectors from {', '.join(DETECTOR_NAMES)} (unknown: {unknown})")
    if args.workdir and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty: a finished step found there would be reused, not timed")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    load_before = os.getloadavg()
    started = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="bench-study-") as temporary:
        workdir = args.workdir or Path(temporary)
        costs = run_study(workdir, detectors, args)
    load_after = os.getloadavg()

    rows = grouped(costs, detectors)
    total = add_costs(list(costs.values()))
    shards = -(-args.images // args.shard_size)
    print(f"\n{started:%Y-%m-%d %H:%M} UTC | {machine_line(device)} | torch {torch.__version__}, {torch.get_num_threads()} threads | "
          f"device {device} | load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (1 min)")  # fmt: skip
    print(f"empirical study (corrected), {args.images} images {args.size}×{args.size} in {shards} shards of {args.shard_size}, "
          f"{len(detectors)} detectors, random weights; s/image: the fastest shard (module docstring)\n")  # fmt: skip
    print_table(rows, total, args.estimate_for)
    if args.markdown:
        print("\n" + markdown_table(rows, detectors, total, args.estimate_for))


if __name__ == "__main__":
    main()
