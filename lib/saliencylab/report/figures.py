"""Figures of the report as PNG bytes: saliency overlays and per-image IoU histograms (matplotlib, Agg).

Maps are (H, W) float arrays; they are min-max scaled for display only. Images are uint8
(H, W, 3) RGB. Nothing is written to disk here; callers decide where the bytes go.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from saliencylab.images import resize  # noqa: E402

OVERLAY_ALPHA = 0.5  # weight of the heat map over the photograph


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
    """A grid: one row per sample, the photograph then one heat-map overlay per column.

    Args:
        rows: dicts with `label` (str), `image` (uint8 (H, W, 3)) and, per name in `columns`, an
            (h, w) map or None (drawn as "n/a").
        columns: names of the map columns, e.g. ["CAM", "DeepGaze", "human mask"].
        title: figure title.
    """
    figure, axes = plt.subplots(len(rows), 1 + len(columns), figsize=(2.4 * (1 + len(columns)), 2.4 * len(rows)), squeeze=False)
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
        for c, name in enumerate(["image", *columns]):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def iou_histogram(values: dict[str, np.ndarray], title: str, tie_value: float | None = None) -> bytes:
    """Overlaid histograms of per-image IoU for each named series (e.g. paper vs exact mode).

    `tie_value` draws a marker where the paper threshold's tie collapse piles values up (about 0.1).
    """
    figure, ax = plt.subplots(figsize=(5, 3))
    bins = np.linspace(0, 1, 41)
    for name, series in values.items():
        ax.hist(np.asarray(series, dtype=np.float64), bins=bins, alpha=0.55, label=f"{name} (n={len(series)})")
    if tie_value is not None:
        ax.axvline(tie_value, color="k", linestyle="--", linewidth=1, label=f"tie collapse ({tie_value:.2f})")
    ax.set_xlabel("IoU of top-salient pixels")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _png(figure)
