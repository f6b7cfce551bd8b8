"""Package attributes imported from their submodule on first use (PEP 562), so importing a package stays light.

The CLI's `--help` imports packages such as `saliencylab.cam` for a constant; their models import
torch, which costs seconds, so the packages hand those names out only when someone asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `name` from `package.<homes[name]>` when first read.

    Args:
        package: the package's dotted name (its `__name__`).
        homes: exported name -> the submodule (relative to `package`) that defines it.

    Returns:
        The function to assign to the package's `__getattr__`; it raises AttributeError for any
        name not in `homes`, as a module without one would.
    """

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
