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
