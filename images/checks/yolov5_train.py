"""YOLOv5 offline, as the learner: YOLOv5s built from its YAML trains one epoch on a tiny
dataset made on the spot, detect.py runs on a bundled image, and export.py's ONNX model
gives under onnxruntime what torch gives. Runs land in the lab's shared folder."""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import yolov5
from tiny_boxes import make
from yolov5 import detect, export, train
from yolov5.models.experimental import attempt_load

pkg = Path(yolov5.__file__).parent
root = Path(os.environ["LAB_ULTRALYTICS"]) / "yolov5"
data = make(root / "datasets" / "labctl-check", 128)  # coloured boxes on noise

runs = root / "runs"
train.run(data=str(data), cfg=str(pkg / "models" / "yolov5s.yaml"), weights="",
          epochs=1, imgsz=128, batch_size=4, workers=0, device="cpu", project=str(runs),
          name="labctl-check", exist_ok=True)
best = runs / "labctl-check" / "weights" / "best.pt"
assert best.is_file(), sorted(p.name for p in (runs / "labctl-check").rglob("*"))

detect.run(weights=str(best), source=str(pkg / "data" / "images" / "bus.jpg"), imgsz=(320, 320),
           device="cpu", project=str(runs), name="labctl-detect", exist_ok=True)
assert (runs / "labctl-detect" / "bus.jpg").is_file()

export.run(weights=str(best), include=("onnx",), imgsz=(320, 320), device="cpu")
onnx_file = best.with_suffix(".onnx")
assert onnx_file.is_file()
x = torch.rand(1, 3, 320, 320)
net = attempt_load(str(best), device=torch.device("cpu"), fuse=True).eval()
with torch.no_grad():
    want = net(x)[0].numpy()
session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
err = float(np.max(np.abs(got - want)))
print(f"yolov5 {yolov5.__version__}: onnxruntime vs torch, max abs difference {err:.2e}")
np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
print("YOLOv5 check passed; runs in", runs)
