"""The d2l-zh code style runs: the d2l 0.17 API, a train_ch3 run on synthetic data,
headless matplotlib, and the book's ../data convention landing in the shared folder."""

import os
from pathlib import Path

import torch
from d2l import torch as d2l
from torch import nn

assert d2l.__name__ == "d2l.torch"
for fn in ("synthetic_data", "linreg", "squared_loss", "sgd", "load_array", "Accumulator",
           "train_epoch_ch3", "train_ch3", "predict_ch3", "evaluate_accuracy", "train_ch8",
           "Animator", "plot", "download"):
    assert hasattr(d2l, fn), f"d2l.{fn} is missing: this is not the d2l 0.17 API"

# Linear regression from scratch, as in chapter 3.2.
true_w, true_b = torch.tensor([2, -3.4]), 4.2
features, labels = d2l.synthetic_data(true_w, true_b, 1000)
w = torch.normal(0, 0.01, size=(2, 1), requires_grad=True)
b = torch.zeros(1, requires_grad=True)
for _ in range(3):
    for X, y in d2l.load_array((features, labels), 10):
        loss = d2l.squared_loss(d2l.linreg(X, w, b), y)
        loss.sum().backward()
        d2l.sgd([w, b], 0.03, 10)
err = (true_w - w.reshape(true_w.shape)).abs().max().item()
assert err < 0.05, f"linear regression did not converge: {err}"

# Softmax regression with train_ch3 (it asserts loss < 0.5 and accuracy > 0.7 itself).
torch.manual_seed(0)
centers = torch.randn(3, 20) * 4
y = torch.randint(0, 3, (600,))
X = centers[y] + torch.randn(600, 20)
train_iter = d2l.load_array((X[:500], y[:500]), 50)
test_iter = d2l.load_array((X[500:], y[500:]), 50, is_train=False)
net = nn.Sequential(nn.Flatten(), nn.Linear(20, 3))
loss = nn.CrossEntropyLoss(reduction="none")
trainer = torch.optim.SGD(net.parameters(), lr=0.1)
d2l.train_ch3(net, train_iter, test_iter, loss, 3, trainer)
acc = d2l.evaluate_accuracy(net, test_iter)
assert acc > 0.9, acc

# Headless plotting.
d2l.plot(list(range(10)), [[x * x for x in range(10)]], "x", "y")
d2l.plt.savefig("/tmp/plot.png")
assert os.path.getsize("/tmp/plot.png") > 1000

# The book reads and writes ../data relative to the notebook's folder.
chapter = Path.cwd() / "chapter_check"
chapter.mkdir(exist_ok=True)
os.chdir(chapter)
(Path("..") / "data").mkdir(exist_ok=True)
(Path("..") / "data" / "d2l-check.txt").write_text("ok")
assert Path("/data/d2l-check.txt").read_text() == "ok", "../data is not the shared data folder"
Path("/data/d2l-check.txt").unlink()
print("d2l API check passed; accuracy", round(acc, 3))
