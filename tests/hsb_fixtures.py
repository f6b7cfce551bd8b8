"""A tiny synthetic HSB stand-in, written at test time: PNG images, human maps, fixation maps and a manifest.

`per_class` images of each class, 48x64, each with a drawn object; its map is a bright disc on
the object and its fixation map has a few fixated pixels there. The manifest (CSV or JSON) names
the files relative to the folder, as `ingest --format hsb` expects.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HEIGHT, WIDTH = 48, 64


def write_hsb(root: Path, classes: tuple[str, ...] = ("dog", "cat"), per_class: int = 3, manifest: str = "hsb.csv") -> Path:
    """Write the stand-in into `root` (created); returns `root`."""
    rng = np.random.default_rng(0)
    for folder in ("images", "maps", "fixations"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for c, label in enumerate(classes):
        for i in range(per_class):
            name = f"{label}_{i}"
            x, y = int(rng.integers(8, WIDTH - 24)), int(rng.integers(8, HEIGHT - 24))
            picture = Image.new("RGB", (WIDTH, HEIGHT), (40 + 30 * c, 90, 60))
            ImageDraw.Draw(picture).rectangle((x, y, x + 16, y + 16), fill=(200, 60 + 50 * i, 40))
            picture.save(root / "images" / f"{name}.png")
            saliency = Image.new("L", (WIDTH, HEIGHT), 0)
            ImageDraw.Draw(saliency).ellipse((x, y, x + 16, y + 16), fill=255)
            saliency.save(root / "maps" / f"{name}.png")
            fixations = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
            fixations[y + 4 + rng.integers(0, 8, 4), x + 4 + rng.integers(0, 8, 4)] = 1
            Image.fromarray(fixations).save(root / "fixations" / f"{name}.png")
            rows.append({"image": f"images/{name}.png", "label": label, "map": f"maps/{name}.png", "fixations": f"fixations/{name}.png"})
    if manifest.endswith(".json"):
        (root / manifest).write_text(json.dumps(rows))
    else:
        with open(root / manifest, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "label", "map", "fixations"])
            writer.writeheader()
            writer.writerows(rows)
    return root
