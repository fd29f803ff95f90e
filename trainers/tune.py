"""Search a zoo model's hyperparameters with keras-tuner, each trial trained by the trainer itself.

    python -m trainers.tune --model_dir=runs/search --model=fashion_cnn --epochs=3 --max_trials=10
    python -m trainers.tune --model=fashion_cnn --list_space          # what would be searched
    tensorboard --logdir runs/search/trials                            # HParams dashboard
    python -m trainers.train --flagfile=runs/search/best.flags --model_dir=runs/final

Every flag of `trainers.train` sets the trials' common settings (``--model_dir`` is the search's
folder); ``--fix=NAME=VALUE`` and ``--space=NAME=LOW..HIGH`` / ``--space=NAME=A,B`` pin or narrow
what the model (`zoo`) and the trainer (`trainers.config.search_space`) declare. Each execution of
a trial is a `trainers.training.train` run in ``trials/<id>/execution<k>``, in this process, judged on
the validation split. A killed search resumes when the command is rerun. At the end: the best
trials, and ``best.flags`` with the best settings for `trainers.train --flagfile`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

from absl import flags, logging

import pipelines.tuning as tuning
import zoo
from pipelines.durable import atomic_write
from trainers import cli, steps, task
from trainers.config import ConfigError, TrainConfig, search_space
from trainers.config import define_flags as define_config_flags
from trainers.rundir import RunDir
from zoo import compat
from zoo.common import error_line

FLAGS = flags.FLAGS
BEST_FLAGS = "best.flags"
# What a trial imports as it trains (each module is imported lazily, where it is first needed, so
# that the programs which need none of it start light): the search's fork server imports them once,
# so that no trial spends seconds on it (`pipelines.tuning.run_in_child`). Kept complete by
# tests/test_tune.py, which trains a trial after importing these and sees nothing more imported.
TRIAL_IMPORTS = (
    "trainers.training",
    "trainers.metrics",
    "pipelines.core",
    "pipelines.sources.builtin",
    "pipelines.sources.folders",
    "pipelines.sources.tfds",
    "zoo.fashion_cnn",
    "zoo.resnet",
    "zoo.applications",
    "zoo.transfer",
    "keras_tuner",
    "tensorboard.summary",
)


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """How to search, beside the trials' common `TrainConfig`."""

    tuner: str = "random"
    objective: str | None = None  # default: the head's (val_accuracy, val_bbox_mean_iou)
    max_trials: int = 10
    executions_per_trial: int = 1
    fix: tuple[str, ...] = ()
    space: tuple[str, ...] = ()
    early_stopping_patience: int = 3
    max_failed_trials: int = 3
    hyperband_factor: int = 3
    top: int = 5
    trial_process: bool = True
    prune: str = "none"
    prune_after: int = 1
    prune_startup_trials: int = 3


def default_objective(head: str) -> str:
    return "val_accuracy" if head == "classify" else "val_bbox_mean_iou"


def objective_of(config: TrainConfig, tune: TuneConfig):
    """keras-tuner's objective: a validation metric this head reports, its direction inferred."""
    import keras_tuner as kt

    name = tune.objective or default_objective(config.head)
    accepted = [f"val_{metric}" for metric in task.metric_names(config.head)]
    if name not in accepted:
        raise tuning.SearchError(
            "objective", name, f"is not a validation metric of a {config.head} model; accepted: {', '.join(accepted)}"
        )
    return kt.Objective(name, "min" if task.lower_is_better(name) else "max")


def check(config: TrainConfig, tune: TuneConfig) -> None:
    """Settings a search cannot run with, refused before any trial."""
    steps.check_run_outside_data(config)  # the search's folder holds its trials' run directories
    if not config.validation_split:
        raise ConfigError("validation_split", config.validation_split, "a search judges trials on a validation split")
    if config.strategy == "multi_worker":
        raise ConfigError(
            "strategy",
            config.strategy,
            "is not available inside trials; distribute the search itself (KERASTUNER_TUNER_ID, see BUILD.md)",
        )
    if config.bn_momentum is not None:  # the model with its default options, at its smallest input
        size = zoo.spec(config.model).min_size
        steps.set_bn_momentum(zoo.build(config.model, num_classes=2, input_shape=(size, size, 3)), config)
    if tune.max_trials < 1 or tune.executions_per_trial < 1:
        raise tuning.SearchError("max_trials", tune.max_trials, "max_trials and executions_per_trial must be >= 1")
    if tune.prune not in tuning.PRUNERS:
        raise tuning.SearchError("prune", tune.prune, f"accepted: {', '.join(tuning.PRUNERS)}")
    if tune.prune != "none":
        objective = tune.objective or default_objective(config.head)
        logged = [f"val_{name}" for name in _fit_logged(config.head)]
        if objective not in logged:
            raise tuning.SearchError(
                "prune",
                tune.prune,
                f"needs an objective that training logs after each epoch; {objective} is computed only at the end "
                f"(accepted: {', '.join(logged)})",
            )
        if tune.tuner == "hyperband":
            raise tuning.SearchError(
                "prune", tune.prune, "Hyperband stops trials early itself; prune a random or bayesian search"
            )
        for name in ("prune_after", "prune_startup_trials"):
            if getattr(tune, name) < 1:
                raise tuning.SearchError(name, getattr(tune, name), "must be at least 1")


def check_fixed(config: TrainConfig, declare, overrides, fixes) -> None:
    """A trial's settings with ``fixes``' values (the rest at their defaults), checked as the
    trainer takes them and the model built with them at its smallest input: a pinned value that
    every trial would fail on (``--fix=dropout=2``) is refused once, before any trial."""
    given = ",".join(fixes)
    try:
        sample = dataclasses.replace(config, **declare(overrides.copy()))
        size = zoo.spec(sample.model).min_size
        zoo.build(sample.model, num_classes=2, input_shape=(size, size, 3), head=sample.head, **sample.builder_options)
    except ConfigError as error:
        raise tuning.SearchError("fix", given, f"a trial cannot run with it: {error}") from None
    except ValueError as error:  # the builder's own checks of its options
        raise tuning.SearchError("fix", given, f"{sample.model} cannot be built with it: {error}") from None


def declare_for(config: TrainConfig):
    """The search space of ``config``: its settings for the values keras-tuner picked."""
    return functools.partial(search_space, config=config)


def trial_config(config: TrainConfig, settings: dict, directory: str, budget, execution: int) -> TrainConfig:
    """One execution of a trial: the common settings, the trial's, judged on the validation split."""
    trial = dataclasses.replace(
        config,
        **settings,
        model_dir=directory,
        test_split=config.validation_split,  # metrics.json holds the trial's validation metrics
        seed=config.seed + execution,
        overwrite=False,
    )
    if budget is None:
        return trial
    epochs = budget.epochs - budget.initial_epoch
    if budget.parent is not None:
        parent = RunDir(os.path.join(budget.parent, "execution0"))
        last_phase = steps.phases(trial)[-1].name
        trial = dataclasses.replace(trial, weights=parent.completed_weights(last_phase))
        if trial.two_phase:
            trial = dataclasses.replace(trial, freeze_epochs=0)  # the parent has done the frozen phase
    if trial.two_phase:
        changes, lengths = {"finetune_epochs": epochs}, [e for e in (trial.freeze_epochs, epochs) if e]
    else:
        changes, lengths = {"epochs": epochs}, [epochs]
    # A budget shorter than the trial's warmup: the warmup shrinks to fit (none in a one-epoch phase).
    changes["warmup_epochs"] = min(trial.warmup_epochs, max(min(lengths) - 1, 0))
    return dataclasses.replace(trial, **changes)


def pruning_callback(pruner: tuning.MedianPruner, trial_id: str, execution: int):
    """A Keras callback that records the objective after each epoch and stops the trial
    (`tuning.TrialPruned`, with the epoch's validation metrics) when ``pruner`` says so."""
    import keras

    class Prune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            value = logs.get(pruner.objective)
            if value is None or not math.isfinite(float(value)):
                return  # a NaN is the NaN guard's and the trial's end: failed, not pruned
            pruner.record(trial_id, execution, epoch + 1, float(value))
            reason = pruner.should_prune(trial_id, execution, epoch + 1, float(value))
            if reason:
                metrics = {k: float(v) for k, v in logs.items() if k.startswith("val_")}
                raise tuning.TrialPruned(metrics, epoch + 1, reason)

    return Prune()


def run_trial(
    config: TrainConfig,
    objective,
    patience: int,
    trial_id,
    session,
    settings,
    budget,
    execution,
    pruner: tuning.MedianPruner | None = None,
) -> dict:
    """Train one execution of a trial with the trainer's own steps; its validation metrics.
    ``pruner``: stop it (`tuning.TrialPruned`) when its objective falls below the median."""
    import keras
    import tensorflow as tf

    from trainers.training import train

    directory = os.path.join(session, f"execution{execution}")
    monitored = objective.name if objective.name[len("val_") :] in _fit_logged(config.head) else "val_loss"
    callbacks = [pruning_callback(pruner, trial_id, execution)] if pruner is not None else []
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitored, patience=patience, mode="min" if task.lower_is_better(monitored) else "max"
            )
        )
    try:
        result = train(trial_config(config, settings, directory, budget, execution), callbacks=callbacks, export=False)
    except steps.TrainingError as error:  # a NaN loss: the reason alone (a search resumes no failed trial)
        raise tuning.TrialFailed(error.reason or str(error)) from None
    except (tf.errors.ResourceExhaustedError, MemoryError) as error:
        raise tuning.TrialFailed(f"out of memory ({type(error).__name__}); {error_line(error)}") from None
    except ConfigError as error:  # a combination the model cannot take (image too small for its depth)
        raise tuning.TrialFailed(str(error)) from None
    metrics = {f"val_{k}": v for k, v in result.metrics.items() if k != "num_examples"}
    broken = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if broken:
        raise tuning.TrialFailed(f"{', '.join(broken)} {'is' if len(broken) == 1 else 'are'} not finite (NaN or inf)")
    return metrics


def _fit_logged(head: str) -> list[str]:
    """What Keras logs during fit (the detection scores are computed only at evaluation)."""
    return [name for name in task.metric_names(head) if not name.startswith("map_")]


def make_search(config: TrainConfig, tune: TuneConfig) -> tuning.Search:
    """The search of ``config`` with ``tune``'s settings; every setting checked before any trial."""
    check(config, tune)
    objective = objective_of(config, tune)
    declare = declare_for(config)
    overrides = tuning.restrict(tuning.declared_space(declare), tune.fix, tune.space)
    if tune.fix:
        check_fixed(config, declare, overrides, tune.fix)
    epochs = config.finetune_epochs if config.two_phase else config.single_phase_epochs
    common = [line for line in config.flag_lines() if not line.startswith("--model_dir=")]
    pruner = None
    if tune.prune == "median":
        pruner = tuning.MedianPruner(
            os.path.join(config.model_dir, tuning.TRIALS_DIR),
            objective.name,
            objective.direction == "max",
            after=tune.prune_after,
            startup_trials=tune.prune_startup_trials,
        )
    return tuning.Search(
        config.model_dir,
        declare,
        functools.partial(run_trial, config, objective, tune.early_stopping_patience, pruner=pruner),
        objective=objective,
        tuner=tune.tuner,
        overrides=overrides,
        max_trials=tune.max_trials,
        executions_per_trial=tune.executions_per_trial,
        max_epochs=epochs,
        hyperband_factor=tune.hyperband_factor,
        max_failed_trials=tune.max_failed_trials,
        seed=config.seed,
        metrics=[f"val_{metric}" for metric in task.metric_names(config.head)],
        settings={
            "objective": objective.name,
            "fix": sorted(tune.fix),
            "space": sorted(tune.space),
            "executions_per_trial": tune.executions_per_trial,
            "trials": common,
            **({"prune": [tune.prune, tune.prune_after, tune.prune_startup_trials]} if tune.prune != "none" else {}),
        },
        overwrite=config.overwrite,
        trial_process=tune.trial_process,
        trial_imports=TRIAL_IMPORTS,
        peer_timeout=config.peer_timeout,
        pruner=pruner,
    )


def best_config(config: TrainConfig, trial) -> TrainConfig:
    """The settings of ``trial`` as a full training run (test split and epochs as given)."""
    settings = declare_for(config)(trial.hyperparameters.copy())
    return dataclasses.replace(config, **settings)


def write_best_flags(config: TrainConfig, trial, path: str, objective: str) -> None:
    best = best_config(config, trial)
    lines = [line for line in best.flag_lines() if not line.startswith("--model_dir=")]
    header = f"# best trial {trial.trial_id} of {config.model_dir}: {objective}={trial.score:.6g}"
    atomic_write(path, "\n".join([header, *lines]) + "\n")


# ------------------------------------------------------------------------------------- program


def define_flags() -> None:
    define_config_flags()
    flags.DEFINE_string("recipe", None, "A shipped flag file (trainers/recipes/NAME.flags) for the trials; 'list'.")
    flags.DEFINE_enum("tuner", "random", list(tuning.TUNERS), "Search algorithm (keras-tuner's oracles).")
    flags.DEFINE_string(
        "objective", None, "Validation metric to optimize (default: val_accuracy; localize: val_bbox_mean_iou)."
    )
    flags.DEFINE_integer("max_trials", 10, "Trials to run (Hyperband: at most).", lower_bound=1)
    flags.DEFINE_integer(
        "executions_per_trial", 1, "Trainings per trial, averaged (seeds seed, seed+1, ...).", lower_bound=1
    )
    flags.DEFINE_multi_string("fix", [], "NAME=VALUE: the hyperparameter takes this value in every trial.")
    flags.DEFINE_multi_string("space", [], "NAME=LOW..HIGH (numbers) or NAME=A,B,... (choices): search only these.")
    flags.DEFINE_boolean("list_space", False, "Print the hyperparameters this search would vary, and exit.")
    flags.DEFINE_integer(
        "early_stopping_patience", 3, "Stop a trial after N epochs without improvement; 0: never.", lower_bound=0
    )
    flags.DEFINE_integer("max_failed_trials", 3, "Stop the search after N failed trials in a row.", lower_bound=1)
    flags.DEFINE_integer("hyperband_factor", 3, "Hyperband: reduction factor between rounds.", lower_bound=2)
    flags.DEFINE_integer("top", 5, "Best trials shown at the end.", lower_bound=1)
    flags.DEFINE_enum(
        "prune",
        "none",
        list(tuning.PRUNERS),
        "median: stop a trial whose objective after an epoch is worse than the median of the finished trials' "
        "after the same epoch (Optuna's MedianPruner); pruned trials are recorded as pruned, not resumed.",
    )
    flags.DEFINE_integer("prune_after", 1, "--prune: the first epoch after which a trial may be pruned.", lower_bound=1)
    flags.DEFINE_integer(
        "prune_startup_trials", 3, "--prune: finished trials needed before any trial is pruned.", lower_bound=1
    )
    flags.DEFINE_boolean(
        "trial_process",
        True,
        "Run each trial in a fresh process, so memory stays flat (--notrial_process: in this one; "
        "memory then grows with every trial, see BUILD.md).",
    )


def tune_config_from_flags() -> TuneConfig:
    return TuneConfig(**{field.name: _flag(field.name) for field in dataclasses.fields(TuneConfig)})


def _flag(name):
    value = FLAGS[name].value
    return tuple(value) if isinstance(value, list) else value


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
    if not FLAGS.list_space and not FLAGS.model_dir:
        raise cli.UserError("--model_dir is required: the folder of the search")
    config = cli.config_from_flags()
    tune = tune_config_from_flags()
    try:
        search = make_search(config, tune)
        if FLAGS.list_space:
            print("\n".join(tuning.describe(search.space())))
            return 0
        result = search.run()
    except (ConfigError, tuning.SearchError) as error:
        raise cli.UserError(error.flag_message()) from None
    except tuning.SearchStopped as error:
        cli.fail(f"search stopped: {error}; rerun the same command to go on", status=1)
    if not result.is_chief:
        print("worker: the search is done; the chief reports the results")
        return 0
    objective = search.objective.name
    pruned = f", {result.pruned} pruned" if tune.prune != "none" else ""
    print(f"\n{result.completed} trial(s) completed, {result.failed} failed{pruned}\n")
    print(tuning.best_table(result.best, objective, tune.top))
    finished = [trial for trial in result.best if trial.score is not None]
    if not finished:
        cli.fail("no trial finished; see the log above for why", status=1)
    path = os.path.join(config.model_dir, BEST_FLAGS)
    write_best_flags(config, finished[0], path, objective)
    logging.info("best trial %s: %s=%g", finished[0].trial_id, objective, finished[0].score)
    print(
        f"\nbest flags:  {path}\n"
        f"train it:    python -m trainers.train --flagfile={path} --model_dir=runs/final\n"
        f"TensorBoard: tensorboard --logdir {search.trials_dir}   (HPARAMS tab)"
    )
    if "KERASTUNER_ORACLE_IP" in os.environ:
        compat.exit_now(0)  # keras-tuner's chief: its gRPC server would keep this process alive
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
