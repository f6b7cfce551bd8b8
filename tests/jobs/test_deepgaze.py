"""The deepgaze stage on ingested demo data: densities, centre-bias template, bad weights and templates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact

from jobs.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def ingested(demo_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    assert runner.invoke(app, ["ingest", "-i", str(demo_dataset[0]), "-o", str(out), "--size", "64", "--limit", "3"]).exit_code == 0
    return out


def test_densities_with_a_template(ingested, tmp_path):
    ys, xs = np.mgrid[0:32, 0:32]
    template = -(((ys - 15.5) ** 2 + (xs - 15.5) ** 2) / 50.0)
    np.save(tmp_path / "cb.npy", template)
    result = runner.invoke(app, ["deepgaze", "-i", str(ingested), "-o", str(tmp_path / "dg"), "--centerbias", str(tmp_path / "cb.npy")])
    assert result.exit_code == 0, result.output
    artifact = open_artifact(str(tmp_path / "dg"))
    assert any("RANDOM weights" in w for w in artifact.manifest.warnings)
    assert not any("uniform prior" in w for w in artifact.manifest.warnings)
    for sample in artifact.samples(artifact.manifest.shards[0].name):
        log_density = torch.from_numpy(sample["log_density.npy"]).double()
        assert log_density.shape == (64, 64)
        assert torch.logsumexp(log_density.flatten(), 0).item() == pytest.approx(0.0, abs=1e-4)
        assert sample["density.npy"].sum() == pytest.approx(1.0, abs=1e-4)


def test_bad_template_and_bad_weights_fail_clearly(ingested, tmp_path):
    np.save(tmp_path / "cb3d.npy", np.zeros((2, 3, 4)))
    result = runner.invoke(app, ["deepgaze", "-i", str(ingested), "-o", str(tmp_path / "a"), "--centerbias", str(tmp_path / "cb3d.npy")])
    assert result.exit_code == 2 and "error:" in result.output
    result = runner.invoke(app, ["deepgaze", "-i", str(ingested), "-o", str(tmp_path / "b"), "--centerbias", str(tmp_path / "none.npy")])
    assert result.exit_code == 2 and "none.npy does not exist" in result.output
    torch.save({"models.0.unknown": torch.zeros(1)}, tmp_path / "w.pth")
    result = runner.invoke(app, ["deepgaze", "-i", str(ingested), "-o", str(tmp_path / "c"), "--weights", str(tmp_path / "w.pth")])
    assert result.exit_code == 2 and "models.0.unknown" in result.output
    assert not (tmp_path / "c" / "_manifest.json").exists()
