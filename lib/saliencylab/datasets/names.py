"""Sample ids from raw file names: one rule for VOC ids, folder paths and mask files.

A sample key may hold only ASCII letters, digits, '_' and '-' (`saliencylab.shards.KEY_PATTERN`).
Every other character of a name (a space, a dot, '/', a non-ASCII letter, or a byte that is not
UTF-8, which Python lists as a lone surrogate) becomes '_'. Two names may map to one id; the caller
finds such clashes with `clashing_names` and refuses those items.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def sample_id(name: str) -> str:
    """The sample id of a file name without its extension (`sub/street scene.v2` -> `sub_street_scene_v2`).

    Raises ValueError if `name` is empty.
    """
    if not name:
        raise ValueError("an empty file name has no sample id")
    return _UNSAFE.sub("_", name)


def printable(name: str) -> str:
    """`name` with undecodable file-name bytes (lone surrogates) written as `\\xNN`, for messages and JSON."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def clashing_names(names: dict[str, list[str]]) -> dict[str, str]:
    """For ids that several names map to, a message naming all of them: {id: message}.

    Args:
        names: sample id -> the raw names (storage keys) that map to it.
    """
    return {
        i: f"files {[printable(n) for n in sorted(found)]} all map to the sample id {i!r}; rename one of them"
        for i, found in sorted(names.items())
        if len(found) > 1
    }
