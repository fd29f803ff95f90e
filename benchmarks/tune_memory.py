"""Resident memory of a search that runs its trials in process: does it grow from trial to trial?

    python benchmarks/tune_memory.py [--trials=10] [--notrial_process] [--model_dir=/tmp/tune_memory]

Runs a random search of ``--trials`` small Fashion CNN trials on the shapes set (32 px, 512
training images, 2 epochs each) through `trainers.tune`, exactly as the program does, and prints
the process's resident memory after each trial, the growth from the first trial to the last, and
the peak (``ru_maxrss``), and with a process per trial (the default) the largest peak of a trial's
process and the resident memory of the fork server the trials are forked from (measured inside
each trial: the trials are the server's children, not this process's). keras-tuner users report
memory growing with every trial: in one process it does, even with the Keras session cleared after
each trial (TensorFlow keeps every trial's traced functions), which is why `trainers.tune` runs
each trial in a process of its own.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("trials", 10, "Trials to run.", lower_bound=2)
    flags.DEFINE_string("model_dir", "/tmp/tune_memory", "Search folder (replaced).")
    flags.DEFINE_boolean("trial_process", True, "Each trial in a fresh process (trainers.tune's default).")


def resident_mib(process: str = "self") -> float:
    """Resident memory of ``process`` (a PID, or "self"), in MiB, as Linux's /proc reports it."""
    with open(f"/proc/{process}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measured_trial(run_trial, *args):
    """``run_trial(*args)``'s metrics, with this process's peak and its parent's (the fork server's)
    resident memory added, in MiB."""
    metrics = dict(run_trial(*args))
    metrics["trial_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics["server_mib"] = resident_mib(str(os.getppid()))
    return metrics


def main(argv):
    import functools

    from absl import logging

    import pipelines.tuning as tuning
    from trainers import tune
    from trainers.config import TrainConfig

    logging.set_verbosity(logging.WARNING)
    shutil.rmtree(FLAGS.model_dir, ignore_errors=True)
    config = TrainConfig(
        model_dir=FLAGS.model_dir, model="fashion_cnn", image_size=32, train_split="train[:512]", epochs=2
    )
    search = tune.make_search(
        config, tune.TuneConfig(max_trials=FLAGS.trials, early_stopping_patience=0, trial_process=FLAGS.trial_process)
    )
    if FLAGS.trial_process:
        search.run_trial = functools.partial(measured_trial, search.run_trial)
    rows, trials = [], []
    tuner_class = tuning._tuner_class

    def measuring_tuner_class():
        class Measured(tuner_class()):
            def on_trial_end(self, trial):
                super().on_trial_end(trial)
                rows.append((trial.trial_id, resident_mib()))
                trials.append(trial)

        return Measured

    tuning._tuner_class = measuring_tuner_class
    result = search.run()
    print("\ntrial  resident MiB after it")
    for trial_id, mib in rows:
        print(f"{trial_id:>5}  {mib:8.0f}")
    first, last = rows[0][1], rows[-1][1]
    growth = (last - first) / max(len(rows) - 1, 1)
    mode = "a process per trial" if FLAGS.trial_process else "all trials in this process"
    print(
        f"\n{result.completed} trials, {mode}: resident {first:.0f} MiB after the first, {last:.0f} MiB after the last "
        f"({growth:+.1f} MiB per trial); peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if FLAGS.trial_process:
        measured = [t for t in trials if t.metrics.exists("trial_peak_mib")]
        peak = max(t.metrics.get_last_value("trial_peak_mib") for t in measured)
        server = max(t.metrics.get_last_value("server_mib") for t in measured)
        print(f"largest peak of a trial's process: {peak:.0f} MiB (its pages shared with the server included)")
        print(f"the fork server trials are forked from: {server:.0f} MiB resident at most")


if __name__ == "__main__":
    define_flags()
    app.run(main)
