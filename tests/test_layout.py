"""The source tree shows the architecture: every `saliencylab.x.y` import is the file
lib/saliencylab/x/y.py (or x/y/__init__.py), and imports go one way (jobs -> saliencylab, never back)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "saliencylab"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _sources() -> list[Path]:
    return [p for folder in ("lib", "jobs", "tests", "bench") for p in (ROOT / folder).rglob("*.py")]


def test_the_package_is_the_folder():
    assert not (ROOT / "lib" / "__init__.py").exists()
    assert (PACKAGE / "__init__.py").is_file()
    assert not (ROOT / "setup.py").exists()


def test_every_saliencylab_import_is_a_file_under_lib_saliencylab():
    unresolved = []
    for path in _sources():
        for name in _imports(path):
            if name != "saliencylab" and not name.startswith("saliencylab."):
                continue
            parts = name.split(".")[1:]
            module = PACKAGE.joinpath(*parts)
            if not (module.with_suffix(".py").is_file() or (module / "__init__.py").is_file() or not parts):
                unresolved.append(f"{path.relative_to(ROOT)}: {name}")
    assert not unresolved, unresolved


def test_the_package_never_imports_jobs_tests_or_bench():
    upward = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in {"jobs", "tests", "bench"}
    ]
    assert not upward, upward
