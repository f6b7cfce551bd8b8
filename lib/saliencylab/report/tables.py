"""Tables of the report: detector x metric with bootstrap intervals, best value per column marked.

The cells are text; `to_markdown` and `to_html` render the same `Table`. A best value is marked
with bold (and a star in Markdown, so it survives plain-text viewers).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from importlib import resources

# (summary key, column title, which direction is better)
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("mae", "MAE ↓", "low"),
    ("iou_paper", "IoU top-10% paper ↑", "high"),
    ("iou_exact", "IoU top-10% exact ↑", "high"),
    ("cc", "CC ↑", "high"),
    ("kldiv", "KLdiv ↓", "low"),
    ("sim", "SIM ↑", "high"),
)
PUBLISHED_COLUMNS = (("mae", "paper MAE"), ("iou_paper", "paper IoU"))


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    best: frozenset[tuple[int, int]]  # (row, column) cells holding the best value of their column


def published_tables() -> dict:
    """The paper's published tables (lib/saliencylab/data/published_paper_a.json) with their source and notes."""
    return json.loads(resources.files("saliencylab").joinpath("data/published_paper_a.json").read_text())


def _cell(summary: dict | None) -> str:
    if not summary:
        return "–"
    return f"{summary['mean']:.4f} [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"


def metric_table(results: dict[str, dict[str, dict]], published: dict[str, dict] | None = None) -> Table:
    """A detector x metric table.

    Args:
        results: detector -> metric -> {"mean", "ci_low", "ci_high", ...} (a compare summary's "metrics").
        published: detector -> {"mae", "iou_paper"} from the paper, shown in extra columns when given.
    """
    detectors = sorted(results)
    header = ["detector", *(title for _, title, _ in METRIC_COLUMNS)]
    if published is not None:
        header += [title for _, title in PUBLISHED_COLUMNS]
    best = set()
    for c, (key, _, direction) in enumerate(METRIC_COLUMNS, 1):
        means = [(results[d].get(key) or {}).get("mean", math.nan) for d in detectors]
        finite = [m for m in means if math.isfinite(m)]
        if finite:
            target = min(finite) if direction == "low" else max(finite)
            best |= {(r, c) for r, m in enumerate(means) if m == target}
    rows = []
    for d in detectors:
        row = [d, *(_cell(results[d].get(key)) for key, _, _ in METRIC_COLUMNS)]
        if published is not None:
            row += [f"{published[d][key]:.4f}" if d in published else "–" for key, _ in PUBLISHED_COLUMNS]
        rows.append(tuple(row))
    return Table(tuple(header), tuple(rows), frozenset(best))


def to_markdown(table: Table) -> str:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    for r, row in enumerate(table.rows):
        cells = [f"**{cell}** ★" if (r, c) in table.best else cell for c, cell in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for r, row in enumerate(table.rows):
        cells = "".join(
            f'<td class="best"><b>{html.escape(cell)}</b></td>' if (r, c) in table.best else f"<td>{html.escape(cell)}</td>"
            for c, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
