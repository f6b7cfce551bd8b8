"""Stage parameters: frozen dataclasses filled from defaults, a named preset, a YAML file and `--set`.

Precedence, lowest first: the dataclass defaults, the preset, the YAML file, `--set key=value`.
Every field of a config dataclass carries `metadata={"help": ...}` with its unit and source, which
becomes the `--help` text of the stage. Unknown keys are refused with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml


def field(default: Any, help: str) -> Any:
    """A config field with its help text (unit, range, source)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    return dataclasses.field(default=default, metadata={"help": help})


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Convert `value` (from YAML or a `--set` string) to the declared type `kind` of field `name`."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(name, options[0], value)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        args = typing.get_args(kind)
        item = args[0] if args else str
        return tuple(_coerce(name, item, v) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if kind in (int, float, str):
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be {kind.__name__}, got {value!r}") from None
    return value


def parse_sets(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse `key=value` strings from `--set`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def resolve_config(cls: type, *layers: dict[str, Any]) -> Any:
    """Build `cls` from its defaults overridden by `layers` in order; values are type-checked."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in names:
                raise ValueError(f"unknown parameter {key!r} for {cls.__name__}; valid: {sorted(names)}")
            values[key] = _coerce(key, hints[key], value)
    return cls(**values)


def load_yaml_config(path: str | Path | None) -> dict[str, Any]:
    """Read a YAML mapping of parameters; an empty or absent path gives {}."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read config file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of parameter: value")
    return data


def config_to_dict(config: Any) -> dict[str, Any]:
    """The resolved parameters as JSON-ready values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
