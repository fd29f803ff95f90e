"""Wall-clock of a search's trials started the old way (a fresh interpreter each: ``spawn``) and the
search's way (forked from a fork server that imported the trainer once: ``forkserver``).

    python benchmarks/trial_start.py [--trials=2] [--image_size=16] [--steps=1]

Each trial is a real one, as `trainers.tune` runs it (`trainers.tune.run_trial` through
`pipelines.tuning.run_in_child`): the Fashion CNN on the shapes set for one epoch of ``--steps``
steps and a validation pass, so that what differs is how its process starts. ``--trials`` trials
run with each method, spawn first, in this process; the fork server's are preceded by the trial that
starts the server, timed apart. It prints each trial's seconds, each method's median, their ratio,
and each method's validation accuracy (the same data and seed: the same trial).
"""

from __future__ import annotations

import functools
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
METHODS = ("spawn", "forkserver")


def define_flags() -> None:
    flags.DEFINE_integer("trials", 2, "Trials timed with each method.", lower_bound=1)
    flags.DEFINE_integer("image_size", 16, "Image size.", lower_bound=8)
    flags.DEFINE_integer("steps", 1, "Training steps of each trial's one epoch.", lower_bound=1)


def main(argv):
    from absl import logging

    import pipelines.tuning as tuning
    from trainers import tune
    from trainers.config import TrainConfig

    logging.set_verbosity(logging.WARNING)  # the trials' own progress lines would bury the figures
    seconds = {method: [] for method in METHODS}
    accuracy = {}
    with tempfile.TemporaryDirectory() as work:
        config = TrainConfig(
            model_dir=work,
            model="fashion_cnn",
            dataset="shapes",
            image_size=FLAGS.image_size,
            batch_size=16,
            train_split="train[:64]",
            validation_split="validation[:32]",
            epochs=1,
            steps_per_epoch=FLAGS.steps,
        )
        trial = functools.partial(tune.run_trial, config, tune.objective_of(config, tune.TuneConfig()), 0)

        def timed(method: str, name: str) -> float:
            start = time.perf_counter()
            metrics = tuning.run_in_child(
                trial, (name, os.path.join(work, method, name), {}, None, 0), start_method=method
            )
            accuracy[method] = metrics["val_accuracy"]
            return time.perf_counter() - start

        for method in METHODS:
            if method == "forkserver":  # its first trial starts the server: timed apart
                first = timed(method, "0")
                print(f"{method} trial that starts the server: {first:.1f} s", flush=True)
            for index in range(1, FLAGS.trials + 1):
                seconds[method].append(timed(method, str(index)))
                print(f"{method} trial {index}: {seconds[method][-1]:.1f} s", flush=True)
    spawn, forked = (statistics.median(seconds[method]) for method in METHODS)
    print(f"spawn (a fresh interpreter per trial): {spawn:.1f} s a trial")
    print(
        f"forkserver (the search's way):         {forked:.1f} s a trial (the one that starts the server: {first:.1f} s)"
    )
    print(f"spawn / forkserver: {spawn / forked:.2f}x")
    print(f"validation accuracy: spawn {accuracy['spawn']:.3f}, forkserver {accuracy['forkserver']:.3f}")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
