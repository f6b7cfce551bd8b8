"""One HSI training unit against storage: a killed run resumes from its checkpoint to the same result; wrong weights name keys.

Random-weight CLIP at 32 px with the decoder trained (CLIP frozen), on a synthetic HSB stand-in.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.hsi.model import HSISpec, build_hsi_model
from saliencylab.storage import open_storage
from saliencylab.training.checkpoint import LATEST_KEY, Position, checkpoint_position, save_checkpoint
from saliencylab.training.hsi_session import LAST, UnitPlan, curve_key, run_unit

from jobs.cli import app
from tests.hsb_fixtures import write_hsb

SPEC = HSISpec(image_size=32, decoder_channels=16)  # u5 is 1x1 at 32 px: the cheapest grid the model takes


class Killed(Exception):
    """Stands for the process dying after a step (its checkpoint already written)."""


@pytest.fixture(scope="module")
def hsb(tmp_path_factory):
    root = tmp_path_factory.mktemp("hsb")
    result = CliRunner().invoke(app, ["ingest", "--format", "hsb", "-i", str(write_hsb(root / "raw", per_class=2)), "-o", str(root / "art")])
    assert result.exit_code == 0, result.output
    return str(root / "art")


def _plan(hsb: str, out, **changes) -> UnitPlan:
    keys = sorted(k for s in open_artifact(hsb).manifest.shards for k in s.keys)
    plan = UnitPlan(
        unit="fold-0", run="test-run", output_uri=str(out), train_uri=hsb, val_uri=hsb, train_keys=tuple(keys[:3]),
        val_keys=tuple(keys[3:]), spec=SPEC, start=None, clip_start=None, epochs=2, lr=1e-3, decay_epoch=1,
        decay_factor=0.1, batch_size=1, loss_weights=(1.0, -1.0, -1.0), trainable="decoder", keep_best=False,
        label_field="label", shuffle_buffer=10, checkpoint_every=1, seed=0, device="cpu",
    )  # fmt: skip
    return replace(plan, **changes)


def _kill_after(steps: int):
    def on_record(record):
        if record["step"] == steps:
            raise Killed

    return on_record


def test_a_killed_unit_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_one_does(hsb, tmp_path):
    whole = run_unit(_plan(hsb, tmp_path / "whole"))
    assert [e["epoch"] for e in whole] == [1, 2] and [e["lr"] for e in whole] == [1e-3, pytest.approx(1e-4)]
    plan = _plan(hsb, tmp_path / "killed")
    with pytest.raises(Killed):
        run_unit(plan, on_record=_kill_after(5))  # 3 steps per epoch: killed at step 2 of epoch 2, before its checkpoint
    unit = open_storage(plan.output_uri).child("fold-0")
    position = checkpoint_position(unit, "test-run")
    assert (position.epoch, position.iteration, position.global_step) == (1, 1, 4)
    seen = []
    resumed = run_unit(plan, on_record=seen.append)
    assert [r["step"] for r in seen] == [5, 6]  # only the steps after the last checkpoint ran again
    assert resumed == whole  # losses, validation losses and the best-epoch flags, epoch 1 read back
    a, b = load_file(str(tmp_path / "whole" / "fold-0" / LAST)), load_file(str(tmp_path / "killed" / "fold-0" / LAST))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curves = [json.loads(unit.read_bytes(curve_key(e))) for e in range(2)]
    assert [r["step"] for c in curves for r in c["records"]] == [1, 2, 3, 4, 5, 6]


def test_start_weights_of_another_model_name_the_keys(hsb, tmp_path):
    other = build_hsi_model(replace(SPEC, decoder_channels=8)).state_dict()
    with pytest.raises(ValueError, match=r"decoder\.conv3\.weight: checkpoint \(8, 4097, 3, 3\), model \(16, 4097, 3, 3\)"):
        run_unit(_plan(hsb, tmp_path, start=other))


def test_a_checkpoint_of_another_decoder_names_the_keys(hsb, tmp_path):
    plan = _plan(hsb, tmp_path)
    unit = open_storage(plan.output_uri).child(plan.unit)
    stranger = torch.nn.Conv2d(3, 1, 1)
    save_checkpoint(unit, plan.run, Position(0, 1, 1), stranger, torch.optim.Adam(stranger.parameters()), [torch.get_rng_state()], [])
    assert unit.exists(LATEST_KEY)
    with pytest.raises(ValueError, match=r"missing keys \(4\):\n    conv3\.weight") as info:
        run_unit(plan)
    unexpected = str(info.value).split("unexpected keys (2):\n")[1].split()
    assert sorted(unexpected) == ["bias", "weight"]  # listed in the checkpoint's order, which safetensors does not fix
