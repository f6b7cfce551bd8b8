"""`saliencylab render-cluster`: write the cluster files rendered from the stage registry, or diff them.

The text comes from `saliencylab.cluster.render_all`; this module only reads pyproject.toml for the
image's dependencies, and writes or compares files under the repository root.
"""

from __future__ import annotations

import difflib
import json
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from saliencylab.cam.names import DETECTOR_NAMES
from saliencylab.cluster import PINS_FILE, image_pins, render_all

GENERATED_DIRS = ("k8s/stages", "k8s/pipelines")  # wholly generated: a file there that is not rendered is stale


def render_files(root: Path) -> dict[str, str]:
    """Every generated file for the repository at `root`: {relative path: text}; images pinned by k8s/image-pins.json if present."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    pins_path = root / PINS_FILE
    pins = json.loads(pins_path.read_text()) if pins_path.is_file() else None
    return render_all(tuple(pyproject["project"]["dependencies"]), DETECTOR_NAMES, pins=pins)


def write_pins(root: Path, metadata_file: Path) -> None:
    """Write k8s/image-pins.json from the metadata file of `docker buildx bake --metadata-file` (make images)."""
    try:
        pins = image_pins(json.loads(metadata_file.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the bake metadata {metadata_file}: {e}") from None
    (root / PINS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (root / PINS_FILE).write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
    refs = ", ".join(f"{pin['newName']}:{pin['newTag'][:12]}@{pin['digest'][:19]}" for pin in pins.values())
    print(f"pinned {refs} in {PINS_FILE}", file=sys.stderr)


def stale_files(root: Path, files: dict[str, str]) -> list[str]:
    """Files in the generated folders that the registry no longer produces (e.g. a removed stage)."""
    return sorted(
        str(p.relative_to(root)) for d in GENERATED_DIRS for p in (root / d).glob("*") if str(p.relative_to(root)) not in files
    )


def differences(root: Path, files: dict[str, str]) -> list[str]:
    """Unified diffs between the files on disk and `files`, one entry per differing file."""
    diffs = []
    for rel, text in files.items():
        path = root / rel
        current = path.read_text() if path.exists() else ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True), f"{rel} (committed)", f"{rel} (rendered)")
            diffs.append("".join(diff) or f"{rel}: missing\n")
    diffs += [f"{rel}: stale, no stage renders it (delete it)\n" for rel in stale_files(root, files)]
    return diffs


def command(
    check: Annotated[bool, typer.Option("--check", help="Write nothing; fail with a diff if a committed file differs.")] = False,
    root: Annotated[Path, typer.Option("--root", help="Repository root (holds pyproject.toml).")] = Path("."),
    bake_metadata: Annotated[
        Optional[Path], typer.Option("--bake-metadata", help="Pin the images by the digests in this `docker buildx bake --metadata-file` output first.")
    ] = None,
) -> None:
    """(Re)write images/Dockerfile, docker-bake.hcl and k8s/ from the stage registry and the study pipeline."""
    if not (root / "pyproject.toml").is_file() or not (root / "lib" / "saliencylab" / "stages.py").is_file():
        print(f"error: {root.resolve()} is not the saliencylab repository root (use --root)", file=sys.stderr)
        raise typer.Exit(code=2)
    if bake_metadata is not None:
        if check:
            print("error: --bake-metadata writes k8s/image-pins.json; it cannot go with --check", file=sys.stderr)
            raise typer.Exit(code=2)
        try:
            write_pins(root, bake_metadata)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(code=2) from None
    files = render_files(root)
    if check:
        diffs = differences(root, files)
        if diffs:
            sys.stderr.write("".join(diffs))
            print(f"render-cluster: {len(diffs)} file(s) differ from the registry; run `make manifests`", file=sys.stderr)
            raise typer.Exit(code=1)
        print(f"render-cluster: {len(files)} files match the registry", file=sys.stderr)
        return
    for rel in stale_files(root, files):
        (root / rel).unlink()
        print(f"removed {rel}", file=sys.stderr)
    for rel, text in files.items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {rel}", file=sys.stderr)


if __name__ == "__main__":
    typer.run(command)
