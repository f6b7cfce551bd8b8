"""bench/bench_study.py: how a step's wall time is split, the copied demo images, and one tiny real run."""

from __future__ import annotations

import argparse

import pytest

from saliencylab.datasets.masks import MASK_DIR

from bench.bench_study import Cost, add_costs, grouped, markdown_table, run_study, step_cost, write_images


def test_fastest_shard_sets_the_rate_and_the_first_shard_pays_the_warm_up():
    # prepare 0..2; shards take 3, 2 and 3 s for 2 images each; merge and summary 10..11
    cost = step_cost(0.0, 2.0, [(5.0, 2), (7.0, 2), (10.0, 2)], 11.0)
    assert cost == Cost(wall=11.0, fixed=2.0 + 1.0 + 1.0, per_image=1.0, images=6)
    assert cost.lost == pytest.approx(1.0)  # the third shard's extra second


def test_a_single_shard_counts_whole_and_a_step_without_shards_is_all_fixed():
    single = step_cost(0.0, 1.0, [(5.0, 2)], 5.5)
    assert single == Cost(wall=5.5, fixed=1.5, per_image=2.0, images=2) and single.lost == 0.0
    report = step_cost(0.0, None, [], 3.0)
    assert report == Cost(wall=3.0, fixed=3.0, per_image=None, images=0) and report.lost == 0.0
    quarantined_first = step_cost(0.0, 1.0, [(2.0, 0), (4.0, 2)], 4.0)
    assert quarantined_first.per_image == 1.0 and quarantined_first.fixed == 2.0


def test_costs_add_up_without_the_steps_that_have_no_rate():
    total = add_costs([Cost(4.0, 1.0, 1.5, 2), Cost(3.0, 3.0, None, 0)])
    assert total == Cost(wall=7.0, fixed=4.0, per_image=1.5, images=2) and total.lost == 0.0


def test_copies_of_the_masked_photographs_make_up_the_count(tmp_path):
    voc, masks = write_images(tmp_path, 6)
    masked = sorted({p.stem for p in (masks / MASK_DIR).glob("*/*.jpg")})
    assert masked == ["demo_000001", "demo_000002", "demo_000003", "demo_000004", "demo_copy_000001", "demo_copy_000002"]
    assert (voc / "JPEGImages" / "demo_copy_000002.jpg").read_bytes() == (voc / "JPEGImages" / "demo_000002.jpg").read_bytes()
    assert sorted(p.parent.name for p in (masks / MASK_DIR).glob("*/demo_copy_000001.jpg")) == ["person"]


def test_a_tiny_study_through_the_runner_is_timed_step_by_step(tmp_path):
    args = argparse.Namespace(images=5, shard_size=2, size=64, device="cpu")
    costs = run_study(tmp_path, ("ssdlite",), args)
    assert list(costs) == ["ingest", "deepgaze", "cam/ssdlite", "compare/ssdlite-deepgaze", "compare/ssdlite-human", "report"]
    for name, cost in costs.items():
        if name == "report":
            assert cost.per_image is None and cost.fixed == cost.wall > 0
            continue
        assert cost.images == 5 and cost.per_image > 0 and cost.fixed > 0
        assert cost.lost >= -1e-9  # shards after the first are never faster than the fastest
    rows = grouped(costs, ("ssdlite",))
    compare = dict(rows)["compare (2 comparisons)"]
    assert compare.wall == pytest.approx(costs["compare/ssdlite-deepgaze"].wall + costs["compare/ssdlite-human"].wall)
    total = add_costs(list(costs.values()))
    table = markdown_table(rows, ("ssdlite",), total, 898).splitlines()
    cam = costs["cam/ssdlite"]
    assert table[4] == f"| cam: ssdlite | {cam.per_image:.2f} ({cam.per_image:.2f} together) | {cam.fixed:.1f} ({cam.fixed:.0f} together) |"
    assert table[-1].startswith(f"898 images: about {total.fixed:.0f} s + 898 × {total.per_image:.2f} s")
    assert (tmp_path / "run" / "report" / "report.md").is_file()
