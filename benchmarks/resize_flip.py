"""Time per image of the fused resize+flip kernel vs the TF ops it replaces, on one core.

    python benchmarks/resize_flip.py                       # a 299x299 crop -> 224x224
    python benchmarks/resize_flip.py --height=333 --width=500 --size=128

Both turn a uint8 (height, width, 3) image into the float32 (size, size, 3) training image,
mirrored on every other call: TF's ops are `tf.cast` + `tf.image.resize` (bilinear) + `tf.reverse`
under a `tf.cond`, as `pipelines` runs them without the kernel; the kernel is
`pipelines.fused`'s one pass. Each is called in a graph loop (no Python per image) on one
intra-op thread, alternating, and the medians and their ratio are printed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pipelines import fused  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The benchmark's flags, defined when it runs (importing it defines none)."""
    flags.DEFINE_integer("height", 299, "Input image height (the training crop of a 500x333 photo: 299).")
    flags.DEFINE_integer("width", 299, "Input image width.")
    flags.DEFINE_integer("size", 224, "Output height and width.")
    flags.DEFINE_integer("iterations", 300, "Images per measurement.")
    flags.DEFINE_integer("repeats", 5, "Alternating measurements of each.")


def timed_loop(resize_flip, iterations):
    """A graph that runs ``resize_flip`` ``iterations`` times, each output feeding a sum."""

    @tf.function
    def run(image, size):
        total = tf.constant(0.0)
        for i in tf.range(iterations):
            out = resize_flip(image, size, tf.equal(i % 2, 1))
            total += out[0, 0, 0]  # keeps every call live
        return total

    return run


def main(argv):
    del argv
    for name in ("height", "width", "size", "iterations", "repeats"):
        if getattr(FLAGS, name) < 1:
            raise app.UsageError(f"--{name}={getattr(FLAGS, name)}: must be at least 1")
    module, why_not = fused.status()
    if module is None:
        raise app.UsageError(f"the fused kernel is not available: {why_not}")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    image = tf.constant(rng.integers(0, 256, (FLAGS.height, FLAGS.width, 3)).astype(np.uint8))
    size = tf.constant([FLAGS.size, FLAGS.size])
    candidates = {
        "TF ops (cast + resize + reverse)": timed_loop(fused.reference_resize_flip, FLAGS.iterations),
        "fused kernel": timed_loop(module.zoo_resize_flip, FLAGS.iterations),
    }
    for run in candidates.values():
        run(image, size)  # trace and warm up
    times = {name: [] for name in candidates}
    for _ in range(FLAGS.repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run(image, size).numpy()
            times[name].append((time.perf_counter() - start) / FLAGS.iterations * 1e6)
    print(f"{FLAGS.height}x{FLAGS.width}x3 uint8 -> {FLAGS.size}x{FLAGS.size}x3 float32, one core, tf {tf.__version__}")
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>32}: {median[name]:7.1f} us/image   (runs: {', '.join(f'{v:.1f}' for v in values)})")
    print(f"fused kernel speed-up: {median['TF ops (cast + resize + reverse)'] / median['fused kernel']:.2f}x")


if __name__ == "__main__":
    define_flags()
    app.run(main)
