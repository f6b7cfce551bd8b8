"""The top-level command group that lists every registered stage without importing its job module.

`saliencylab --help` shows each stage's one-line summary from the registry (lib/saliencylab/stages.py);
a stage's job module (and torch with it) is imported only when that stage's command runs or its
`--help` is asked, so the list answers in well under a second.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
import typer
from typer.core import TyperCommand, TyperGroup

from saliencylab.stages import STAGES, get_stage


class _PendingStage(TyperCommand):
    """Stands in for a stage's command in the listing until the command is resolved."""


def _stage_click_command(name: str, markup_mode: Any) -> click.Command:
    """The click command of stage `name`, built from its job module's `JOB` (imports the module)."""
    from jobs.common import stage_command

    spec = get_stage(name)
    single = typer.Typer(rich_markup_mode=markup_mode)
    single.command(name, help=spec.summary)(stage_command(importlib.import_module(spec.module).JOB))
    return typer.main.get_command(single)


class StageGroup(TyperGroup):
    """A TyperGroup whose stage sub-commands are loaded on first use; pass it as `typer.Typer(cls=StageGroup)`."""

    def __init__(self, *, commands: dict[str, click.Command] | None = None, **kwargs: Any) -> None:
        pending = {s.name: _PendingStage(name=s.name, help=s.summary, callback=None) for s in STAGES}
        super().__init__(commands={**pending, **(commands or {})}, **kwargs)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _PendingStage):
            command = self.commands[name] = _stage_click_command(name, self.rich_markup_mode)
        return name, command, rest
