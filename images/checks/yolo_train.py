"""Ultralytics offline: a model built from its bundled YAML predicts on the bundled sample
images and trains one epoch on a tiny dataset generated on the spot; datasets, weights and
runs land in the lab's shared folders."""

import os
from pathlib import Path

from tiny_boxes import make
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

data = make(root / "datasets" / "labctl-check", 96)
model.train(data=str(data), epochs=1, imgsz=96, batch=4, workers=0,
            device="cpu", name="labctl-check", exist_ok=True, amp=False, plots=True)
run = root / "runs" / "detect" / "labctl-check"
assert (run / "weights" / "last.pt").is_file(), sorted(p.name for p in run.rglob("*"))
print("yolo check passed; run in", run)
