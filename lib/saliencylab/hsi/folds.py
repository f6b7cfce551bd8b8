"""Seeded, class-stratified k-fold assignment of the HSB images (5-fold cross-validation of HSI fine-tuning).

The HSI paper fine-tunes on HSB (160 images: 20 classes x 8) with 5-fold cross-validation; it does
not say how folds are drawn. Ours: the image is the fold unit (HSB has one label per image), folds
are stratified by class, and each class's images are shuffled by their own seeded stream and dealt
round-robin, the deal continuing from fold to fold across classes (in sorted class order) so fold
sizes differ by at most one. Every fold then holds at least one image of every class, which needs
at least k images per class.
"""

from __future__ import annotations

from collections.abc import Mapping

from saliencylab.seeding import numpy_generator


def assign_folds(labels: Mapping[str, str], folds: int, seed: int) -> dict[str, int]:
    """The fold (0..folds-1) of every sample.

    Args:
        labels: sample key -> class label (one label per image).
        folds: number of folds k, >= 2.
        seed: the run's seed; class c's order uses the stream ("folds", c).

    Returns:
        {key: fold}, a pure function of (labels, folds, seed): independent of the mapping's order.
        Not mutated: `labels`.

    Raises:
        ValueError: if folds < 2, or a class has fewer than `folds` images (naming the class and its
            count), since then some fold would lack it.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    by_class: dict[str, list[str]] = {}
    for key, label in labels.items():
        by_class.setdefault(label, []).append(key)
    short = {label: len(keys) for label, keys in sorted(by_class.items()) if len(keys) < folds}
    if short:
        listing = ", ".join(f"{label!r} has {n}" for label, n in short.items())
        raise ValueError(
            f"every fold must hold each class, so each class needs at least {folds} images: {listing}; "
            "add images of those classes or lower the number of folds"
        )
    assignment: dict[str, int] = {}
    deal = 0
    for label in sorted(by_class):
        keys = sorted(by_class[label])
        for index in numpy_generator(seed, "folds", label).permutation(len(keys)):
            assignment[keys[int(index)]] = deal % folds
            deal += 1
    return dict(sorted(assignment.items()))


def fold_split(assignment: Mapping[str, int], fold: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training keys, held-out keys) of `fold`, each sorted: the held-out keys are those assigned to it."""
    held_out = tuple(sorted(k for k, f in assignment.items() if f == fold))
    if not held_out:
        raise ValueError(f"fold {fold} holds no sample (folds present: {sorted(set(assignment.values()))})")
    return tuple(sorted(k for k, f in assignment.items() if f != fold)), held_out
