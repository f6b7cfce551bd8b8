"""Figures of the report as PNG bytes: overlays, IoU histograms, training curves, training-set examples (matplotlib, Agg).

Maps are (H, W) float arrays; they are min-max scaled for display only. Images are uint8
(H, W, 3) RGB. Boxes are (K, 4) x0, y0, x1, y1 in pixels of the image drawn. Nothing is written to
disk here; callers decide where the bytes go.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from saliencylab.images import resize  # noqa: E402

OVERLAY_ALPHA = 0.5  # weight of the heat map over the photograph
COLOURS = plt.get_cmap("tab10").colors  # one distinct colour per series
LINESTYLES = ("-", "--", ":", "-.")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def _display(map_: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map min-max scaled to [0, 1] and resized to `size` (height, width) for display."""
    m = np.asarray(map_, dtype=np.float64)
    span = m.max() - m.min()
    m = (m - m.min()) / span if span > 0 else np.zeros_like(m)
    return resize(np.rint(m * 255).astype(np.uint8), size).astype(np.float64) / 255


def overlay_grid(rows: list[dict], columns: list[str], title: str) -> bytes:
    """A grid: one row per sample, the photograph then one heat-map overlay per column, with a colour bar.

    Args:
        rows: dicts with `label` (str: sample key and the pair's score), `image` (uint8 (H, W, 3))
            and, per name in `columns`, an (h, w) map or None (drawn as "n/a").
        columns: names of the map columns, e.g. ["CAM", "DeepGaze", "human mask"].
        title: figure title.
    """
    figure, axes = plt.subplots(len(rows), 1 + len(columns), figsize=(2.4 * (1 + len(columns)) + 0.6, 2.4 * len(rows)), squeeze=False)
    shown = False
    for r, row in enumerate(rows):
        image = row["image"]
        axes[r, 0].imshow(image)
        axes[r, 0].set_ylabel(row["label"], fontsize=8)
        for c, name in enumerate(columns, 1):
            ax = axes[r, c]
            if row.get(name) is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center")
            else:
                ax.imshow(image)
                ax.imshow(_display(row[name], image.shape[:2]), cmap="jet", alpha=OVERLAY_ALPHA, vmin=0, vmax=1)
                shown = True
        for c, name in enumerate(["image", *columns]):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    if shown:  # the scale itself, unblended: a map value's colour before it is laid over the photograph
        scale = ScalarMappable(Normalize(0, 1), cmap="jet")
        bar = figure.colorbar(scale, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
        bar.set_label("saliency (min-max scaled per map)", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def iou_histogram(values: dict[str, np.ndarray], title: str, tie_value: float | None = None) -> bytes:
    """`histogram_figure` as PNG bytes."""
    return _png(histogram_figure(values, title, tie_value))


def histogram_figure(values: dict[str, np.ndarray], title: str, tie_value: float | None = None):
    """Per-image IoU of each named series as step outlines (distinct colour and line style), integer counts.

    `tie_value` draws a marker where the paper threshold's tie collapse piles values up (about 0.1).
    Returns the matplotlib figure (the caller closes it, or `iou_histogram` renders it).
    """
    figure, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(0, 1, 41)
    for i, (name, series) in enumerate(values.items()):
        ax.hist(np.asarray(series, dtype=np.float64), bins=bins, histtype="step", linewidth=1.6,
                color=COLOURS[i % len(COLOURS)], linestyle=LINESTYLES[i % len(LINESTYLES)], label=f"{name} (n={len(series)})")  # fmt: skip
    if tie_value is not None:
        ax.axvline(tie_value, color="k", linestyle=(0, (2, 2)), linewidth=1, label=f"tie collapse ({tie_value:.2f})")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("IoU of top-salient pixels")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return figure


def training_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """Training loss against optimizer step, one line per named run.

    Args:
        curves: run name -> (steps (N,) int, loss (N,) float).
    """
    figure, ax = plt.subplots(figsize=(5.5, 3.2))
    for i, (name, (steps, loss)) in enumerate(curves.items()):
        ax.plot(steps, loss, color=COLOURS[i % len(COLOURS)], linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=1.2, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (sum of the four)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _png(figure)


def training_examples(panels: list[dict], title: str) -> bytes:
    """Training-set samples side by side, boxes drawn, an erase mask outlined where given.

    Args:
        panels: dicts with `title` (str), `image` (uint8 (H, W, 3)), `boxes` ((K, 4) x0, y0, x1, y1
            in the image's pixels), `labels` (K class names) and optionally `mask` (uint8 (H, W),
            non-zero = erased; its outline is drawn in cyan).
    """
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        ax.imshow(panel["image"])
        if panel.get("mask") is not None and np.any(panel["mask"]):
            ax.contour(np.asarray(panel["mask"]) > 0, levels=[0.5], colors="cyan", linewidths=1.0)
        for (x0, y0, x1, y1), label in zip(panel["boxes"], panel["labels"]):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", linewidth=1.5))
            ax.text(x0, y0, label, color="black", fontsize=7, va="bottom", bbox={"facecolor": "yellow", "pad": 1, "linewidth": 0})
        ax.set_title(panel["title"], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title, fontsize=10)
    return _png(figure)
