"""Seconds until a resumed run's first training batch: the stream started at its batch
(`pipelines.load(..., first_batch=N)`) against reading the stream from 0 and dropping the first N
batches (``.skip(N)``: what exactness costs without `zoo.compat.skip_iterations`).

    python benchmarks/resume_stream.py [--examples=1000] [--image_size=64] [--batch_size=32]
                                       [--epochs=10] [--rounds=3]

The shapes set's first ``--examples`` training images, cropped and flipped, resumed after
``--epochs`` epochs (one pass each). Each round times both, alternating, from building the
pipeline to holding the first batch; it prints the medians, their ratio, and whether the two
first batches are the same pixels (they must be).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("examples", 1000, "Training examples (of the shapes set's 4,000).", lower_bound=8)
    flags.DEFINE_integer("image_size", 64, "Image size.", lower_bound=8)
    flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_integer("epochs", 10, "Epochs finished before the resume (one pass each).", lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Timings of each way, alternating.", lower_bound=1)


def main(argv):
    import numpy as np

    import pipelines

    if FLAGS.batch_size > FLAGS.examples:
        raise app.UsageError(f"--batch_size={FLAGS.batch_size}: larger than --examples={FLAGS.examples}")
    args = dict(
        image_size=FLAGS.image_size,
        batch_size=FLAGS.batch_size,
        training=True,
        augment="crop,flip",
        seed=0,
        repeat=True,
    )
    split = f"train[:{FLAGS.examples}]"
    first_batch = FLAGS.epochs * (FLAGS.examples // FLAGS.batch_size)

    def started():
        return pipelines.load("shapes", split, first_batch=first_batch, **args)[0]

    def skipped():
        return pipelines.load("shapes", split, **args)[0].skip(first_batch)

    seconds = {"started": [], "skipped": []}
    firsts = {}
    for _ in range(FLAGS.rounds):
        for name, make in (("started", started), ("skipped", skipped)):
            start = time.perf_counter()
            images, _ = next(iter(make()))
            seconds[name].append(time.perf_counter() - start)
            firsts[name] = images.numpy()
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(
        f"resumed after {FLAGS.epochs} epochs (batch {first_batch}) of {FLAGS.examples} images at "
        f"{FLAGS.image_size} px, batches of {FLAGS.batch_size}, crop and flip; medians of {FLAGS.rounds}:"
    )
    print(f"started at its batch (first_batch): {medians['started']:.3f} s to the first batch")
    print(f"read from 0, skip(N):               {medians['skipped']:.3f} s to the first batch")
    print(f"skip(N) / first_batch: {medians['skipped'] / medians['started']:.1f}x")
    print(f"same first batch: {'yes' if np.array_equal(firsts['started'], firsts['skipped']) else 'NO'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
