"""Keras 3 (on TensorFlow) fits a small model: the loss falls."""

import keras
import numpy as np

assert keras.__version__.startswith("3."), keras.__version__
assert keras.backend.backend() == "tensorflow", keras.backend.backend()
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1))).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
history = model.fit(x, y, epochs=20, batch_size=32, verbose=0).history["loss"]
print("losses", [round(v, 4) for v in history])
assert history[-1] < history[0] * 0.2, history
print("Keras 3 check passed")
