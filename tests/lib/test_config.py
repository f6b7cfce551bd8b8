"""Config resolution: typed coercion, precedence, unknown keys refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from saliencylab.config import field, load_yaml_config, parse_sets, resolve_config


@dataclass(frozen=True)
class Example:
    size: int = field(512, "pixels")
    mode: Literal["a", "b"] = field("a", "mode")
    flag: bool = field(False, "flag")
    names: tuple[str, ...] = field(("x",), "names")
    scale: float | None = field(None, "optional")


def test_precedence_and_coercion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("size: 256\nmode: b\n")
    config = resolve_config(Example, {"size": 128, "flag": True}, load_yaml_config(path), parse_sets(["names=p,q", "scale=0.5"]))
    assert config == Example(size=256, mode="b", flag=True, names=("p", "q"), scale=0.5)


@pytest.mark.parametrize("layer, message", [({"nope": 1}, "unknown parameter 'nope'"), ({"mode": "c"}, "one of"), ({"size": "big"}, "int")])
def test_bad_values_are_named(layer, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(Example, layer)


def test_bad_set_syntax():
    with pytest.raises(ValueError, match="key=value"):
        parse_sets(["size"])
