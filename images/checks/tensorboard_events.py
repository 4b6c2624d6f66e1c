"""TensorBoard's event files land in the shared folder TensorBoard reads
($TENSORBOARD_LOGDIR, the lab's models/tensorboard), and TensorBoard reads them back."""

import os
from pathlib import Path

import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

logdir = Path(os.environ["TENSORBOARD_LOGDIR"]) / "labctl-check"
writer = tf.summary.create_file_writer(str(logdir))
with writer.as_default():
    for step in range(5):
        tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
writer.flush()
events = list(logdir.glob("events.out.tfevents.*"))
assert events, sorted(logdir.iterdir())
acc = EventAccumulator(str(logdir))
acc.Reload()
assert [e.step for e in acc.Tensors("loss")] == [0, 1, 2, 3, 4], acc.Tags()
assert str(logdir).startswith("/models/"), logdir
for e in events:
    e.unlink()
logdir.rmdir()
print("TensorBoard check passed:", events[0].name)
