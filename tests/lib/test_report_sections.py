"""The report's sections on one hand-made run: the four studies' artifacts, scored by the real `compare` and rendered by `report`.

Map and training-set artifacts are written through saliencylab.runner with small generated samples
(their fields as the real stages write them); every compare and the report run through the CLI.
The run mixes an empirical-study CAM, four fine-tuned models (one per training set), three XAI
methods and an HSI prediction, so discovery must tell them apart by lineage, not by folder name.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.report.run import discover
from saliencylab.report.xai import rank_stability, ranks
from saliencylab.runner import RunRequest, ShardTask, run_stage
from saliencylab.storage import LocalStorage

from jobs.cli import app

runner = CliRunner()
KEYS = [f"im{i:02d}" for i in range(8)]
SIZE = 32
VARIANTS = {"baseline": "ingest-train", "erase": "erase", "inpaint": "inpaint", "augment": "augment"}  # row -> training set step


def _write(root, path, stage, samples, inputs=None, params=None, summary=None, files=None, warnings=()):
    """A finished artifact of `stage` at root/path holding `samples`, via the run contract."""
    spec = {name: (a.input_spec if hasattr(a, "input_spec") else a) for name, a in (inputs or {}).items()}
    request = RunRequest(stage, "1", params or {}, spec, (ShardTask(0, "shard-000000.tar", ()),), tuple(warnings))
    run_stage(LocalStorage(root / path), request, lambda task, policy: samples, finalize=lambda out, req, rec: (summary or {}, files or {}))
    return open_artifact(str(root / path))


def _maps(rng, field, shift=0.0):
    return [{"__key__": k, field: (rng.random((SIZE, SIZE)) + shift).astype(np.float32)} for k in KEYS]


def _compare(root, path, pred, target, *extra):
    result = runner.invoke(app, ["compare", "--input", f"pred={root / pred}", "--input", f"target={root / target}",
                                 "--output", str(root / path), "--set", "bootstrap=50", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output


def _training_set(rng, changed=False, erase=False):
    samples = []
    for i, key in enumerate(KEYS):
        sample = {"__key__": key, "image.png": rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8),
                  "meta.json": {"boxes": [[2.0, 3.0, 20.0, 25.0]], "labels": ["dog"], "difficult": [False], "changed": changed and i % 2 == 0}}  # fmt: skip
        if erase:
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[5:12, 5:12] = 255 if sample["meta.json"]["changed"] else 0
            sample["erase_mask.png"] = mask
        samples.append(sample)
    return samples


def _evaluated(hits: int):
    """Evaluate samples: one dog per image, found exactly on the first `hits` images, a false alarm elsewhere."""
    truth = {"boxes": [[2.0, 3.0, 20.0, 25.0]], "labels": ["dog"], "difficult": [False]}
    samples = []
    for i, key in enumerate(KEYS):
        box = truth["boxes"][0] if i < hits else [25.0, 25.0, 31.0, 31.0]
        samples.append({"__key__": key, "truth.json": truth, "detections.json": {"boxes": [box], "scores": [0.9 - i / 100], "labels": ["dog"]}})
    return samples


def build_run(root, masks_input: bool, random_weights: bool):
    """The whole tree of one run; returns its root."""
    rng = np.random.default_rng(0)
    weights = "random" if random_weights else "/weights/model.pth"
    masks_spec = {"masks": {"uri": "/data/masks", "digest": "listing:0"}} if masks_input else {}
    ingest_samples = [{"__key__": k, "image.png": rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8),
                       "mask.png": rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8), "meta.json": {"id": k}} for k in KEYS]  # fmt: skip
    ingest = _write(root, "ingest", "ingest", ingest_samples, {"images": {"uri": "/data/voc", "digest": "listing:1"}, **masks_spec},
                    {"format": "voc", "split": "masked", "size": SIZE, "resize": "squash", "limit": 0})  # fmt: skip
    train = _write(root, "ingest-train", "ingest", _training_set(rng), {"images": {"uri": "/data/voc", "digest": "listing:1"}},
                   {"format": "voc", "split": "unmasked", "resize": "none", "limit": 0})  # fmt: skip
    _write(root, "deepgaze", "deepgaze", _maps(rng, "density.npy"), {"images": ingest}, {"weights": weights})
    erase = _write(root, "erase", "erase", _training_set(rng, changed=True, erase=True), {"images": train})
    _write(root, "inpaint", "inpaint", _training_set(rng, changed=True, erase=True), {"images": erase})
    augment = _training_set(rng)
    for s in augment:
        s["meta.json"]["augment"] = {"sub_policy": 3}
    _write(root, "augment", "augment", augment, {"images": train})
    _write(root, "cam/faster_rcnn", "cam", _maps(rng, "cam.npy"), {"images": ingest}, {"detector": "faster_rcnn", "weights": weights})
    for k in ("deepgaze", "human"):
        _compare(root, f"compare/faster_rcnn-{k}", "cam/faster_rcnn", "deepgaze" if k == "deepgaze" else "ingest")
    for v, (variant, source) in enumerate(VARIANTS.items()):
        curves = "epoch,iteration,global_step,loss\n" + "".join(f"1,{i},{i},{2.0 - i / 10 - v / 20}\n" for i in range(1, 6))
        tune = _write(root, f"finetune/{variant}", "finetune", [], {"train": open_artifact(str(root / source))}, {"weights": weights},
                      {"epochs": [], "curves": {"iterations": "curves.csv"}}, {"curves.csv": curves.encode()})  # fmt: skip
        metrics = {"images": len(KEYS), "map": {"coco_ap50": 0.5 + v / 100, "voc07": 0.4, "voc2010": 0.45},
                   "per_class": {"coco_ap50": {"dog": 0.5 + v / 100, "cat": None}}}  # fmt: skip
        _write(root, f"evaluate/{variant}", "evaluate", _evaluated(hits=4 + v), {"model": tune, "images": ingest}, {"weights": weights}, metrics)
        # the pipeline's way (a model input) for three, the weights option for one: both are lineage
        cam_inputs, cam_weights = ({"images": ingest}, f"finetune:{tune.storage.uri}") if variant == "augment" else ({"images": ingest, "model": tune}, "random")
        _write(root, f"cam/{variant}", "cam", _maps(rng, "cam.npy"), cam_inputs, {"detector": "faster_rcnn", "weights": cam_weights})
        _compare(root, f"compare/{variant}-deepgaze", f"cam/{variant}", "deepgaze")
        _compare(root, f"compare/{variant}-human", f"cam/{variant}", "ingest")
    hsi = _write(root, "hsi-predict", "hsi-predict", _maps(rng, "saliency.npy"), {"images": ingest},
                 {"weights": weights, "features": ["u4", "u5", "z", "a"]})  # fmt: skip
    _compare(root, "compare/hsi-human", "hsi-predict", "ingest")
    folds = _write(root, "hsi-train/folds", "hsi-train", [], {"train": ingest}, {"mode": "finetune", "folds": 2})
    for k in range(2):
        _write(root, f"hsi-predict/fold-{k}", "hsi-predict", _maps(rng, "saliency.npy"), {"images": ingest},
               {"weights": f"hsi-train:{folds.storage.uri}#fold-{k}", "features": ["u4", "u5", "z"]})  # fmt: skip
        _compare(root, f"compare/hsi-fold-{k}-human", f"hsi-predict/fold-{k}", "ingest")
    for method in ("rise", "gradcam", "gbp"):
        _write(root, f"xai/{method}", "xai", _maps(rng, "xai.npy"), {"images": ingest}, {"method": method, "weights": weights})
        _compare(root, f"compare/xai-{method}", f"xai/{method}", "hsi-predict")
    return hsi


class _Page(HTMLParser):
    """Tables (caption before each), cells, images and paragraphs of a report page."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.texts, self._cell, self._stack = [], [], [], None, []

    def handle_starttag(self, tag, attrs):
        self._stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = [dict(attrs).get("class", ""), ""]
            self.tables[-1][-1].append(self._cell)
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if self._stack:
            self._stack.pop()
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        self.texts.append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    build_run(root, masks_input=True, random_weights=False)
    return root


def _report(root, out, *extra):
    result = runner.invoke(app, ["report", "--input", f"run={root}", "--output", str(out), "--set", "bootstrap=200", "--set", "map_bootstrap=50", *extra])
    assert result.exit_code == 0, result.output
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_discovery_tells_the_four_fine_tuned_models_apart_by_lineage(run):
    from saliencylab.report.augmentation import variants
    from saliencylab.report.empirical import detector_compares

    contents = discover(LocalStorage(run))
    found = variants(contents)
    assert list(found) == ["baseline", "erase", "inpaint", "augment"]
    for variant, entry in found.items():
        assert entry["evaluate"].path == f"evaluate/{variant}"
        assert entry["deepgaze"].path == f"compare/{variant}-deepgaze" and entry["human"].path == f"compare/{variant}-human"
    assert list(detector_compares(contents)) == ["faster_rcnn"]  # the fine-tuned cams are not the empirical study's
    assert detector_compares(contents)["faster_rcnn"]["cam"].path == "cam/faster_rcnn"


def test_report_sections_tables_and_figures(run, tmp_path):
    markdown, page = _report(run, tmp_path / "report")
    parsed = _Page()
    parsed.feed(page)
    for heading in ("Detectors vs DeepGaze", "Augmentation study", "HSI: predicted", "Explanation methods vs HSI"):
        assert heading in markdown and heading in page
    assert "vs human attention" in page  # real (not synthetic) masks were compared
    # Table 1 and 2: rows in study order, mAP and its difference to the baseline, n, published values (VOC masked recorded)
    table1 = next(t for t in parsed.tables if t[0][0][1] == "training set" and "paper mAP" in [c[1] for c in t[0]])
    header = [c[1] for c in table1[0]]
    assert [r[0][1] for r in table1[1:]] == ["baseline", "erase", "inpaint", "augment"]
    assert [r[header.index("Δ mAP")][1] for r in table1[1:]] == ["0.000", "0.010", "0.020", "0.030"]
    assert [r[header.index("n")][1] for r in table1[1:]] == ["8"] * 4
    assert [r[header.index("paper mAP")][1] for r in table1[1:]] == ["0.7870", "0.7540", "0.7630", "0.7810"]
    assert all(re.fullmatch(r"0\.5\d0 \[\d\.\d{3}, \d\.\d{3}\]", r[header.index("mAP@0.5")][1]) for r in table1[1:])
    assert "0.1560" in page and "0.2657" in page  # erase's published MAE (Table 1), IoU (Table 2)
    # XAI: ranks follow the shifted maps; published MAE hidden without a declared dataset, with the reason
    xai = next(t for t in parsed.tables if t[0][0][1] == "method")
    rows = {r[0][1]: [c[1] for c in r] for r in xai[1:]}
    header = [c[1] for c in xai[0]]
    assert set(rows) == {"rise", "gradcam", "gbp"} and "paper MAE" not in header
    assert float(rows["rise"][header.index("rank stability")]) >= 0.0
    assert "Published values are hidden: they were measured on imagenet-val" in markdown
    # every table has n, every caption of the markdown is in the HTML, stars match
    for table in parsed.tables[1:]:  # after the weights table
        assert any(c[1] == "n" or c[1].startswith("n ") for c in table[0]), table[0]
    captions = re.findall(r"^((?:Table \d|Mean|Each HSI|Detection accuracy|Per-class).*)$", markdown, re.MULTILINE)
    assert len(captions) >= 6
    for caption in captions:
        assert caption.replace("&", "&amp;").replace("'", "&#x27;") in page
    assert markdown.count("★") == page.count("★") > 0
    assert "caution: fewer than 30 pairs" in markdown.lower() and "caution: fewer than 30 pairs" in page.lower()
    assert "The dashed line marks IoU 0.1" in page
    names = {i["id"] for i in parsed.images}
    assert {"training_curves.png", "training_examples.png", "overlays_faster_rcnn.png", "iou_hist_faster_rcnn.png"} <= names
    assert any(n.startswith("hsi_overlays_") for n in names)
    # HSI: per-fold rows name their training, and the folds are summarised
    hsi = next(t for t in parsed.tables if t[0][0][1] == "prediction")
    training = {r[0][1]: r[2][1] for r in hsi[1:]}
    assert training["hsi-predict/fold-1"] == "fine-tuned fold-1, CLIP init, fresh decoder"
    assert training["hsi-predict"] == "given weights file"
    folds = next(t for t in parsed.tables if t[0][0][1] == "hsi-train run")
    fold_means = [open_artifact(str(run / f"compare/hsi-fold-{k}-human")).manifest.summary["metrics"]["mae"]["mean"] for k in range(2)]
    assert abs(float(folds[1][3][1].split()[0]) - sum(fold_means) / 2) < 1e-4  # 8 + 8 pairs pooled: the mean of the fold means
    assert [c[1] for c in folds[1]][:3] == ["hsi-train/folds", "2", "16"] and re.fullmatch(r"\d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]", folds[1][3][1])
    for name in names:
        assert (tmp_path / "report" / "figures" / name).read_bytes()[:4] == b"\x89PNG" and f"figures/{name}" in markdown


def test_declared_dataset_shows_the_published_table_4(run, tmp_path):
    markdown, page = _report(run, tmp_path / "report", "--set", "dataset=imagenet-val")
    assert "paper MAE" in page and "0.44" in page and "0.89" in page
    assert "measured on voc2012-masked" in markdown  # the VOC tables are now hidden: the declared dataset is not VOC


def test_random_weights_and_synthetic_masks_report_honestly(tmp_path):
    root = tmp_path / "run"
    build_run(root, masks_input=False, random_weights=True)  # masks without a masks input: not the paper's dataset
    markdown, page = _report(root, tmp_path / "report")
    assert 'class="best"' not in page and "★" not in page and "★" not in markdown
    assert "No best values are marked: these weights are random" in page
    assert "paper MAE" not in page and "0.1700" not in page and "0.7870" not in page
    assert "Published values are hidden: they were measured on voc2012-masked" in page
    assert "vs human attention" not in page.split("</h1>")[0]


def test_discovery_survives_a_moved_run(run, tmp_path):
    import shutil

    from saliencylab.report.augmentation import variants

    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    found = variants(discover(LocalStorage(moved)))  # digests link inputs; the fine-tune URI links by its step path
    assert all(entry["finetune"].artifact.storage.uri.startswith(str(moved)) for entry in found.values())
    assert {v: e["deepgaze"].path for v, e in found.items()} == {v: f"compare/{v}-deepgaze" for v in VARIANTS}


def test_a_run_without_results_is_refused(tmp_path):
    _write(tmp_path / "run", "ingest", "ingest", [], {"images": {"uri": "/data", "digest": "listing:2"}}, {"format": "folder"})
    result = runner.invoke(app, ["report", "--input", f"run={tmp_path / 'run'}", "--output", str(tmp_path / "report")])
    assert result.exit_code != 0 and "holds no compare or finetune artifact" in result.output
    assert not (tmp_path / "report" / "_manifest.json").exists()


def test_map_interval_resamples_images(tmp_path):
    from saliencylab.report.detection import map_interval
    from saliencylab.report.run import Node

    perfect = Node("evaluate/p", _write(tmp_path, "p", "evaluate", _evaluated(hits=len(KEYS)), params={"coco_difficult": "gt", "iou_threshold": 0.5}))
    assert map_interval(perfect, 50, seed=0) == (1.0, 1.0)
    half = Node("evaluate/h", _write(tmp_path, "h", "evaluate", _evaluated(hits=4), params={"coco_difficult": "gt", "iou_threshold": 0.5}))
    low, high = map_interval(half, 200, seed=0)
    assert 0.0 <= low < 0.5 < high <= 1.0  # all hits score above all false alarms: AP 0.5 of the full set sits inside
    assert map_interval(half, 200, seed=0) == (low, high) and map_interval(half, 0, seed=0) is None


def test_rank_stability_golden_and_paired():
    # three methods far apart: ranks 1..3 and kept in every resample
    values = np.array([[0.1, 0.12, 0.11, 0.09], [0.5, 0.52, 0.49, 0.51], [0.9, 0.88, 0.91, 0.9]])
    order, stable = rank_stability(values, "low", 200, seed=0)
    assert order.tolist() == [1, 2, 3] and stable.tolist() == [1.0, 1.0, 1.0]
    assert ranks(np.array([0.3, 0.1, 0.2]), "high").tolist() == [1, 3, 2]
    # two methods that swap on every sample: a paired resample decides by which samples it draws
    swap = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]])
    order, stable = rank_stability(swap, "low", 400, seed=1)
    assert 0.2 < stable[0] < 0.8 and stable[0] == stable[1]
    again = rank_stability(swap, "low", 400, seed=1)
    assert np.array_equal(again[1], stable)  # seeded
    with pytest.raises(ValueError, match="finite"):
        rank_stability(np.array([[np.nan, 1.0]]), "low", 10, 0)


def test_histogram_has_integer_ticks_and_step_outlines():
    import matplotlib.pyplot as plt

    from saliencylab.report.figures import histogram_figure

    figure = histogram_figure({"a": np.array([0.1, 0.2, 0.2]), "b": np.array([0.5, 0.6])}, "t", tie_value=0.1)
    ax = figure.axes[0]
    ticks = ax.get_yticks()
    assert np.allclose(ticks, np.round(ticks))
    assert all(not p.get_fill() for p in ax.patches) and len({tuple(p.get_edgecolor()) for p in ax.patches}) == 2
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a (n=3)", "b (n=2)", "tie collapse (0.10)"]
    assert [tuple(h.get_edgecolor()) for h in legend.legend_handles[:2]] == [tuple(p.get_edgecolor()) for p in ax.patches]
    plt.close(figure)
