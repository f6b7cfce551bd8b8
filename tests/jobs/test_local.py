"""The local runner: steps run in order, each with the progress reporter the caller makes for it."""

from __future__ import annotations

from typing import Any

from saliencylab.pipeline import Step
from saliencylab.progress import Progress

from jobs.local import run_steps


class Recorder(Progress):
    """Notes the calls the runner makes on a step's reporter."""

    def __init__(self, step: Step):
        super().__init__(step.stage, ())
        self.step, self.calls = step, []

    def skip(self, shards) -> None:
        self.calls.append(("skip", len(shards)))
        super().skip(shards)

    def shard_done(self, shard: str, samples: int, **fields: Any) -> None:
        self.calls.append((shard, samples))
        super().shard_done(shard, samples, **fields)


def test_each_step_gets_the_reporter_made_for_it(demo_dataset, tmp_path):
    voc, masks = demo_dataset
    steps = (
        Step("ingest", "ingest", {"images": "@images", "masks": "@masks"}, {"size": 32, "shard_size": 3, "split": "masked"}),
        Step("compare/masks", "compare", {"pred": "ingest", "target": "ingest"}, {"bootstrap": 10}),
    )
    made: list[Recorder] = []

    def reporter(step: Step) -> Recorder:
        made.append(Recorder(step))
        return made[-1]

    root = str(tmp_path / "run")
    manifests = run_steps(steps, root, {"images": str(voc), "masks": str(masks)}, progress=reporter)
    assert [r.step.name for r in made] == ["ingest", "compare/masks"]
    assert made[0].calls == [("skip", 0), ("shard-000000.tar", 3), ("shard-000001.tar", 1)]
    assert made[1].calls[0] == ("skip", 0) and sum(n for _, n in made[1].calls[1:]) == 4
    assert manifests["ingest"].num_samples == manifests["compare/masks"].num_samples == 4
