"""Deployment offline: a YOLO model exported to ONNX by `yolo export` (no package is
installed at run time) gives, under onnxruntime, what torch gives."""

import os

import numpy as np
import onnxruntime as ort
import torch
from ultralytics import YOLO

assert os.environ.get("YOLO_AUTOINSTALL") == "false"
torch.manual_seed(0)
model = YOLO("yolov8n.yaml")  # random weights from the bundled YAML: no download
path = model.export(format="onnx", imgsz=320, device="cpu", simplify=True)
x = torch.rand(1, 3, 320, 320)
net = model.model.eval()
with torch.no_grad():
    want = net(x)[0].numpy()
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
assert got.shape == want.shape, (got.shape, want.shape)
err = float(np.max(np.abs(got - want)))
print(f"{path}: onnxruntime {ort.__version__} vs torch, max abs difference {err:.2e}")
np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
print("ONNX export check passed")
