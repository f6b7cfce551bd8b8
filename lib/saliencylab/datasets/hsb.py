"""The human saliency benchmark (HSB) of the HSI paper, read through an explicit manifest of its files.

HSB (OSF f3baw) has no documented layout, so `ingest --format hsb` reads a manifest file inside
the dataset folder that lists, per image, its files and class label (docs/hsi.md):

    CSV   a header row naming the columns image, label, map and optionally fixations; one row per
          image (extra columns are ignored)
    JSON  a list of objects with those keys, or {"items": [...]}

Paths are relative to the dataset folder, '/'-separated. `map` is the human saliency map (a
grayscale image, 0..255), `fixations` a fixation map image (nonzero pixels are fixated; the
value is the count) of the same aspect ratio. Sample keys come from the image path by
`names.sample_id` (without its extension), as for VOC and folder inputs.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from saliencylab.datasets.names import clashing_names, printable, sample_id

REQUIRED_COLUMNS = ("image", "label", "map")
OPTIONAL_COLUMNS = ("fixations",)


@dataclass(frozen=True)
class HSBEntry:
    """One manifest row: the sample key, its files (keys inside the dataset folder) and label.

    `problem` is set for a row that cannot become a sample (an empty field, a path leaving the
    folder, two rows mapping to one key); the stage hands it to the error policy.
    """

    key: str
    image: str
    label: str
    map: str
    fixations: str | None
    row: int  # 1-based position in the manifest (CSV: data row, header not counted)
    problem: str | None = None


def _rows(data: bytes, source: str) -> list[dict[str, object]]:
    """The manifest's rows as dicts; ValueError naming `source` when it is neither CSV nor JSON of that shape."""
    text = data.decode("utf-8-sig", errors="replace")
    if source.lower().endswith(".json"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not valid JSON: {e}") from None
        rows = body.get("items") if isinstance(body, dict) else body
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{source} must hold a list of objects (or {{\"items\": [...]}}) with keys {REQUIRED_COLUMNS}")
        return rows
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"{source}: the CSV header {reader.fieldnames} lacks the column(s) {missing}; need {REQUIRED_COLUMNS} (+ optional fixations)"
        )
    return list(reader)


def _path_problem(column: str, path: str) -> str | None:
    if not path:
        return f"empty {column} path"
    if path.startswith("/") or "\\" in path or ".." in path.split("/"):
        return f"{column} path {printable(path)!r} must be relative to the dataset folder, '/'-separated, without '..'"
    return None


def parse_hsb_manifest(data: bytes, source: str) -> list[HSBEntry]:
    """The entries of an HSB manifest, sorted by key; rows with problems carry them in `problem`.

    Raises:
        ValueError: when the manifest as a whole is unusable (not CSV/JSON, required columns
            missing, no rows), naming `source`.
    """
    rows = _rows(data, source)
    if not rows:
        raise ValueError(f"{source} lists no images")
    entries = []
    for number, row in enumerate(rows, start=1):
        fields = {c: str(row.get(c) or "").strip() for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        problems = [p for c in ("image", "map") if (p := _path_problem(c, fields[c]))]
        if fields["fixations"] and (p := _path_problem("fixations", fields["fixations"])):
            problems.append(p)
        if not fields["label"]:
            problems.append("empty label")
        image = fields["image"]
        key = sample_id(image.rsplit(".", 1)[0]) if image else f"row-{number}"
        problem = f"row {number} of {source}: {'; '.join(problems)}" if problems else None
        entries.append(HSBEntry(key, image, fields["label"], fields["map"], fields["fixations"] or None, number, problem))
    clashes = clashing_names(_images_by_key(entries))
    entries = [e if e.key not in clashes or e.problem else _with_problem(e, clashes[e.key]) for e in entries]
    return sorted(entries, key=lambda e: (e.key, e.row))


def _images_by_key(entries: list[HSBEntry]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in entries:
        found.setdefault(entry.key, []).append(entry.image)
    return found


def _with_problem(entry: HSBEntry, problem: str) -> HSBEntry:
    return HSBEntry(entry.key, entry.image, entry.label, entry.map, entry.fixations, entry.row, problem)
