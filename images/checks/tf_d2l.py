"""The d2l-zh book's TensorFlow tab, as printed (3.2, 3.3 on synthetic data): d2l 0.17's
`d2l.tensorflow` API, a tf.keras model trained a few steps, the loss falling; ../data is
the shared folder."""

import os
from pathlib import Path

import tensorflow as tf
from d2l import tensorflow as d2l

assert d2l.__name__ == "d2l.tensorflow"
for fn in ("synthetic_data", "linreg", "squared_loss", "sgd", "load_array", "Accumulator",
           "train_ch3", "load_data_fashion_mnist", "plot", "download"):
    assert hasattr(d2l, fn), f"d2l.{fn} is missing: not the d2l 0.17 TensorFlow API"

# 3.2 线性回归的从零开始实现
true_w, true_b = tf.constant([2, -3.4]), 4.2
features, labels = d2l.synthetic_data(true_w, true_b, 1000)
w = tf.Variable(tf.random.normal(shape=(2, 1), mean=0, stddev=0.01), trainable=True)
b = tf.Variable(tf.zeros(1), trainable=True)
lr, batch_size = 0.03, 10
for _ in range(3):
    for X, y in d2l.load_array((features, labels), batch_size):
        with tf.GradientTape() as g:
            loss = d2l.squared_loss(d2l.linreg(X, w, b), y)
        dw, db = g.gradient(loss, [w, b])
        d2l.sgd([w, b], [dw, db], lr, batch_size)
err = float(tf.reduce_max(tf.abs(true_w - tf.reshape(w, true_w.shape))))
assert err < 0.05, f"linear regression did not converge: {err}"

# 3.3 线性回归的简洁实现: a tf.keras model, the loss falling
net = tf.keras.Sequential([tf.keras.layers.Dense(1)])
loss = tf.keras.losses.MeanSquaredError()
trainer = tf.keras.optimizers.SGD(learning_rate=0.03)
losses = []
for _ in range(3):
    for X, y in d2l.load_array((features, labels), batch_size):
        with tf.GradientTape() as tape:
            step = loss(net(X, training=True), y)
        grads = tape.gradient(step, net.trainable_variables)
        trainer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
    losses.append(float(loss(net(features), labels)))
print("epoch losses", [round(x, 5) for x in losses])
assert losses[-1] < losses[0] and losses[-1] < 0.01, losses

# The book's ../data
chapter = Path.cwd() / "chapter_linear-networks"
chapter.mkdir(exist_ok=True)
os.chdir(chapter)
(Path("..") / "data" / "tf-check.txt").write_text("ok")
assert Path("/data/tf-check.txt").read_text() == "ok", "../data is not the shared data folder"
Path("/data/tf-check.txt").unlink()
print("d2l-zh TensorFlow check passed")
