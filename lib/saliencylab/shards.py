"""WebDataset-compatible tar shards: encode samples to bytes and decode them back, without pickle.

A sample is a dict with a `__key__` and one entry per field; the field name ends with the
extension that fixes its encoding (`image.png`, `cam.npy`, `meta.json`). In the tar, the sample
becomes one member per field named `<key>.<field>`, members of one sample adjacent, which is the
layout webdataset reads. The bytes are reproducible: fixed mtime, owner and mode, and encoders
without timestamps, so the same samples always give the same shard (and the same sha256).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from PIL import Image

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")
JPEG_QUALITY = 95  # only for fields that ask for .jpg; images that feed metrics are stored as PNG


def check_sample_key(key: str) -> str:
    """Return `key` if it is a valid sample key (letters, digits, '_' and '-'), else raise ValueError."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} must match {KEY_PATTERN.pattern} (no dots, slashes or spaces)")
    return key


def encode_field(field: str, value: Any) -> bytes:
    """Encode one field by its extension: png/jpg (uint8 HxW or HxWx3 array), npy, json, txt; bytes pass through."""
    if isinstance(value, bytes):
        return value
    ext = field.rsplit(".", 1)[-1].lower()
    if ext in ("png", "jpg", "jpeg"):
        array = np.asarray(value)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(f"field {field!r}: images are uint8 HxW or HxWx3 arrays, got {array.dtype} {array.shape}")
        buffer = io.BytesIO()
        if ext == "png":
            Image.fromarray(array).save(buffer, format="PNG", compress_level=6)
        else:
            Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()
    if ext == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        return buffer.getvalue()
    if ext == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    if ext == "txt":
        return str(value).encode()
    raise ValueError(f"field {field!r}: no encoder for extension {ext!r} (use png, jpg, npy, json or txt)")


def decode_field(field: str, data: bytes) -> Any:
    """Decode one field by its extension; the inverse of `encode_field` (images come back as uint8 arrays)."""
    ext = field.rsplit(".", 1)[-1].lower()
    if ext in ("png", "jpg", "jpeg"):
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image)
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if ext == "json":
        return json.loads(data)
    if ext == "txt":
        return data.decode()
    return data


def write_shard(samples: Iterable[dict[str, Any]]) -> bytes:
    """Return the tar bytes of `samples` (each a dict with `__key__` and encoded or encodable fields)."""
    buffer = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            key = check_sample_key(sample["__key__"])
            if key in seen:
                raise ValueError(f"sample key {key!r} appears twice in one shard")
            seen.add(key)
            for field in sorted(f for f in sample if f != "__key__"):
                data = encode_field(field, sample[field])
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _check_member(member: tarfile.TarInfo, source: str) -> None:
    name = member.name
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
        raise ValueError(f"{source}: refusing tar member {name!r} (absolute path or '..' segment)")
    if not member.isfile():
        raise ValueError(f"{source}: refusing tar member {name!r}: only regular files are allowed")


def read_shard(data: bytes, source: str = "shard", decode: bool = True) -> Iterator[dict[str, Any]]:
    """Yield the samples of a shard, grouping adjacent members by key; `source` names the shard in errors.

    Raises ValueError on members with absolute paths, `..`, links or devices, and on a truncated tar.
    """
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except tarfile.TarError as e:
        raise ValueError(f"{source} is not a readable tar shard: {e}") from e
    current: dict[str, Any] | None = None
    try:
        for member in tar:
            _check_member(member, source)
            base = member.name.rsplit("/", 1)[-1]
            key, _, field = base.partition(".")
            if not field:
                raise ValueError(f"{source}: member {member.name!r} has no field extension")
            payload = tar.extractfile(member).read()
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            current[field] = decode_field(field, payload) if decode else payload
        end_marker = data[tar.offset : tar.offset + 2 * tarfile.BLOCKSIZE]
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{source} is truncated or corrupt: {e}") from e
    if len(end_marker) < 2 * tarfile.BLOCKSIZE or any(end_marker):
        # A tar cut at a member boundary reads like a shorter archive; only the end marker tells.
        raise ValueError(f"{source} is truncated: it has no end-of-archive marker")
    if current is not None:
        yield current


def shard_name(index: int) -> str:
    """The file name of output shard `index` (0-based)."""
    return f"shard-{index:06d}.tar"
