"""Wall-clock of one short training with tf.data's autotuning off (the trainer's default) and on.

    python benchmarks/data_autotune.py [--epochs=4] [--rounds=2] [--image_size=32] [--train_examples=4000]
                                       [--nomixed_precision]

Each round trains the Fashion CNN on the shapes set through `trainers.training.train` twice, in this
process, alternating: ``--nodata_autotune`` then ``--data_autotune``, each in a fresh run directory,
with a validation pass every epoch and a test evaluation at the end (export off). It prints each
run's seconds, the medians, their ratio, and both runs' test accuracy (the same data and seed: the
same learning). With autotuning on, tf.data's tuner thread can hold the end of an iterator (the
end of `fit`, a validation pass, the evaluation) for seconds; whether a whole run notices is what
this measures.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("epochs", 4, "Epochs of each run.", lower_bound=1)
    flags.DEFINE_integer("rounds", 2, "Runs of each setting, alternating.", lower_bound=1)
    flags.DEFINE_integer("image_size", 32, "Image size.", lower_bound=8)
    flags.DEFINE_integer("train_examples", 4000, "Training examples (of the shapes set's 10,000).", lower_bound=32)
    flags.DEFINE_boolean("mixed_precision", None, "The trainer's --mixed_precision (default: by the hardware).")


def main(argv):
    from absl import logging

    import trainers.training
    from trainers.config import TrainConfig

    logging.set_verbosity(logging.WARNING)  # the runs' own progress lines would bury the figures
    seconds = {False: [], True: []}
    accuracy = {}
    with tempfile.TemporaryDirectory() as work:
        for round_index in range(FLAGS.rounds):
            for autotune in (False, True):
                config = TrainConfig(
                    model_dir=os.path.join(work, f"run{round_index}_{int(autotune)}"),
                    model="fashion_cnn",
                    dataset="shapes",
                    image_size=FLAGS.image_size,
                    train_split=f"train[:{FLAGS.train_examples}]",
                    epochs=FLAGS.epochs,
                    data_autotune=autotune,
                    mixed_precision=FLAGS.mixed_precision,
                )
                start = time.perf_counter()
                result = trainers.training.train(config, export=False)
                seconds[autotune].append(time.perf_counter() - start)
                accuracy[autotune] = result.metrics["accuracy"]
                print(f"round {round_index + 1}: data_autotune={autotune}: {seconds[autotune][-1]:.1f} s", flush=True)
    off, on = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"autotune off (the trainer's default): {off:.1f} s")
    print(f"autotune on:                          {on:.1f} s")
    print(f"on / off: {on / off:.2f}x")
    print(f"test accuracy: off {accuracy[False]:.3f}, on {accuracy[True]:.3f}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
