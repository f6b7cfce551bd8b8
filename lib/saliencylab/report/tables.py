"""Tables of the report: rows of labelled cells, metric means with bootstrap intervals, best cells marked.

The cells are text; `to_markdown` and `to_html` render the same `Table`, a best cell as bold with a
star in both (so the star survives plain-text viewers and matches between the two). Every metric
table carries n (the pairs behind each row); rows with fewer than `SMALL_N` get a caveat.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from importlib import resources

SMALL_N = 30  # below this many pairs a bootstrap interval of the mean is too unreliable to read alone
STAR = "★"


@dataclass(frozen=True)
class Metric:
    """A metric column: the key in a compare summary, its title and which direction is better."""

    key: str
    title: str
    better: str  # "low" or "high"


# The compare stage's suite, in the order the report shows it.
SUITE: tuple[Metric, ...] = (
    Metric("mae", "MAE ↓", "low"),
    Metric("iou_paper", "IoU top-10% paper ↑", "high"),
    Metric("iou_exact", "IoU top-10% exact ↑", "high"),
    Metric("cc", "CC ↑", "high"),
    Metric("kldiv", "KLdiv ↓", "low"),
    Metric("sim", "SIM ↑", "high"),
)


@dataclass(frozen=True)
class Table:
    """Header, rows of text cells, the (row, column) cells holding a column's best value, and the caption."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    best: frozenset[tuple[int, int]] = frozenset()
    caption: str = ""


def published_tables(name: str = "published_paper_a.json") -> dict:
    """A file of published tables (lib/saliencylab/data/) with its source and notes."""
    return json.loads(resources.files("saliencylab").joinpath(f"data/{name}").read_text())


def ci_cell(summary: dict | None) -> str:
    """`mean [ci_low, ci_high]` of a bootstrap summary, or an en dash when there is none."""
    if not summary:
        return "–"
    return f"{summary['mean']:.4f} [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"


def number_cell(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def best_cells(values: list[list[float | None]], better: list[str | None], first_column: int) -> frozenset[tuple[int, int]]:
    """Cells holding each column's best finite value (ties all marked); a column whose `better` is None is skipped.

    Args:
        values: per row, per scored column, the value or None.
        better: per scored column "low", "high" or None.
        first_column: index in the table of the first scored column.
    """
    best = set()
    for c, direction in enumerate(better):
        if direction is None:
            continue
        column = [row[c] for row in values]
        finite = [v for v in column if v is not None and math.isfinite(v)]
        if len(finite) < 2:
            continue  # one row has no competitor: nothing to mark
        target = min(finite) if direction == "low" else max(finite)
        best |= {(r, c + first_column) for r, v in enumerate(column) if v == target}
    return frozenset(best)


def metric_table(
    rows: dict[str, dict],
    counts: dict[str, int],
    metrics: tuple[Metric, ...] = SUITE,
    *,
    label: str = "model",
    leading: tuple[tuple[str, dict[str, str]], ...] = (),
    trailing: tuple[tuple[str, dict[str, str]], ...] = (),
    mark_best: bool = True,
    caption: str = "",
) -> Table:
    """A label x metric table: n, mean [95% CI] per metric, extra text columns before and after.

    Args:
        rows: row label -> metric key -> bootstrap summary {"mean", "ci_low", "ci_high", ...}.
        counts: row label -> n, the pairs behind the row.
        leading, trailing: (title, row label -> cell text) columns before the metrics and after them
            (e.g. published values); a missing cell is an en dash.
        mark_best: mark each metric column's best mean; off when any weights are random.
    """
    labels = list(rows)
    header = (label, *(t for t, _ in leading), "n", *(m.title for m in metrics), *(t for t, _ in trailing))
    cells = []
    for name in labels:
        extra = [column.get(name, "–") for _, column in leading]
        scored = [ci_cell(rows[name].get(m.key)) for m in metrics]
        cells.append((name, *extra, str(counts.get(name, 0)), *scored, *(column.get(name, "–") for _, column in trailing)))
    best = frozenset()
    if mark_best:
        means = [[(rows[name].get(m.key) or {}).get("mean") for m in metrics] for name in labels]
        best = best_cells(means, [m.better for m in metrics], 2 + len(leading))
    return Table(header, tuple(cells), best, caption)


def small_n_caveat(counts: dict[str, int]) -> str | None:
    """The caveat for rows with fewer than SMALL_N pairs, or None."""
    small = {k: n for k, n in counts.items() if n < SMALL_N}
    if not small:
        return None
    listed = ", ".join(f"{k} (n = {n})" for k, n in small.items())
    return f"Caution: fewer than {SMALL_N} pairs behind {listed}; the means and intervals of these rows are not reliable."


def to_markdown(table: Table) -> str:
    def cell(r: int, c: int, text: str) -> str:
        text = text.replace("|", "\\|")  # a pipe inside a cell would split it
        return f"**{text}** {STAR}" if (r, c) in table.best else text

    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(cell(r, c, t) for c, t in enumerate(row)) + " |" for r, row in enumerate(table.rows)]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    def cell(r: int, c: int, text: str) -> str:
        if (r, c) in table.best:
            return f'<td class="best"><b>{html.escape(text)}</b> {STAR}</td>'
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(cell(r, c, t) for c, t in enumerate(row)) + "</tr>" for r, row in enumerate(table.rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
