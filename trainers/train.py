"""Train a zoo model on a pipelines source.

    python -m trainers.train --model_dir=runs/x [flags]                 # the program
    trainers.training.train(TrainConfig(model_dir="runs/x", ...))        # the same, in process

Every `TrainConfig` field is a flag of the same name; `--recipe=NAME` starts from a shipped flag
file. Everything lands in the run directory (`trainers.rundir`): flags.txt (rerunnable with --flagfile),
TensorBoard logs, backups for resuming, per-phase weights, model.keras, a SavedModel in export/,
metrics.json and class_names.json. Rerunning the same command after a crash or kill -9 resumes
from the last finished epoch; a finished run is left alone unless --overwrite is given.
"""

from __future__ import annotations

import errno
import os
import sys

from absl import flags

from pipelines.durable import disk_full
from trainers import cli, config, steps
from trainers.config import ConfigError
from trainers.training import TrainResult, train
from zoo import compat

__all__ = ["TrainResult", "train"]  # the library's, for `trainers.train.train` callers


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The flags of `python -m trainers.train`: every `TrainConfig` field (into ``flag_values``,
    absl's global flags by default)."""
    config.define_flags(flag_values)
    flags.DEFINE_string(
        "recipe",
        None,
        "A shipped flag file (trainers/recipes/NAME.flags); flags given here override it; 'list'.",
        flag_values=flag_values,
    )
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)


def main(argv, flag_values: flags.FlagValues = flags.FLAGS):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
    run_config = cli.config_from_flags(flag_values)
    try:
        result = train(run_config)
    except ConfigError as error:
        raise cli.UserError(error.flag_message()) from None
    except steps.TrainingError as error:
        cli.fail(str(error), status=1)
    except Exception as error:
        if not disk_full(error):
            raise
        print(
            f"error: disk full writing the run in {run_config.model_dir} ({os.strerror(errno.ENOSPC)}); free space and "
            f"rerun the same command: it resumes from the last finished epoch",
            file=sys.stderr,
            flush=True,
        )
        compat.exit_now(1)  # at a normal exit h5py's half-written files print tracebacks as they are freed
    run = result.run
    if result.already_finished:
        print(f"{run.root} holds a finished run (metrics in {run.metrics_file}); pass --overwrite to train again")
    elif run.is_chief:
        print(
            f"\nmodel:       {run.model_file}\nSavedModel:  {run.export_dir}\n"
            f"metrics:     {run.metrics_file} {result.metrics}\n"
            f"TensorBoard: tensorboard --logdir {run.logs_dir}"
        )
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
