"""fastai and fastbook import; a tiny learner trains on synthetic data on the CPU and its
loss falls; FASTAI_HOME is the lab's shared cache."""

import os

import fastbook  # noqa: F401  (the book's helper package must import)
import torch
from fastai.data.core import DataLoaders
from fastai.data.external import fastai_cfg
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from fastai.vision.all import *  # noqa: F403  (the book's first line)
from torch import nn

assert os.environ["FASTAI_HOME"] == "/cache/fastai"
assert str(fastai_cfg().path("data")).startswith("/cache/fastai"), fastai_cfg().path("data")

torch.manual_seed(0)
X = torch.randn(512, 4)
y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(512)
train = list(zip(X[:448], y[:448].unsqueeze(1), strict=True))
valid = list(zip(X[448:], y[448:].unsqueeze(1), strict=True))
dls = DataLoaders.from_dsets(train, valid, bs=32, device="cpu")
learn = Learner(dls, nn.Linear(4, 1), loss_func=MSELossFlat(), lr=0.05)
with learn.no_bar(), learn.no_logging():
    learn.fit(4)
losses = [v[1] for v in learn.recorder.values]  # validation loss per epoch
print("validation losses", [round(x, 4) for x in losses])
assert losses[-1] < losses[0] * 0.5, losses
print("fastai check passed")
