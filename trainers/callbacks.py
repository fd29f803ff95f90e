"""Keras callbacks of the trainer: stop on a non-finite loss, one log line per epoch, keep the
best epoch's weights."""

from __future__ import annotations

import contextlib
import glob
import os
import time

import keras
import numpy as np
from absl import logging

from zoo import compat


class NonFiniteLoss(Exception):
    pass


class NanGuard(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss by raising, before the epoch's backup could save it."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise NonFiniteLoss(f"loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}")


class EpochSummary(keras.callbacks.Callback):
    """One plain log line per epoch, whatever the progress bar does."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase
        self.start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        numbers = sorted((k, v) for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        metrics = " ".join(f"{k}={v:.4g}" for k, v in numbers)
        logging.info("[%s] epoch %d done in %.1fs: %s", self.phase, epoch + 1, time.time() - self.start, metrics)


class ReseedRandomLayers(keras.callbacks.Callback):
    """Each epoch's random layers (Dropout, stochastic depth) drawn from (``seed``, the layer's
    place in the model, the epoch): set at the start of every epoch, so that a run resumed at an
    epoch (whose backup cannot keep the generators' states: `zoo.compat.seed_generator_states`)
    draws the masks the uninterrupted run drew there."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed) % 2**32
        self.states = []

    def on_train_begin(self, logs=None):
        self.states = compat.seed_generator_states(self.model)  # once a fit, not each epoch

    def on_epoch_begin(self, epoch, logs=None):
        for index, state in enumerate(self.states):
            compat.reset_seed_generator(
                state, int(np.random.SeedSequence([self.seed, index, epoch]).generate_state(1)[0])
            )


@contextlib.contextmanager
def averaged_weights(model):
    """Inside, ``model`` holds its optimizer's moving averages (``use_ema``), as validation saw it;
    its own weights come back after. Without EMA, nothing changes."""
    pairs = compat.ema_averages(getattr(model, "optimizer", None))
    kept = [variable.numpy() for variable, _ in pairs]
    for variable, average in pairs:
        variable.assign(average)
    try:
        yield
    finally:
        for (variable, _), value in zip(pairs, kept):
            variable.assign(value)


class KeepBest(keras.callbacks.Callback):
    """Keep the weights of the best epoch by a validation metric, across the phases of a run.

    The record (``best.json``: metric, value, epoch, file) and the weights live in the run's
    checkpoints folder and outlive a kill: each new best is written under its epoch's name first,
    then the record points at it (both whole or not at all), then the old file goes. With EMA the
    kept weights are the averages, the weights validation measured.
    """

    RECORD = "best.json"

    def __init__(self, monitor: str, lower_is_better: bool, folder: str, write: bool = True):
        super().__init__()
        self.monitor, self.lower_is_better, self.folder, self.write = monitor, lower_is_better, folder, write

    @classmethod
    def read(cls, folder: str) -> dict | None:
        """The record of the best epoch so far in ``folder`` (None before the first)."""
        from pipelines.durable import read_json

        record = read_json(os.path.join(folder, cls.RECORD), None)
        if not isinstance(record, dict) or not os.path.exists(os.path.join(folder, str(record.get("file")))):
            return None
        return record

    def _better(self, value: float, best: float) -> bool:
        return value < best if self.lower_is_better else value > best

    def on_epoch_end(self, epoch, logs=None):
        from pipelines.durable import atomic_path, write_json

        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(float(value)):
            return
        record = self.read(self.folder)
        if record is not None and not self._better(float(value), float(record["value"])):
            return
        logging.info("best %s so far: %.4g at epoch %d; its weights kept", self.monitor, float(value), epoch + 1)
        if not self.write:  # another worker than the chief: the chief keeps them
            return
        name = f"best-epoch{epoch + 1}.weights.h5"
        os.makedirs(self.folder, exist_ok=True)
        with averaged_weights(self.model), atomic_path(os.path.join(self.folder, name)) as temporary:
            self.model.save_weights(temporary)
        write_json(
            os.path.join(self.folder, self.RECORD),
            {"monitor": self.monitor, "value": float(value), "epoch": epoch + 1, "file": name},
        )
        for old in glob.glob(os.path.join(self.folder, "best-epoch*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)


class ApplyLearningRate(keras.callbacks.Callback):
    """Put this run's learning rate back after `BackupAndRestore` restored the optimizer.

    A constant learning rate is an optimizer variable, saved in the backup with the rest of its
    state: resuming would silently train on at the old rate (say, the one that made the loss NaN)
    while flags.txt records the new one. Listed after BackupAndRestore, this runs after its restore.
    (A schedule is not saved; the new one applies as it is.)
    """

    def __init__(self, learning_rate):
        super().__init__()
        self.learning_rate = learning_rate

    def on_train_begin(self, logs=None):
        if not isinstance(self.learning_rate, (int, float)):
            return
        optimizer = self.model.optimizer
        restored = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        if not np.isclose(restored, self.learning_rate, rtol=1e-6, atol=0):
            logging.warning("resuming with learning rate %g (the backup had %g)", self.learning_rate, restored)
            optimizer.learning_rate = self.learning_rate


class BoxGrid(keras.callbacks.Callback):
    """TensorBoard: a grid of validation images with their true boxes (green) and the boxes the
    model predicts (red), written at the end of each epoch, so the box head can be watched learn."""

    TAG = "validation boxes (green: true, red: predicted)"

    def __init__(self, images, true_boxes, log_dir: str):
        super().__init__()
        self.images, self.true_boxes, self.log_dir = images, true_boxes, log_dir
        self.writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(self.log_dir)  # one event file per phase

    def on_train_end(self, logs=None):
        self.writer.close()

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        predicted = self.model(self.images, training=False)["bbox"]  # predict_on_batch splits it over replicas
        boxes = tf.stack([tf.cast(self.true_boxes, tf.float32), tf.cast(predicted, tf.float32)], axis=1)
        images = tf.cast(self.images, tf.float32) / 255.0
        if images.shape[-1] == 1:
            images = tf.image.grayscale_to_rgb(images)
        drawn = tf.image.draw_bounding_boxes(images, boxes, colors=[[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
        with self.writer.as_default():
            tf.summary.image(self.TAG, drawn, step=epoch, max_outputs=len(drawn))
        self.writer.flush()
