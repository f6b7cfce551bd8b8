"""What every stage shares: the `Job` declaration, input parsing, execution and the typer command factory.

A job module declares a `Job`: its registry entry, config dataclass, presets, a `prepare` function
that reads input manifests and plans shard tasks, and optionally a `finalize` run at merge time.
`stage_command(job)` turns it into a typer command with the stage contract's options
(--input, --output, --shard, --config, --preset, --set, --force, --on-error, --verify,
--allow-mixed-code) plus one option per config field, so `--help` documents every parameter.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import typer

from saliencylab.config import config_to_dict, load_yaml_config, parse_sets, resolve_config
from saliencylab.manifests import MANIFEST_KEY, Manifest
from saliencylab.progress import Progress
from saliencylab.runner import (
    ERROR_POLICIES,
    ErrorPolicy,
    FinalizeFn,
    ProcessFn,
    RunRequest,
    ShardSelection,
    ShardTask,
    StageError,
    check_error_policy,
    run_stage,
)
from saliencylab.plan import StageParams
from saliencylab.stages import StageSpec, get_stage
from saliencylab.storage import StorageError, open_storage

USER_ERRORS = (ValueError, StageError, StorageError, FileNotFoundError)
ALLOW_MIXED_CODE_HELP = "Combine shards written by different code versions (recorded in the manifest)."


@dataclass(frozen=True)
class Prepared:
    """A planned run: digests of the inputs, the shard tasks, the per-shard work and warnings."""

    inputs: dict[str, dict[str, str]]
    tasks: tuple[ShardTask, ...]
    process: ProcessFn
    warnings: tuple[str, ...] = ()
    # a torchrun rank > 0 of a multi-process stage (finetune): it runs `process` for every task, in
    # step with rank 0, and writes nothing; rank 0 runs the stage contract alone
    follower: bool = False


@dataclass(frozen=True)
class Job:
    spec: StageSpec
    version: str  # bump when the stage's output for the same params changes
    config_cls: type
    prepare: Callable[[dict[str, str], Any], Prepared]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    finalize: FinalizeFn | None = None
    # prepare(inputs, config, output) also gets the output Storage, for stages that write files as
    # they go (finetune's checkpoints); shards and the manifest still go through the runner
    prepare_takes_output: bool = False
    # field name -> its valid values, for fields typed `str` whose values a registry holds (cam's
    # detector): listed in --help and checked by `saliencylab.plan` before a pipeline runs
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # fields holding a weights spec (saliencylab.weights), checked to exist before a pipeline runs
    references: tuple[str, ...] = ()


def stage_params(stage: str) -> StageParams:
    """What `saliencylab.plan.check_plan` needs of `stage`, from its job module's `JOB` (imports it)."""
    job = importlib.import_module(get_stage(stage).module).JOB
    return StageParams(job.config_cls, job.choices, job.references)


def parse_inputs(spec: StageSpec, values: list[str]) -> dict[str, str]:
    """Map `--input` values (`name=URI`, or bare URIs in declared order) to the stage's named inputs."""
    named: dict[str, str] = {}
    bare: list[str] = []
    for value in values:
        name, sep, uri = value.partition("=")
        if sep and name in spec.inputs:
            named[name] = uri
        else:
            bare.append(value)
    free = [n for n in spec.inputs if n not in named]
    if len(bare) > len(free):
        raise ValueError(f"{spec.name} takes inputs {list(spec.inputs)}; got too many: {values}")
    named.update(zip(free, bare))
    missing = [n for n in spec.inputs if n not in named and n not in spec.optional_inputs]
    if missing:
        raise ValueError(f"{spec.name} needs --input for {missing} (as name=URI or in the order {list(spec.inputs)})")
    return named


def build_config(job: Job, preset: str | None, config_file: str | None, sets: list[str], options: dict[str, Any]) -> Any:
    """Resolve the stage config: defaults < preset < YAML file < --set < explicit options."""
    if preset and preset not in job.presets:
        raise ValueError(f"unknown preset {preset!r} for {job.spec.name}; valid: {sorted(job.presets)}")
    layers = [job.presets.get(preset, {}) if preset else {}, load_yaml_config(config_file), parse_sets(sets)]
    layers.append({k: v for k, v in options.items() if v is not None})
    return resolve_config(job.config_cls, *layers)


def execute(
    job: Job,
    inputs: dict[str, str],
    output: str,
    config: Any,
    *,
    selection: ShardSelection = ShardSelection(),
    on_error: str = "fail",
    force: bool = False,
    verify: bool = False,
    allow_mixed_code: bool = False,
    progress: Progress | None = None,
    shown: set[str] | None = None,
) -> Manifest | None:
    """Plan and run one stage; returns its manifest, or None for a worker of a sharded run.

    The run-wide options are checked before anything is loaded or written. `shown`: warnings
    already printed by earlier steps of the same pipeline run (updated), printed again by none.
    """
    check_error_policy(on_error)
    out = open_storage(output)
    prepared = job.prepare(inputs, config, out) if job.prepare_takes_output else job.prepare(inputs, config)
    if prepared.follower:
        for task in prepared.tasks:
            prepared.process(task, ErrorPolicy(on_error, shard=task.name))
        return None
    shown = set() if shown is None else shown
    for warning in own_warnings(prepared):
        if warning not in shown:
            print(f"WARNING [{job.spec.name}]: {warning}", file=sys.stderr)
            shown.add(warning)
    request = RunRequest(
        stage=job.spec.name,
        stage_version=job.version,
        params=config_to_dict(config),
        inputs=prepared.inputs,
        tasks=prepared.tasks,
        warnings=prepared.warnings,
    )
    return run_stage(
        out,
        request,
        prepared.process,
        selection=selection,
        on_error=on_error,
        force=force,
        verify=verify,
        allow_mixed_code=allow_mixed_code,
        finalize=job.finalize,
        progress=progress,
    )


def own_warnings(prepared: Prepared) -> list[str]:
    """The warnings of `prepared` that its input artifacts do not already carry, each once, in order.

    Every warning still goes into the manifest; only the stage that raised it prints it, so a run
    shows, e.g., the SYNTHETIC-masks warning once (from ingest), not once per later stage.
    """
    inherited: set[str] = set()
    for spec in prepared.inputs.values():
        storage = open_storage(spec["uri"])
        if storage.exists(MANIFEST_KEY):
            inherited.update(Manifest.from_json(storage.read_bytes(MANIFEST_KEY), spec["uri"]).warnings)
    return [w for w in dict.fromkeys(prepared.warnings) if w not in inherited]


def fail(message: str) -> typer.Exit:
    """Print a user-facing error on stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code=2)


def _default_text(value: Any) -> str:
    """` [default: X]` in typer's style, or "" for an empty default (nothing to show)."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    elif isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    # typer's own style; the backslash keeps rich markup from reading it as a tag
    return f"  \\[default: {value}]" if value not in ("", None) else ""


def _option_kind(name: str, kind: Any, choices: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """The typer annotation and Option keywords for a config field of type `kind`.

    int, float and str fields become INTEGER, FLOAT and TEXT options, bools `--x/--no-x` flags,
    Literal fields (and fields with declared `choices`) list their values; tuples take A,B,...
    """
    flag = "--" + name.replace("_", "-")
    literal = typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else ()
    if kind is bool:
        return Optional[bool], {"param_decls": (f"{flag}/--no-{flag[2:]}",), "metavar": ""}
    if choices or literal:  # listed in the help; the config (or the registry) refuses other values with our message
        return Optional[str], {"param_decls": (flag,), "metavar": f"[{'|'.join(map(str, choices or literal))}]"}
    if typing.get_origin(kind) is tuple:
        return Optional[str], {"param_decls": (flag,), "metavar": "A,B,..."}
    metavar = {int: "INTEGER", float: "FLOAT"}.get(kind, "TEXT")
    return Optional[kind if kind in (int, float) else str], {"param_decls": (flag,), "metavar": metavar}


def _config_options(config_cls: type, choices: dict[str, tuple[str, ...]]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(config_cls)
    params = []
    for f in dataclasses.fields(config_cls):
        annotation, keywords = _option_kind(f.name, hints[f.name], choices.get(f.name, ()))
        help_text = f.metadata.get("help", "") + _default_text(f.default)
        option = typer.Option(*keywords.pop("param_decls"), help=help_text, show_default=False, rich_help_panel="Stage parameters", **keywords)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, option]))
    return params


def stage_command(job: Job) -> Callable[..., None]:
    """A typer command for `job` implementing the stage contract."""
    spec = job.spec
    contract = {
        "input": (list[str], typer.Option("--input", "-i", metavar="TEXT", help=f"Input URI(s): name=URI or bare, in order {list(spec.inputs)}.")),
        "output": (str, typer.Option("--output", "-o", metavar="TEXT", help="Output URI: a local folder, file:// or s3://bucket/prefix.")),
        "shard": (Optional[str], typer.Option("--shard", metavar="I/N", help="Handle only shards i of n (i/n); run `saliencylab merge` after.")),
        "config": (Optional[str], typer.Option("--config", metavar="FILE", help="YAML file of parameters.")),
        "preset": (Optional[str], typer.Option("--preset", metavar=f"[{'|'.join(sorted(job.presets))}]", help="Named parameter set.")),
        "set_": (list[str], typer.Option("--set", metavar="KEY=VALUE", help="Override a parameter: key=value (repeatable).")),
        "force": (bool, typer.Option("--force", metavar="", help="Replace an output written with other parameters.")),
        "on_error": (str, typer.Option("--on-error", metavar=f"[{'|'.join(ERROR_POLICIES)}]", help="fail: stop at a bad item; skip: quarantine it in the manifest.")),
        "verify": (bool, typer.Option("--verify", metavar="", help="Before calling a complete output complete, check every shard's sha256 too.")),
        "allow_mixed_code": (bool, typer.Option("--allow-mixed-code", metavar="", help=ALLOW_MIXED_CODE_HELP)),
    }
    defaults = {
        "input": [], "output": ..., "shard": None, "config": None, "preset": None, "set_": [],
        "force": False, "on_error": "fail", "verify": False, "allow_mixed_code": False,
    }  # fmt: skip
    if not job.presets:
        del contract["preset"]
    field_names = [f.name for f in dataclasses.fields(job.config_cls)]
    clash = set(field_names) & set(contract)
    if clash:
        raise TypeError(f"{job.config_cls.__name__} fields {clash} clash with the stage contract's options")

    def command(**kwargs: Any) -> None:
        options = {name: kwargs.pop(name) for name in field_names}
        try:
            config = build_config(job, kwargs.get("preset"), kwargs["config"], kwargs["set_"], options)
            manifest = execute(
                job,
                parse_inputs(spec, kwargs["input"]),
                kwargs["output"],
                config,
                selection=ShardSelection.parse(kwargs["shard"]),
                on_error=kwargs["on_error"],
                force=kwargs["force"],
                verify=kwargs["verify"],
                allow_mixed_code=kwargs["allow_mixed_code"],
            )
        except USER_ERRORS as e:
            raise fail(str(e)) from None
        if manifest is None and kwargs["shard"]:
            print(f"{spec.name}: this worker's shards are done; run `saliencylab merge --output {kwargs['output']}`", file=sys.stderr)
        elif manifest is None:
            print(f"{spec.name}: this torchrun process is done; rank 0 writes the output", file=sys.stderr)
        else:
            print(f"{spec.name}: {manifest.num_samples} samples, {len(manifest.quarantine)} quarantined -> {kwargs['output']}", file=sys.stderr)

    params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=Annotated[kind, option])
        for name, (kind, option) in contract.items()
    ] + _config_options(job.config_cls, job.choices)
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = f"{spec.summary}\n\n{inspect.getdoc(job.config_cls) or ''}"
    command.__name__ = spec.name.replace("-", "_")
    return command
