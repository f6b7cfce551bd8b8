"""Seeds: one integer per run (a stage parameter, part of the run id) turned into independent streams.

Every stage that draws random numbers (random weights, RISE masks, augmentation choices, Deep Image
Prior noise, data order) takes a `seed` parameter and derives every stream from it with
`derive_seed(seed, *labels)`, labelled by what the stream is for and, for per-item work, by the
sample key. So a shard computed alone (`--shard i/n`), a resumed run and an uninterrupted run draw
the same numbers, whatever order items are processed in. The global torch RNG is never left
changed: model initialisation runs inside `seeded_init`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a generator is made: config classes import this module cheaply
    import torch

DEFAULT_SEED = 0  # the default of every stage's `seed` parameter
SEED_HELP = "Integer seed of every random draw of this stage (part of the run id, so reruns are byte-identical)."


def derive_seed(seed: int, *labels: str | int) -> int:
    """A 63-bit seed for the stream named by `labels` under the run's `seed`.

    Args:
        seed: the run's seed (any Python int).
        labels: what the stream is for, e.g. ("weights", "faster_rcnn") or ("augment", sample_key).

    Returns:
        An int in [0, 2**63), a pure function of (seed, labels): independent of call order, process,
        platform and PYTHONHASHSEED.
    """
    text = "\x1f".join([str(int(seed)), *(str(label) for label in labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def torch_generator(seed: int, *labels: str | int, device: torch.device | str = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `derive_seed(seed, *labels)`."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *labels))
    return generator


def numpy_generator(seed: int, *labels: str | int) -> np.random.Generator:
    """A NumPy PCG64 generator seeded with `derive_seed(seed, *labels)`."""
    return np.random.Generator(np.random.PCG64(derive_seed(seed, *labels)))


@contextmanager
def seeded_init(seed: int, *labels: str | int) -> Iterator[None]:
    """Run the body (typically a model constructor) with the global CPU torch RNG seeded from `labels`.

    The global RNG state is restored afterwards, so callers and other streams are unaffected.
    Modules are built on the CPU, so only the CPU RNG is forked.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *labels))
        yield
