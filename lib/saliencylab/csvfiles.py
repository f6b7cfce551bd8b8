"""CSV files written next to an artifact's manifest (training curves, per-class tables): reproducible bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any


def csv_bytes(rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> bytes:
    """UTF-8 CSV of `rows` with a header of `columns`, in that order; keys not in `columns` are left out.

    Lines end with "\\n" whatever the platform, so equal rows give equal bytes.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
