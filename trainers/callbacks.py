"""Keras callbacks of the trainer: stop on a non-finite loss, one log line per epoch."""

from __future__ import annotations

import time

import keras
import numpy as np
from absl import logging


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
