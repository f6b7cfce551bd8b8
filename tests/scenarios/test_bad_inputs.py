"""Bad and unusual inputs through the CLI: the decoding contract, and per-item quarantine in every stage.

Each bad input is built in tmp_path. A bad item stops the run by default with exit code 2, a
message naming the item and its file, no traceback and no manifest; with `--on-error skip` it
becomes a quarantine entry and the run completes. Unusual but readable inputs (16-bit, EXIF
orientation, alpha, palette, CMYK, boxes outside the image) are decoded by the contract and noted.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from saliencylab.artifacts import open_artifact
from saliencylab.runner import RunRequest, plan_tasks, run_stage
from saliencylab.storage import LocalStorage

from jobs.cli import app

runner = CliRunner()
SIDE = 48


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _photo(height: int = SIDE, width: int = SIDE, seed: int = 0) -> np.ndarray:
    """A uint8 (H, W, 3) image with structure (gradients plus noise), never constant."""
    ys, xs = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, 3))
    return (np.stack([xs * 200 // width, ys * 200 // height, (xs + ys) * 100 // (width + height)], -1) + noise).astype(np.uint8)


def _xml(width: int, height: int, boxes: list[tuple[int, int, int, int]]) -> str:
    objects = "".join(
        f"<object><name>cat</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1 in boxes
    )
    return f"<annotation><size><width>{width}</width><height>{height}</height></size>{objects}</annotation>"


def _voc(root: Path, images: dict[str, bytes], sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    """A VOC tree: JPEGImages/<name> with the given bytes, and an XML with one inside box per image.

    `sizes` gives the (width, height) an XML states, default the size Pillow reads from the file;
    a name mapped to None there gets no XML.
    """
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    sizes = sizes or {}
    for name, data in images.items():
        (root / "JPEGImages" / name).write_bytes(data)
        stem = name.rsplit(".", 1)[0]
        size = sizes[stem] if stem in sizes else Image.open(io.BytesIO(data)).size
        if size is not None:
            (root / "Annotations" / f"{stem}.xml").write_text(_xml(*size, [(2, 2, 10, 10)]))
    return root


def _encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit RGB pixels but that holds no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _samples(uri: Path) -> dict[str, dict]:
    artifact = open_artifact(str(uri))
    return {s["__key__"]: s for record in artifact.manifest.shards for s in artifact.samples(record.name)}


def _fails_then_quarantines(args: list[str], out: Path, key: str, *fragments: str):
    """The bad item stops the run (exit 2, key and fragments named, no manifest), then is quarantined."""
    result = _run(*args, "-o", str(out / "fail"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and " at 0x" not in result.output
    assert f"item {key!r}" in result.output and all(f in result.output for f in fragments), result.output
    assert not (out / "fail" / "_manifest.json").exists()
    result = _run(*args, "-o", str(out / "skip"), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    artifact = open_artifact(str(out / "skip"))
    (entry,) = artifact.manifest.quarantine
    assert entry.key == key and all(f in entry.error + entry.source for f in fragments), entry
    assert key not in artifact.key_index()
    return artifact


# --- the decoding contract -------------------------------------------------------------------------------


def test_unusual_encodings_are_decoded_by_the_contract_with_notes(tmp_path):
    gray16 = (np.arange(SIDE * SIDE, dtype=np.uint32).reshape(SIDE, SIDE) * 28).astype(np.uint16)  # 0..64484
    rgba = np.dstack([_photo(), np.full((SIDE, SIDE), 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # a transparent corner
    palette = Image.fromarray(_photo()).quantize(8)
    stored = Image.fromarray(_photo(SIDE, 2 * SIDE))  # 96 wide, 48 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated by 90 degrees: 48 wide, 96 high
    images = {
        "gray16.png": _encode(Image.fromarray(gray16)),
        "rgba.png": _encode(Image.fromarray(rgba)),
        "palette.png": _encode(palette),
        "cmyk.jpg": _encode(Image.fromarray(_photo()).convert("CMYK"), "JPEG", quality=95),
        "rotated.jpg": _encode(stored, "JPEG", quality=95, exif=exif),
    }
    voc = _voc(tmp_path / "voc", images, sizes={"rotated": (SIDE, 2 * SIDE)})  # the XML gives the displayed size
    result = _run("ingest", "-i", str(voc), "-o", str(tmp_path / "out"), "--resize", "none")
    assert result.exit_code == 0, result.output
    samples = _samples(tmp_path / "out")
    notes = {key: s["meta.json"]["decode_notes"] for key, s in samples.items()}

    image = samples["gray16"]["image.png"]
    assert notes["gray16"] == ["I;16 scaled to 8-bit (high byte)", "L converted to RGB"]
    np.testing.assert_array_equal(image[..., 0], (gray16 >> 8).astype(np.uint8))  # not clipped to white
    assert len(np.unique(image)) > 200 and (image == 255).mean() < 0.01

    image = samples["rgba"]["image.png"]
    assert notes["rgba"] == ["alpha composited on RGB (255, 255, 255)"]
    assert (image[:10, :10] == 255).all() and np.array_equal(image[20:, 20:], rgba[20:, 20:, :3])

    assert notes["palette"] == ["P converted to RGB"]
    np.testing.assert_array_equal(samples["palette"]["image.png"], np.asarray(palette.convert("RGB")))
    assert notes["cmyk"] == ["CMYK converted to RGB"] and samples["cmyk"]["meta.json"]["original_mode"] == "CMYK"

    assert notes["rotated"] == ["EXIF orientation 6 applied"]
    assert samples["rotated"]["image.png"].shape == (2 * SIDE, SIDE, 3)
    assert samples["rotated"]["meta.json"]["original_size"] == [2 * SIDE, SIDE]
    summary = open_artifact(str(tmp_path / "out")).manifest.summary
    assert summary["decode_notes"]["L converted to RGB"] == 1 and summary["decode_notes"]["EXIF orientation 6 applied"] == 1


def test_exif_rotated_image_with_an_xml_of_the_stored_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    image = _encode(Image.fromarray(_photo(SIDE, 2 * SIDE)), "JPEG", exif=exif)
    voc = _voc(tmp_path / "voc", {"ok.png": _encode(Image.fromarray(_photo())), "rot.jpg": image})  # XML: 96 x 48 as stored
    args = ["ingest", "-i", str(voc), "--size", "32"]
    _fails_then_quarantines(args, tmp_path, "rot", "rot.xml says 48x96 but the image is 96x48 as displayed (EXIF orientation 6")


@pytest.mark.parametrize(
    "width, height, max_pixels, message",
    [
        (SIDE, SIDE, "1000", f"{SIDE}x{SIDE} = {SIDE * SIDE} pixels is more than max_pixels=1000"),  # small is 400
        (10_000, 10_000, None, "100000000 pixels is more than max_pixels=89478485"),  # over Pillow's warning limit
        (20_000, 20_000, None, "Pillow refuses it as a decompression bomb"),  # over Pillow's hard limit
    ],
)
def test_decompression_bombs_are_bad_items(tmp_path, width, height, max_pixels, message):
    big = _encode(Image.fromarray(_photo())) if width == SIDE else _png_header_only(width, height)
    voc = _voc(tmp_path / "voc", {"big.png": big, "small.png": _encode(Image.fromarray(_photo(20, 20)))}, sizes={"big": (width, height)})
    args = ["ingest", "-i", str(voc), "--size", "32"] + (["--max-pixels", max_pixels] if max_pixels else [])
    artifact = _fails_then_quarantines(args, tmp_path, "big", "big.png is too large to decode", message)
    assert list(artifact.key_index()) == ["small"]


def test_boxes_are_clipped_and_degenerate_ones_dropped(tmp_path):
    voc = _voc(tmp_path / "voc", {"a.png": _encode(Image.fromarray(_photo())), "b.png": _encode(Image.fromarray(_photo()))})
    boxes = [(-5, 3, 20, 30), (10, 10, 200, 20), (60, 60, 90, 90), (20, 20, 10, 30), (5, 5, 15, 15)]
    (voc / "Annotations" / "a.xml").write_text(_xml(SIDE, SIDE, boxes))
    result = _run("ingest", "-i", str(voc), "-o", str(tmp_path / "out"), "--size", "32")
    assert result.exit_code == 0, result.output
    meta = _samples(tmp_path / "out")["a"]["meta.json"]
    assert meta["boxes"] == [[0.0, 2.0, 20.0, 30.0], [9.0, 9.0, 48.0, 20.0], [4.0, 4.0, 15.0, 15.0]]
    assert meta["labels"] == ["cat"] * 3 and meta["boxes_clipped"] == 2 and meta["boxes_dropped"] == 2
    summary = open_artifact(str(tmp_path / "out")).manifest.summary
    assert summary["boxes_clipped"] == 2 and summary["boxes_dropped"] == 2 and summary["samples"] == 2


def test_image_without_annotation_is_counted_and_warned_about(tmp_path):
    images = {n: _encode(Image.fromarray(_photo())) for n in ("a.png", "b.png", "c.png")}
    voc = _voc(tmp_path / "voc", images, sizes={"b": None})
    result = _run("ingest", "-i", str(voc), "-o", str(tmp_path / "out"), "--size", "32")
    assert result.exit_code == 0 and "1 of 3 VOC images have no annotation XML" in result.output
    manifest = open_artifact(str(tmp_path / "out")).manifest
    assert manifest.summary["unannotated"] == 1 and any("['b']" in w for w in manifest.warnings)
    meta = _samples(tmp_path / "out")["b"]["meta.json"]
    assert meta["annotated"] is False and meta["boxes"] == []


# --- masks ---------------------------------------------------------------------------------------------


def _masks(root: Path, masks: dict[str, np.ndarray]) -> Path:
    for relative, mask in masks.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / relative)
    return root


def test_mask_of_another_aspect_ratio_is_a_bad_item(tmp_path):
    voc = _voc(tmp_path / "voc", {"a.png": _encode(Image.fromarray(_photo())), "b.png": _encode(Image.fromarray(_photo()))})
    blob = _photo(SIDE, SIDE)[..., 0]
    masks = _masks(
        tmp_path / "masks",
        {"human_attention_mask/cat/a.png": blob[::2, ::2], "human_attention_mask/cat/b.png": blob[:, : SIDE // 2]},  # b: 2:1
    )
    args = ["ingest", "-i", str(voc), "-i", str(masks), "--size", "32"]
    artifact = _fails_then_quarantines(args, tmp_path, "b", "cat/b.png", "aspect ratios differ by 50.0%")
    assert artifact.lookup(["a"])["a"]["mask.png"].shape == (32, 32)  # same aspect ratio, other size: resized


def test_masks_in_a_wrong_layout_are_refused_naming_the_layout(tmp_path):
    voc = _voc(tmp_path / "voc", {"a.png": _encode(Image.fromarray(_photo()))})
    masks = _masks(tmp_path / "masks", {"cat/a.png": _photo()[..., 0]})  # no human_attention_mask/ folder
    for extra in ([], ["--on-error", "skip"]):
        result = _run("ingest", "-i", str(voc), "-i", str(masks), "-o", str(tmp_path / "out"), *extra)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "matches no image" in result.output and "human_attention_mask/<class>/<id>{.jpg,.jpeg,.png}" in result.output
        assert "cat/a.png" in result.output
    _masks(masks, {"human_attention_mask/cat/zzz.png": _photo()[..., 0]})  # right layout, wrong ids
    result = _run("ingest", "-i", str(voc), "-i", str(masks), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "its masks are for ids ['zzz']" in result.output and "e.g. ['a']" in result.output


# --- sample keys ---------------------------------------------------------------------------------------


def test_unsafe_file_names_become_safe_keys_the_same_way_for_voc_and_folders(tmp_path):
    data = _encode(Image.fromarray(_photo()))
    voc = _voc(tmp_path / "voc", {"img 01.png": data, "ok.png": data})
    os.makedirs(tmp_path / "voc" / "JPEGImages", exist_ok=True)
    with open(os.fsencode(tmp_path / "voc" / "JPEGImages") + b"/caf\xe9.png", "wb") as f:  # not UTF-8
        f.write(data)
    with open(os.fsencode(tmp_path / "voc" / "Annotations") + b"/caf\xe9.xml", "wb") as f:
        f.write(_xml(SIDE, SIDE, [(2, 2, 10, 10)]).encode())
    result = _run("ingest", "-i", str(voc), "-o", str(tmp_path / "voc-out"), "--size", "32")
    assert result.exit_code == 0, result.output
    samples = _samples(tmp_path / "voc-out")
    assert sorted(samples) == ["caf_", "img_01", "ok"]
    assert samples["caf_"]["meta.json"]["source"] == "JPEGImages/caf\\xe9.png" and samples["caf_"]["meta.json"]["boxes"]
    assert samples["img_01"]["meta.json"]["annotated"]

    result = _run("ingest", "-i", str(voc / "JPEGImages"), "-o", str(tmp_path / "folder-out"), "--format", "folder", "--size", "32")
    assert result.exit_code == 0, result.output
    assert sorted(_samples(tmp_path / "folder-out")) == ["caf_", "img_01", "ok"]


def test_file_names_that_map_to_one_key_are_a_bad_item(tmp_path):
    data = _encode(Image.fromarray(_photo()))
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("a b.png", "a_b.png", "c.png"):
        (folder / name).write_bytes(data)
    args = ["ingest", "-i", str(folder), "--format", "folder", "--size", "32"]
    artifact = _fails_then_quarantines(args, tmp_path, "a_b", "files ['a b.png', 'a_b.png'] all map to the sample id 'a_b'")
    assert list(artifact.key_index()) == ["c"]


def test_quarantine_messages_are_the_same_in_identical_runs(tmp_path):
    voc = _voc(tmp_path / "voc", {"ok.png": _encode(Image.fromarray(_photo()))})
    (voc / "JPEGImages" / "junk.jpg").write_bytes(b"not an image at all")
    manifests = []
    for out in ("one", "two"):
        assert _run("ingest", "-i", str(voc), "-o", str(tmp_path / out), "--size", "32", "--on-error", "skip").exit_code == 0
        manifests.append((tmp_path / out / "_manifest.json").read_bytes())
    assert manifests[0] == manifests[1] and b"0x" not in manifests[0]
    assert b"junk.jpg is not a readable image: not a format Pillow recognises" in manifests[0]


# --- compare and deepgaze ------------------------------------------------------------------------------


def _map_artifact(path: Path, maps: dict[str, np.ndarray], stage: str, field: str) -> None:
    request = RunRequest(stage, "1", {}, {}, plan_tasks(sorted(maps), 2))
    run_stage(LocalStorage(path), request, lambda task, policy: [{"__key__": k, field: maps[k]} for k in task.items])


@pytest.mark.parametrize("side", ["pred", "target"])
def test_compare_quarantines_a_nan_map_naming_key_and_shard(tmp_path, side):
    rng = np.random.default_rng(0)
    maps = {k: rng.random((16, 16)).astype(np.float32) for k in ("k0", "k1", "k2")}
    bad = dict(maps)
    bad["k1"] = maps["k1"].copy()
    bad["k1"][3, 4] = np.nan if side == "pred" else np.inf
    _map_artifact(tmp_path / "pred", bad if side == "pred" else maps, "cam", "cam.npy")
    _map_artifact(tmp_path / "target", bad if side == "target" else maps, "deepgaze", "density.npy")
    args = ["compare", "-i", f"pred={tmp_path / 'pred'}", "-i", f"target={tmp_path / 'target'}", "--bootstrap", "20"]
    shard = f"{tmp_path / side}/shard-000000.tar"
    artifact = _fails_then_quarantines(args, tmp_path, "k1", shard, "has 1 NaN or inf value(s) of 256")
    assert artifact.manifest.summary["pairs"] == 2


def test_deepgaze_quarantines_an_all_black_image_not_its_batch(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_photo(64, 64)).save(folder / "light.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "black.png")
    assert _run("ingest", "-i", str(folder), "-o", str(tmp_path / "ingest"), "--format", "folder", "--size", "64").exit_code == 0
    args = ["deepgaze", "-i", str(tmp_path / "ingest"), "--batch-size", "2"]
    shard = f"{tmp_path / 'ingest'}/shard-000000.tar"
    artifact = _fails_then_quarantines(args, tmp_path, "black", shard, "image is black or [0, 1]-scaled")
    (sample,) = artifact.lookup(["light"]).values()
    assert sample["density.npy"].shape == (64, 64) and sample["density.npy"].sum() == pytest.approx(1.0, abs=1e-4)
