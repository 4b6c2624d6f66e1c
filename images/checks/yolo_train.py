"""Ultralytics offline: a model built from its bundled YAML predicts on the bundled sample
images and trains one epoch on a tiny dataset generated on the spot; datasets, weights and
runs land in the lab's shared folders."""

import os
from pathlib import Path

import numpy as np
from PIL import Image
from ultralytics import YOLO, settings
from ultralytics.utils import ASSETS

root = Path(os.environ["LAB_ULTRALYTICS"])
assert Path(settings["datasets_dir"]) == root / "datasets", settings["datasets_dir"]
assert Path(settings["runs_dir"]) == root / "runs", settings["runs_dir"]
assert Path(settings["weights_dir"]) == root / "weights", settings["weights_dir"]

model = YOLO("yolov8n.yaml")  # architecture from the wheel, random weights: no download
results = model.predict([str(ASSETS / "bus.jpg"), str(ASSETS / "zidane.jpg")], imgsz=320,
                        device="cpu", verbose=False)
assert len(results) == 2 and results[0].orig_shape == (1080, 810), results[0].orig_shape

# A tiny detection dataset: coloured boxes on noise, YOLO label format.
data = root / "datasets" / "labctl-check"
rng = np.random.default_rng(0)
for split in ("train", "val"):
    (data / "images" / split).mkdir(parents=True, exist_ok=True)
    (data / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(8):
        img = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8)
        x0, y0 = rng.integers(8, 48, 2)
        img[y0:y0 + 32, x0:x0 + 32] = (230, 40, 40)
        Image.fromarray(img).save(data / "images" / split / f"{i}.jpg")
        cx, cy = (x0 + 16) / 96, (y0 + 16) / 96
        (data / "labels" / split / f"{i}.txt").write_text(f"0 {cx:.4f} {cy:.4f} 0.3333 0.3333\n")
(data / "data.yaml").write_text(
    f"path: {data}\ntrain: images/train\nval: images/val\nnames:\n  0: box\n")

model.train(data=str(data / "data.yaml"), epochs=1, imgsz=96, batch=4, workers=0,
            device="cpu", name="labctl-check", exist_ok=True, amp=False, plots=True)
run = root / "runs" / "detect" / "labctl-check"
assert (run / "weights" / "last.pt").is_file(), sorted(p.name for p in run.rglob("*"))
print("yolo check passed; run in", run)
