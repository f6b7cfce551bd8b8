"""Progress of a stage over its shards: a tqdm bar on a terminal, one-line JSON records otherwise.

The JSON lines go to stderr (stdout stays free for machine-readable results, e.g. Argo's
`outputs.result`), one per finished shard: {"stage", "shard", "done", "total", ...}.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


class Progress:
    """Counts finished shards of one stage run."""

    def __init__(self, stage: str, total: int, stream: TextIO | None = None, interactive: bool | None = None):
        self.stage, self.total, self.done = stage, total, 0
        self.stream = stream or sys.stderr
        interactive = self.stream.isatty() if interactive is None else interactive
        self._bar = None
        if interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=stage, unit="shard", file=self.stream)

    def advance(self, shard: str, **fields: Any) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(shard, refresh=False)
            self._bar.update(1)
        else:
            record = {"stage": self.stage, "shard": shard, "done": self.done, "total": self.total, **fields}
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
