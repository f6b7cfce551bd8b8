"""Shards: WebDataset layout, reproducible bytes, no pickle, unsafe members refused."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from saliencylab.shards import read_shard, write_shard


def _samples():
    rng = np.random.default_rng(0)
    return [
        {
            "__key__": f"id_{i}",
            "image.png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
            "cam.npy": rng.random((5, 7)).astype(np.float16),
            "meta.json": {"id": i, "boxes": [[0.5, 1, 2, 3]]},
            "note.txt": "hello",
        }
        for i in range(3)
    ]


def test_roundtrip_is_lossless_and_webdataset_shaped():
    samples = _samples()
    data = write_shard(samples)
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert names[:4] == ["id_0.cam.npy", "id_0.image.png", "id_0.meta.json", "id_0.note.txt"]
    back = list(read_shard(data))
    assert [s["__key__"] for s in back] == ["id_0", "id_1", "id_2"]
    for a, b in zip(samples, back):
        np.testing.assert_array_equal(a["image.png"], b["image.png"])
        assert b["cam.npy"].dtype == np.float16
        np.testing.assert_array_equal(a["cam.npy"], b["cam.npy"])
        assert a["meta.json"] == b["meta.json"] and b["note.txt"] == "hello"


def test_bytes_are_reproducible():
    assert write_shard(_samples()) == write_shard(_samples())


def test_bad_keys_and_duplicates_are_refused():
    with pytest.raises(ValueError, match="sample key"):
        write_shard([{"__key__": "a.b", "x.txt": "1"}])
    with pytest.raises(ValueError, match="twice"):
        write_shard([{"__key__": "a", "x.txt": "1"}, {"__key__": "a", "x.txt": "2"}])
    with pytest.raises(ValueError, match="no encoder"):
        write_shard([{"__key__": "a", "x.pkl": object()}])


def _tar_with(member: tarfile.TarInfo, payload: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member.size = len(payload) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["/abs/a.txt", "../a.txt", "x/../../a.txt"])
def test_traversal_members_are_refused(name):
    with pytest.raises(ValueError, match="refusing"):
        list(read_shard(_tar_with(tarfile.TarInfo(name)), "evil.tar"))


def test_links_are_refused():
    link = tarfile.TarInfo("a.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ValueError, match="regular files"):
        list(read_shard(_tar_with(link), "evil.tar"))


def test_truncated_shard_names_the_source():
    data = write_shard(_samples())
    with pytest.raises(ValueError, match="shard-000001.tar"):
        list(read_shard(data[: len(data) // 2 + 100], "shard-000001.tar"))
