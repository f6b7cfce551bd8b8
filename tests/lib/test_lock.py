"""The dependency lock images/constraints.txt: complete, within pyproject's ranges, and what the tests run."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from saliencylab.lock import read_constraints, render_constraints, runtime_pins

ROOT = Path(__file__).resolve().parents[2]
LOCK = read_constraints((ROOT / "images" / "constraints.txt").read_text())


def test_every_runtime_requirement_is_pinned_within_its_range():
    requirements = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in LOCK, f"{name} has no pin in images/constraints.txt: run `make lock`"
        assert requirement.specifier.contains(LOCK[name], prereleases=True), (
            f"pin {name}=={LOCK[name]} is outside pyproject's {requirement}: run `make lock`"
        )


def test_the_installed_environment_is_the_lock():
    # make setup installs with `-c images/constraints.txt`, so the tests run the images' versions
    installed = runtime_pins()
    assert installed == LOCK, {
        name: (installed.get(name), LOCK.get(name)) for name in set(installed) | set(LOCK) if installed.get(name) != LOCK.get(name)
    }


def test_constraints_round_trip_and_bad_lines_are_named():
    pins = {"numpy": "2.4.6", "torch": "2.14.1"}
    assert read_constraints(render_constraints(pins)) == pins
    with pytest.raises(ValueError, match=r"constraints line 2: 'numpy>=2' is not an exact pin"):
        read_constraints("torch==2.14.1\nnumpy>=2\n")
