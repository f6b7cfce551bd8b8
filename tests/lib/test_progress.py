"""Progress lines: fields, cadence by samples and by seconds, rate and ETA, reused shards announced once."""

from __future__ import annotations

import io
import json

import pytest

from saliencylab.progress import Progress, rate_and_eta


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_rate_and_eta_math():
    assert rate_and_eta(10, 5.0, 30) == (2.0, 15.0)
    assert rate_and_eta(0, 5.0, 30) == (None, None)
    assert rate_and_eta(3, 0.0, 30) == (None, None)


def test_a_line_every_n_samples_with_time_rate_and_eta():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("cam", [("shard-000000.tar", 4), ("shard-000001.tar", 4)], stream, False, every_samples=2, every_seconds=1e9, clock=clock)
    for _ in range(3):
        clock.now += 0.5
        progress.sample("shard-000000.tar")
    lines = _lines(stream)
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {"time", "stage", "shard", "done", "total", "shards_done", "shards_total", "rate", "eta_s"}
    assert line["time"].endswith("Z") and line["stage"] == "cam" and line["shard"] == "shard-000000.tar"
    assert (line["done"], line["total"], line["shards_done"], line["shards_total"]) == (2, 8, 0, 2)
    assert line["rate"] == pytest.approx(2.0)  # 2 samples in 1 s
    assert line["eta_s"] == pytest.approx(3.0)  # 6 left at 2/s


def test_a_line_after_t_seconds_even_between_sample_counts():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress("cam", [("shard-000000.tar", 100)], stream, False, every_samples=50, every_seconds=10, clock=clock)
    progress.sample("shard-000000.tar")
    assert _lines(stream) == []
    clock.now += 11
    progress.sample("shard-000000.tar")
    assert [line["done"] for line in _lines(stream)] == [2]


def test_shard_end_line_counts_quarantined_items_as_done():
    stream = io.StringIO()
    progress = Progress("ingest", [("shard-000000.tar", 3)], stream, False, every_samples=100)
    progress.sample("shard-000000.tar")
    progress.sample("shard-000000.tar")
    progress.shard_done("shard-000000.tar", 2, quarantined=1)
    (line,) = _lines(stream)
    assert (line["done"], line["total"], line["shards_done"], line["samples"], line["quarantined"]) == (3, 3, 1, 2, 1)
    assert line["eta_s"] == 0


def test_reused_shards_are_announced_once_and_not_in_the_rate():
    stream, clock = io.StringIO(), FakeClock()
    shards = [(f"shard-{i:06d}.tar", 2) for i in range(10)]
    progress = Progress("deepgaze", shards, stream, False, every_samples=1, clock=clock)
    progress.skip(shards[:8])
    clock.now += 1
    progress.sample("shard-000008.tar")
    text = stream.getvalue().splitlines()
    assert text[0] == "deepgaze: skipping 8 finished shards (16 samples)"
    assert sum("skipping" in line for line in text) == 1
    line = _lines(stream)[0]
    assert (line["done"], line["shards_done"]) == (17, 8)
    assert line["rate"] == pytest.approx(1.0) and line["eta_s"] == pytest.approx(3.0)


def test_no_reused_shards_no_announcement():
    stream = io.StringIO()
    Progress("cam", [("shard-000000.tar", 1)], stream, False).skip([])
    assert stream.getvalue() == ""


def test_bar_on_a_terminal_counts_samples():
    stream = io.StringIO()
    progress = Progress("cam", [("shard-000000.tar", 2), ("shard-000001.tar", 2)], stream, True)
    progress.skip([("shard-000000.tar", 2)])
    progress.sample("shard-000001.tar")
    progress.shard_done("shard-000001.tar", 1, quarantined=1)
    assert progress._bar.n == 4 and progress._bar.total == 4
    progress.close()
    assert "skipping 1 finished shard (2 samples)" in stream.getvalue()
    assert not _lines(stream)
