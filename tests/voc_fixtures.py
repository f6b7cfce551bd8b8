"""Small VOC-layout datasets made from real photographs (scikit-image samples) for stage tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def make_voc(root: Path, count: int, side: int = 320) -> Path:
    """Write `count` JPEG crops of the sample photographs with one box each; return the VOC root."""
    source = Path(skimage.data.__file__).parent
    photos = [np.asarray(Image.open(source / name).convert("RGB")) for name in PHOTOS]
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i in range(count):
        photo = photos[i % len(photos)]
        y, x = (i * 7) % (photo.shape[0] - 200), (i * 13) % (photo.shape[1] - 200)
        crop = Image.fromarray(photo[y : y + 200, x : x + 200]).resize((side, side))
        crop.save(root / "JPEGImages" / f"img_{i:04d}.jpg", quality=90)
        (root / "Annotations" / f"img_{i:04d}.xml").write_text(
            f"<annotation><size><width>{side}</width><height>{side}</height><depth>3</depth></size>"
            f"<object><name>person</name><difficult>0</difficult><bndbox><xmin>10</xmin><ymin>20</ymin>"
            f"<xmax>{side - 10}</xmax><ymax>{side - 20}</ymax></bndbox></object></annotation>"
        )
    return root


def ingest_native(root: Path, count: int, side: int, shard_size: int = 4) -> str:
    """A training-set artifact: `make_voc` ingested at native size (`--resize none`); returns its URI."""
    from typer.testing import CliRunner

    from jobs.cli import app

    out = root / "native"
    args = ["ingest", "-i", str(make_voc(root / "voc", count, side=side)), "-o", str(out), "--resize", "none"]
    result = CliRunner().invoke(app, [*args, "--shard-size", str(shard_size)])
    if result.exit_code != 0:
        raise RuntimeError(f"ingest of the test VOC set failed: {result.output}")
    return str(out)
