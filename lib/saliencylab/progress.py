"""Progress of a stage over its samples: a tqdm bar on a terminal, timed JSON lines in a log.

Off a terminal (a pod log, a CI job) one JSON line goes to stderr (stdout stays free for
machine-readable results, e.g. Argo's `outputs.result`) at least every `every_samples` samples
or `every_seconds` seconds, whichever comes first, and at the end of every shard:

    {"time": "2026-05-01T12:00:00Z", "stage": "cam", "shard": "shard-000003.tar",
     "done": 192, "total": 898, "shards_done": 3, "shards_total": 15,
     "rate": 4.1, "eta_s": 172.2}

`done`/`total` count samples (work items) of this worker, reused ones included; `rate` is
samples per second computed in this process, reused shards excluded; `eta_s` is the remaining
samples at that rate (null until a first sample is timed). Shards reused from an interrupted run
are announced once ("skipping 8 finished shards"), not one line each.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

EVERY_SAMPLES = 64  # a log line at least this often (samples) ...
EVERY_SECONDS = 30.0  # ... or this often (seconds), whichever comes first


def rate_and_eta(done_here: int, elapsed_s: float, remaining: int) -> tuple[float | None, float | None]:
    """Samples per second over `elapsed_s` and the seconds left for `remaining` samples at that rate.

    Both are None while nothing has been timed (no sample done or no time elapsed).
    """
    if done_here <= 0 or elapsed_s <= 0:
        return None, None
    rate = done_here / elapsed_s
    return rate, remaining / rate


class Progress:
    """Counts the samples and shards one stage run finishes and reports them.

    Args:
        stage: stage name, in every record.
        shards: (shard name, number of samples) of every shard this worker handles, in order.
        stream: where lines go (default stderr).
        interactive: draw a tqdm bar instead of JSON lines (default: whether `stream` is a terminal).
        every_samples, every_seconds: JSON line cadence (see the module docstring).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        stage: str,
        shards: Sequence[tuple[str, int]],
        stream: TextIO | None = None,
        interactive: bool | None = None,
        every_samples: int = EVERY_SAMPLES,
        every_seconds: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stage = stage
        self._sizes = dict(shards)
        self.shards_total, self.total = len(shards), sum(self._sizes.values())
        self.shards_done = self.done = 0
        self._finished = self._in_shard = 0  # samples of finished shards; samples so far of the current one
        self.stream = stream or sys.stderr
        self.every_samples, self.every_seconds, self.clock = every_samples, every_seconds, clock
        self._start = self._last_time = clock()
        self._done_here = self._last_done = 0
        self._bar = None
        if self.stream.isatty() if interactive is None else interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=stage, unit="sample", file=self.stream, dynamic_ncols=True)

    def skip(self, shards: Sequence[tuple[str, int]]) -> None:
        """Count finished shards reused from an earlier run, announcing them in one line."""
        if not shards:
            return
        samples = sum(n for _, n in shards)
        self.shards_done += len(shards)
        self._finished += samples
        self.done = self._last_done = self._finished
        message = f"{self.stage}: skipping {len(shards)} finished shard{'s' if len(shards) != 1 else ''} ({samples} samples)"
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
            self._bar.update(samples)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def sample(self, shard: str) -> None:
        """Count one finished sample of `shard`; write a line when the cadence asks for one."""
        self._in_shard += 1
        self._done_here += 1
        before, self.done = self.done, self._finished + min(self._in_shard, self._sizes.get(shard, self._in_shard))
        if self._bar is not None:
            self._bar.set_postfix_str(shard, refresh=False)
            self._bar.update(self.done - before)
        elif self.done - self._last_done >= self.every_samples or self.clock() - self._last_time >= self.every_seconds:
            self._emit(shard)

    def shard_done(self, shard: str, samples: int, **fields: Any) -> None:
        """Count a finished shard (`samples` written, `fields` e.g. quarantined) and write its line.

        Its planned samples all count as done, quarantined ones included.
        """
        self.shards_done += 1
        self._finished += self._sizes.get(shard, self._in_shard)
        self._in_shard = 0
        before, self.done = self.done, self._finished
        if self._bar is not None:
            self._bar.update(self.done - before)
        else:
            self._emit(shard, samples=samples, **fields)

    def record(self, shard: str, **fields: Any) -> dict[str, Any]:
        """The JSON record of the current state (see the module docstring for the fields)."""
        rate, eta = rate_and_eta(self._done_here, self.clock() - self._start, self.total - self.done)
        return {
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stage": self.stage,
            "shard": shard,
            "done": self.done,
            "total": self.total,
            "shards_done": self.shards_done,
            "shards_total": self.shards_total,
            "rate": None if rate is None else round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
            **fields,
        }

    def _emit(self, shard: str, **fields: Any) -> None:
        self.stream.write(json.dumps(self.record(shard, **fields)) + "\n")
        self.stream.flush()
        self._last_done, self._last_time = self.done, self.clock()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
