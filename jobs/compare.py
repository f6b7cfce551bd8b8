"""Stage `compare`: two map artifacts joined by sample key -> per-sample metrics and a summary.

Inputs: `pred` (e.g. a CAM artifact) and `target` (e.g. DeepGaze maps, or ingest's human masks).
Each output sample `<key>` holds `metrics.json`: the status of the pair (`ok`, `missing_target`,
`constant_pred`, `constant_target`) and, when ok, MAE, IoU of the top fraction (paper and exact
modes), CC, KLdiv, SIM and the tie-degeneracy flags. At merge time the stage writes `metrics.csv`
and puts in the manifest's summary, per metric, the mean, std and a bootstrap 95 % interval, plus
the count and keys of every pair missing on either side. No pair is dropped silently.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import typer

from saliencylab.artifacts import Artifact, open_artifact
from saliencylab.config import field
from saliencylab.runner import ErrorPolicy, RunRequest, ShardTask, StageError
from saliencylab.seeding import DEFAULT_SEED, SEED_HELP, derive_seed
from saliencylab.shards import read_shard
from saliencylab.stages import get_stage
from saliencylab.storage import Storage

from jobs.common import Job, Prepared, stage_command

if TYPE_CHECKING:  # torch and the metrics are imported where used, so `compare --help` stays fast
    import torch

MAP_FIELDS = {  # the map each stage writes
    "cam": "cam.npy",
    "deepgaze": "density.npy",
    "ingest": "mask.png",
    "hsi-labels": "saliency.npy",
    "hsi-predict": "saliency.npy",
    "xai": "xai.npy",
}
METRICS = ("mae", "iou_paper", "iou_exact", "cc", "kldiv", "sim")
FLAGS = ("pred_degenerate", "target_degenerate")


@dataclass(frozen=True)
class CompareConfig:
    """Parameters of the compare stage."""

    pred_field: str = field("auto", "Map field of the pred input; auto = by its stage (cam.npy, density.npy, mask.png).")
    target_field: str = field("auto", "Map field of the target input; auto = by its stage.")
    grid: Literal["target", "pred"] = field(
        "target", "Common grid: resize pred to the target's size (MIT benchmark convention) or the reverse; bilinear."
    )
    fraction: float = field(0.1, "Top fraction of pixels for IoU (paper: 0.1, its 'top 90%' threshold).")
    bootstrap: int = field(1000, "Bootstrap resamples for the 95% intervals in the summary.")
    seed: int = field(DEFAULT_SEED, SEED_HELP)


def map_field(artifact: Artifact, configured: str) -> str:
    """The field holding the map in `artifact`: the configured one, or the one its stage writes."""
    if configured != "auto":
        return configured
    if artifact.manifest.stage not in MAP_FIELDS:
        raise StageError(f"{artifact.storage.uri}: no default map field for stage {artifact.manifest.stage!r}; set it")
    return MAP_FIELDS[artifact.manifest.stage]


def as_map(sample: dict[str, Any], field_name: str) -> torch.Tensor:
    """The map in `sample[field_name]` as a float64 (H, W) tensor; uint8 images are scaled to [0, 1].

    Raises ValueError naming the sample key and field when the field is missing, not 2-D, or holds
    NaN or inf (a map that no metric can score).
    """
    key = sample["__key__"]
    if field_name not in sample:
        raise ValueError(f"sample {key!r} has no field {field_name!r}; it has {sorted(f for f in sample if f != '__key__')}")
    array = np.asarray(sample[field_name])
    if array.ndim != 2:
        raise ValueError(f"sample {key!r} field {field_name!r} has shape {array.shape}, expected (H, W)")
    if array.dtype.kind not in "biuf":  # bool, integer or float
        raise ValueError(f"sample {key!r} field {field_name!r} has dtype {array.dtype}, expected real numbers")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"sample {key!r} field {field_name!r} has {bad} NaN or inf value(s) of {array.size}")
    import torch

    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return torch.from_numpy(array.astype(np.float64) / scale)


def _pair_results(pairs: list[tuple[str, torch.Tensor, torch.Tensor]], config: CompareConfig) -> dict[str, dict]:
    """Metrics of same-size map pairs, batched per grid size."""
    import torch

    from saliencylab.metrics import compare_maps

    results: dict[str, dict] = {}
    by_size: dict[tuple[int, int], list] = {}
    for key, pred, target in pairs:
        by_size.setdefault(tuple(target.shape), []).append((key, pred, target))
    for group in by_size.values():
        keys = [k for k, _, _ in group]
        pred, target = torch.stack([p for _, p, _ in group]), torch.stack([t for _, _, t in group])
        values = compare_maps(pred, target, fraction=config.fraction)
        for i, key in enumerate(keys):
            if bool(values["pred_constant"][i]) or bool(values["target_constant"][i]):
                status = "constant_pred" if bool(values["pred_constant"][i]) else "constant_target"
                results[key] = {"status": status}
                continue
            results[key] = {"status": "ok"} | {m: float(values[m][i]) for m in METRICS} | {f: bool(values[f][i]) for f in FLAGS}
    return results


def prepare(inputs: dict[str, str], config: CompareConfig) -> Prepared:
    from saliencylab.metrics import resize_to

    pred, target = open_artifact(inputs["pred"]), open_artifact(inputs["target"])
    pred_field, target_field = map_field(pred, config.pred_field), map_field(target, config.target_field)
    target_shards = target.key_index()

    def process(task: ShardTask, policy: ErrorPolicy) -> list[dict]:
        (shard,) = task.items
        pred_samples = list(pred.samples(shard))
        targets = target.lookup([s["__key__"] for s in pred_samples])
        pairs, statuses = [], {}
        for sample in pred_samples:
            key = sample["__key__"]
            if key not in targets or target_field not in targets[key]:
                statuses[key] = {"status": "missing_target"}
                continue
            with policy.guard(key, f"{pred.storage.uri}/{shard}"):
                p = as_map(sample, pred_field)
                with policy.guard(key, f"{target.storage.uri}/{target_shards[key]}"):
                    t = as_map(targets[key], target_field)
                    if config.grid == "target":
                        p = resize_to(p[None], tuple(t.shape))[0]
                    else:
                        t = resize_to(t[None], tuple(p.shape))[0]
                    pairs.append((key, p, t))
        statuses.update(_pair_results(pairs, config))
        return [{"__key__": k, "metrics.json": statuses[k]} for k in sorted(statuses)]

    tasks = pred.shard_tasks()
    warnings = tuple(sorted(set(pred.manifest.warnings) | set(target.manifest.warnings)))
    return Prepared({"pred": pred.input_spec, "target": target.input_spec}, tasks, process, warnings)


def finalize(out: Storage, request: RunRequest, records: tuple) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Aggregate the per-sample metrics: metrics.csv, and means with bootstrap CIs for the manifest."""
    from saliencylab.metrics import bootstrap_ci

    config = CompareConfig(**request.params)
    rows = []
    for record in records:  # our own shards: the manifest does not exist yet
        rows.extend({"key": s["__key__"], **s["metrics.json"]} for s in read_shard(out.read_bytes(record.name), record.name))
    target_keys = set(open_artifact(request.inputs["target"]["uri"]).key_index())
    pred_keys = {r["key"] for r in rows}
    ok = [r for r in rows if r["status"] == "ok"]
    summary: dict[str, Any] = {
        "pairs": len(ok),
        "status_counts": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
        "missing_target": sorted(r["key"] for r in rows if r["status"] == "missing_target"),
        "missing_pred": sorted(target_keys - pred_keys),
        "degenerate": {f: sum(r[f] for r in ok) for f in FLAGS},
        "metrics": {},
    }
    if ok:
        for metric in METRICS:
            values = np.array([r[metric] for r in ok], dtype=np.float64)
            summary["metrics"][metric] = asdict(bootstrap_ci(values, n_resamples=config.bootstrap, seed=derive_seed(config.seed, "bootstrap", metric)))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["key", "status", *METRICS, *FLAGS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return summary, {"metrics.csv": buffer.getvalue().encode()}


JOB = Job(spec=get_stage("compare"), version="2", config_cls=CompareConfig, prepare=prepare, finalize=finalize)
command = stage_command(JOB)

if __name__ == "__main__":
    typer.run(command)
