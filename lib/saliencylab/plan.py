"""Up-front checks of a whole pipeline plan, so that a mistake fails in seconds with nothing written.

A pipeline command (`study`, `augmentation-study`, ...) builds its steps (lib/saliencylab/pipeline.py)
and then calls, before running any step:

    overrides = split_sets(parse_sets(set_), stages_of(steps_for_names))   # --set stage.key=value
    steps = build the steps with overrides ...
    configs = check_plan(steps, describe, externals)

`describe(stage)` gives a `StageParams` for a stage (the job layer builds it from the stage's
`Job`: `jobs.common.stage_params`); this module never imports job modules. `check_plan` resolves
every step's parameters into its config (unknown keys and bad values refused), checks fields with
a declared set of values (cam's detector), checks every weights reference (file, `s3://` object,
torchvision cache entry, finetune artifact; nothing is loaded) and that every external input
exists. Every "unknown name" message lists the valid names with a close-match suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from saliencylab.config import resolve_config
from saliencylab.pipeline import Step
from saliencylab.storage import open_storage


@dataclass(frozen=True)
class StageParams:
    """What the plan check needs to know about a stage's parameters.

    Attributes:
        config_cls: the stage's frozen config dataclass.
        choices: field name -> its valid values, for `str` fields whose values a registry holds.
        references: names of fields that hold a weights spec (see `saliencylab.weights`).
    """

    config_cls: type
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    references: tuple[str, ...] = ()


def unknown_name(what: str, name: str, valid: Iterable[str]) -> str:
    """`unknown <what> 'name'; did you mean 'x'? valid: [...]` (the suggestion only when one is close)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {what} {name!r}{hint} valid: {valid}"


def split_sets(sets: Mapping[str, str], stages: Sequence[str]) -> dict[str, dict[str, str]]:
    """`--set stage.key=value` pairs as {stage: {key: value}}; keys are checked later by `check_plan`.

    Raises:
        ValueError: a pair without `stage.` (e.g. `size=256`) or with a stage that no step of the
            pipeline runs (e.g. `ingset.size=256`); the message lists the pipeline's stages.
    """
    out: dict[str, dict[str, str]] = {}
    for key, value in sets.items():
        stage, dot, name = key.partition(".")
        if not dot or not name:
            raise ValueError(f"--set {key}={value}: expected <stage>.<key>=<value>, e.g. ingest.size=256; stages: {list(stages)}")
        if stage not in stages:
            raise ValueError(f"--set {key}={value}: " + unknown_name("stage", stage, stages))
        out.setdefault(stage, {})[name] = value
    return out


def _step_config(step: Step, params: StageParams) -> Any:
    names = [f.name for f in dataclasses.fields(params.config_cls)]
    for key in step.params:
        if key not in names:
            raise ValueError(f"step {step.name}: " + unknown_name(f"{step.stage} parameter", key, names))
    try:
        config = resolve_config(params.config_cls, step.params)
    except ValueError as e:
        raise ValueError(f"step {step.name} ({step.stage}): {e}") from None
    for name, valid in params.choices.items():
        value = getattr(config, name)
        if value not in valid:
            raise ValueError(f"step {step.name}: " + unknown_name(f"{step.stage}.{name}", value, valid))
    return config


def _check_external(name: str, uri: str) -> None:
    storage = open_storage(uri)
    if not storage.list():
        raise FileNotFoundError(f"--{name} {uri}: no such folder, or it holds no files")


def check_plan(
    steps: Sequence[Step],
    describe: Callable[[str], StageParams],
    externals: Mapping[str, str],
    check_weights: Callable[[str], None] | None = None,
) -> tuple[Any, ...]:
    """Resolve and check every step of a pipeline before any of them runs; returns their configs.

    Args:
        steps: the pipeline, in order.
        describe: stage name -> its StageParams.
        externals: `@name` inputs -> URI ("" or absent = not given; such inputs are optional).
        check_weights: checks one weights spec (default `saliencylab.weights.check_weights`).

    Returns:
        The resolved config of each step, in order.

    Raises:
        ValueError: an unknown parameter or value (with the valid names and a suggestion).
        FileNotFoundError: a missing weights file or cache entry, or a missing external input.
    """
    if check_weights is None:
        from saliencylab.weights import check_weights  # imports torch; only a real plan needs it
    configs = []
    for step in steps:
        params = describe(step.stage)
        config = _step_config(step, params)
        for name in params.references:
            if not getattr(config, name):  # empty: the stage's documented stand-in (e.g. a uniform centre bias)
                continue
            try:
                check_weights(getattr(config, name))
            except (ValueError, FileNotFoundError) as e:
                raise type(e)(f"step {step.name}: {step.stage}.{name}: {e}") from None
        configs.append(config)
    used = {source[1:] for step in steps for source in step.inputs.values() if source.startswith("@")}
    for name in sorted(used):
        if externals.get(name) and name != "run":
            _check_external(name, externals[name])
    return tuple(configs)
