"""The training data order: an artifact's shards streamed in a seeded order through a seeded shuffle buffer.

Nothing is copied locally: one shard's bytes are in memory at a time (plus the undecoded samples
waiting in the buffer). The order of an epoch is a pure function of (seed, epoch, shard list,
buffer size), so every process of a distributed run, and a run resumed mid-epoch, sees the same
sequence and can skip to any position without decoding what it skips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from saliencylab.seeding import numpy_generator

T = TypeVar("T")


def shuffle_buffer(items: Iterable[T], size: int, seed: int, *labels: str | int) -> Iterator[T]:
    """Yield `items` in a random order drawn from a buffer of `size` items (webdataset's shuffle).

    The buffer is filled with the first `size` items; then each new item replaces a uniformly drawn
    buffer entry, which is yielded; at the end the remaining entries are yielded in random order.
    `size` 1 keeps the input order. The stream is `numpy_generator(seed, *labels)`.
    """
    if size < 1:
        raise ValueError(f"shuffle buffer size must be >= 1, got {size}")
    rng = numpy_generator(seed, *labels)
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        buffer[j], item = item, buffer[j]
        yield item
    for j in rng.permutation(len(buffer)):
        yield buffer[int(j)]


def epoch_stream(
    shards: Sequence[str],
    read: Callable[[str], Iterable[dict[str, Any]]],
    keep: Callable[[str], bool],
    *,
    seed: int,
    epoch: int,
    buffer: int,
) -> Iterator[dict[str, Any]]:
    """The samples of one epoch in training order.

    Args:
        shards: shard names of the training set, in manifest order.
        read: shard name -> its samples (undecoded is best: decoding happens only for used items).
        keep: sample key -> whether it is trained on (skipped negatives and quarantined items are not).
        seed, epoch: the run's seed and the 0-based epoch; shard order and buffer draws use the
            streams ("shard_order", epoch) and ("shuffle_buffer", epoch).
        buffer: shuffle buffer size in samples.
    """
    order = numpy_generator(seed, "shard_order", epoch).permutation(len(shards))

    def samples() -> Iterator[dict[str, Any]]:
        for index in order:
            yield from (s for s in read(shards[int(index)]) if keep(s["__key__"]))

    return shuffle_buffer(samples(), buffer, seed, "shuffle_buffer", epoch)


def iterations_per_epoch(samples: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps per epoch: ceil(samples / batch_size), less a last batch smaller than world_size.

    Each of `world_size` processes takes every world_size-th item of a global batch, so a last
    batch with fewer items than processes would leave one without work; it is dropped.
    """
    full, rest = divmod(samples, batch_size)
    return full + (1 if rest >= world_size else 0)


def global_batches(stream: Iterable[T], batch_size: int, iterations: int, start: int = 0) -> Iterator[tuple[int, list[T]]]:
    """(iteration, items) for iterations start..iterations-1 of `stream` cut into batches of `batch_size`.

    The first `start` batches are consumed without being yielded (a resumed epoch).
    """
    batch: list[T] = []
    iteration = 0
    for item in stream:
        if iteration >= iterations:
            return
        batch.append(item)
        if len(batch) == batch_size:
            if iteration >= start:
                yield iteration, batch
            iteration, batch = iteration + 1, []
    if batch and iteration < iterations and iteration >= start:
        yield iteration, batch
