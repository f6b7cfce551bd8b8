"""The pure parts of fine-tuning: targets and box cleaning, the recipe's schedule, the data order."""

from __future__ import annotations

import pytest
import torch

from saliencylab.datasets.voc import VOC_CLASSES
from saliencylab.training.recipe import Recipe, learning_rate, warmup_length
from saliencylab.training.stream import epoch_stream, global_batches, iterations_per_epoch, shuffle_buffer
from saliencylab.training.targets import NUM_CLASSES, BoxCounts, build_target, clean_boxes, label_ids


def test_voc_has_21_outputs_with_background_zero():
    assert NUM_CLASSES == 21
    assert label_ids(["aeroplane", "tvmonitor", "person"]).tolist() == [1, 20, 15]


def test_unknown_class_is_refused_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unicorn") as info:
        label_ids(["person", "unicorn"])
    assert all(name in str(info.value) for name in VOC_CLASSES)


def test_clean_boxes_clips_or_drops_and_counts():
    boxes = torch.tensor([[10.0, 10, 20, 20], [-5, 2, 30, 70], [5, 5, 5, 9], [70, 10, 90, 20]])
    clipped, keep, outside, degenerate = clean_boxes(boxes, (64, 64), "clip")
    assert clipped[1].tolist() == [0, 2, 30, 64] and clipped[3].tolist() == [64, 10, 64, 20]
    assert keep.tolist() == [True, True, False, False]  # [2] has zero width, [3] is zero-width once clipped
    assert (outside, degenerate) == (2, 2)
    unclipped, keep, outside, degenerate = clean_boxes(boxes, (64, 64), "drop")
    assert torch.equal(unclipped, boxes) and keep.tolist() == [True, False, False, False]
    assert (outside, degenerate) == (2, 1)


def test_build_target_rescales_boxes_and_applies_the_difficult_policy():
    meta = {
        "boxes": [[0, 0, 100, 50], [50, 25, 200, 100], [10, 10, 10, 20]],
        "labels": ["cat", "dog", "bird"],
        "difficult": [False, True, False],
        "original_size": [100, 200],  # (H, W) of the original; image.png is half that
    }
    kept = build_target(meta, (50, 100), difficult="keep", outside="clip")
    assert kept.boxes.tolist() == [[0, 0, 50, 25], [25, 12.5, 100, 50]]
    assert kept.labels.tolist() == [8, 12]
    assert kept.counts == BoxCounts(given=3, degenerate_dropped=1, kept=2)
    dropped = build_target(meta, (50, 100), difficult="drop", outside="clip")
    assert dropped.labels.tolist() == [8] and dropped.counts.difficult_dropped == 1
    assert kept.boxes.dtype == torch.float32 and kept.labels.dtype == torch.int64


def test_build_target_of_an_image_without_boxes_is_empty_and_well_shaped():
    target = build_target({"boxes": [], "labels": []}, (32, 48), difficult="keep", outside="clip")
    assert target.boxes.shape == (0, 4) and target.labels.shape == (0,) and target.counts.kept == 0


def test_build_target_refuses_inconsistent_lengths():
    with pytest.raises(ValueError, match="2 boxes, 1 labels"):
        build_target({"boxes": [[0, 0, 1, 1]] * 2, "labels": ["cat"]}, (8, 8), difficult="keep", outside="clip")


@pytest.mark.parametrize("per_epoch", [2, 7, 3000])
def test_schedule_matches_torchvision_reference_schedulers(per_epoch):
    """Our closed form against StepLR per epoch + LinearLR warm-up in epoch 0, stepped as references/detection does."""
    recipe = Recipe(epochs=5)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=recipe.lr, momentum=recipe.momentum)
    main = torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.lr_step, gamma=recipe.lr_gamma)
    for epoch in range(recipe.epochs):
        warmup = None
        if epoch == 0:
            total = min(1000, per_epoch - 1)
            warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.001, total_iters=total)
        for iteration in range(per_epoch):
            assert learning_rate(recipe, epoch, iteration, per_epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
            optimizer.step()
            if warmup is not None:
                warmup.step()
        main.step()


def test_one_iteration_epochs_warm_up_only_their_single_step():
    """torchvision's LinearLR with total_iters=0 would keep the factor 0.001 for the whole run; we do not."""
    recipe = Recipe()
    assert [learning_rate(recipe, e, 0, 1) for e in range(3)] == pytest.approx([0.005 * 0.001, 0.005, 0.0005])


def test_schedule_without_warmup_is_step_lr():
    recipe = Recipe(warmup=False)
    assert [learning_rate(recipe, e, 0, 10) for e in range(5)] == pytest.approx([0.005, 0.005, 0.0005, 0.0005, 0.00005])
    assert warmup_length(recipe, 10) == 0 and warmup_length(Recipe(), 10) == 9 and warmup_length(Recipe(), 5000) == 1000


def test_recipe_refuses_nonsense():
    with pytest.raises(ValueError, match="batch_size"):
        Recipe(batch_size=0)


def test_shuffle_buffer_is_a_seeded_permutation():
    items = list(range(50))
    first = list(shuffle_buffer(items, 8, 0, "x"))
    assert sorted(first) == items and first != items
    assert first == list(shuffle_buffer(items, 8, 0, "x"))
    assert first != list(shuffle_buffer(items, 8, 1, "x"))
    assert list(shuffle_buffer(items, 1, 0, "x")) == items
    with pytest.raises(ValueError):
        list(shuffle_buffer(items, 0, 0))


def test_small_buffer_only_moves_items_locally():
    """A buffer of 4 can delay an item arbitrarily but advance it by at most 3 places."""
    out = list(shuffle_buffer(range(100), 4, 3, "y"))
    assert all(position >= item - 3 for position, item in enumerate(out))


def _shards() -> dict[str, list[dict]]:
    return {f"s{i}": [{"__key__": f"k{i}{j}"} for j in range(5)] for i in range(4)}


def test_epoch_stream_is_a_function_of_seed_and_epoch_and_filters():
    shards = _shards()
    keys = lambda epoch, seed=0: [s["__key__"] for s in epoch_stream(list(shards), shards.__getitem__, lambda k: k != "k00", seed=seed, epoch=epoch, buffer=6)]  # noqa: E731
    assert sorted(keys(0)) == sorted(k["__key__"] for v in shards.values() for k in v if k["__key__"] != "k00")
    assert keys(0) == keys(0) and keys(0) != keys(1) and keys(0) != keys(0, seed=5)


def test_global_batches_resume_gives_the_same_tail():
    stream = list(range(11))
    full = list(global_batches(iter(stream), 4, 3))
    assert full == [(0, [0, 1, 2, 3]), (1, [4, 5, 6, 7]), (2, [8, 9, 10])]
    assert list(global_batches(iter(stream), 4, 3, start=2)) == full[2:]
    assert list(global_batches(iter(stream), 4, 2)) == full[:2]


def test_iterations_per_epoch_keeps_a_last_batch_each_process_can_share():
    assert iterations_per_epoch(11, 4) == 3
    assert iterations_per_epoch(12, 4) == 3
    assert iterations_per_epoch(9, 4, world_size=2) == 2  # a last batch of 1 image for 2 processes is dropped
    assert iterations_per_epoch(10, 4, world_size=2) == 3
