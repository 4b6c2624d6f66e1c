"""A tiny detection dataset for the YOLO checks: one coloured box on noise per image,
in YOLO's label format, and its data.yaml. Made on the spot: no download."""

from pathlib import Path

import numpy as np
from PIL import Image


def make(folder: Path, size: int, n: int = 8) -> Path:
    """``n`` train and ``n`` val images of ``size`` pixels; returns the data.yaml."""
    box = size // 3
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            x0, y0 = rng.integers(8, size - box - 8, 2)
            img[y0:y0 + box, x0:x0 + box] = (230, 40, 40)
            Image.fromarray(img).save(folder / "images" / split / f"{i}.jpg")
            cx, cy, w = (x0 + box / 2) / size, (y0 + box / 2) / size, box / size
            (folder / "labels" / split / f"{i}.txt").write_text(
                f"0 {cx:.4f} {cy:.4f} {w:.4f} {w:.4f}\n")
    data = folder / "data.yaml"
    data.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n  0: box\n")
    return data
