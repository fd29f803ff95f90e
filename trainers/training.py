"""Training as a library: `train(config)` runs one training run from start (or resume) to export.

    from trainers.config import TrainConfig
    from trainers.training import train
    result = train(TrainConfig(model_dir="runs/x", model="resnet18", dataset="shapes", epochs=5))

`train(config)` reads as the steps it runs: strategy -> run directory check -> data -> model ->
run directory (created only once settings, data and model are known to be good) -> phases (one,
or frozen then fine-tuned; resumable) -> test metrics -> export. `trainers.train` is its program;
`trainers.tune` calls it for every trial.

Everything lands in the run directory (`trainers.rundir`): flags.txt (rerunnable with --flagfile),
TensorBoard logs, backups for resuming, per-phase weights, model.keras, a SavedModel in export/,
metrics.json and class_names.json. Rerunning the same command after a crash or kill -9 resumes
from the last finished epoch; a finished run is left alone unless overwrite is given.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil

from absl import logging

import pipelines
from pipelines import durable
from pipelines.durable import atomic_write, read_json, write_json
from trainers import distribute, steps
from trainers.config import IDENTITY_FIELDS, ConfigError, TrainConfig
from trainers.rundir import RunDir, RunDirError


@dataclasses.dataclass
class TrainResult:
    run: RunDir
    metrics: dict  # the test metrics (metrics.json), empty without a test split
    model: object | None  # the trained model (None when the run had already finished)
    already_finished: bool = False


def train(config: TrainConfig, *, callbacks=(), export: bool = True) -> TrainResult:
    """Train, evaluate and export as ``config`` says; resume the run in ``config.model_dir``.

    ``callbacks`` are added to every phase's `fit` (a search's early stopping); ``export=False``
    saves model.keras but no SavedModel (a search's trials).
    """
    import keras

    if not config.model_dir:
        raise ConfigError("model_dir", config.model_dir, "is required: the run directory to write to")
    problem = durable.unwritable(config.model_dir)
    if problem:  # before anything is loaded, built or written
        raise ConfigError("model_dir", config.model_dir, problem)
    steps.check_run_outside_data(config)
    policy = keras.mixed_precision.global_policy()
    directory = None
    try:
        strategy = steps.make_strategy(config)
        directory = open_run_dir(config, strategy)
        if directory.read_state().get("finished") and not config.overwrite:
            recorded = read_json(directory.metrics_file, {})
            metrics = {k: v for k, v in recorded.items() if k not in ("split", "final", "best", "report")}
            return TrainResult(directory, metrics, model=None, already_finished=True)
        data = steps.load_data(config, strategy)
        run = steps.Run(config, strategy, directory, data, tuple(steps.phases(config)))
        build = functools.partial(steps.build_model, config, data.info, strategy)
        model = build()  # before any file is written: a model that cannot be built stops here
        steps.check_memory(model, config)
        steps.check_unfreeze_from(model, config)
        prepare_run_dir(run)
        model = steps.run_phases(run, build, model, callbacks)
        kept = {}
        if config.keep_best:  # the final weights measured, then the best epoch's put in their place
            final, record = steps.keep_best(model, config, directory, data.test)
            kept = {"final": final, "best": record}
        metrics = steps.evaluate(model, *data.test, report=True) if data.test else {}
        report = metrics.pop("report", None)
        if metrics:
            logging.info("test metrics (%s): %s", config.test_split, metrics)
        if report and directory.is_chief:
            steps.write_report_summary(directory.evaluation_logs_dir, report, config.test_split)
        logging.info("final weights checksum: %s", steps.weights_checksum(model))
        # Listed in the manifest before they exist.
        directory.record(RunDir.MODEL, *([RunDir.EXPORT] if export else []), RunDir.METRICS)
        steps.export(model, directory, saved_model=export)
        finish_run_dir(run, metrics, {**kept, **({"report": report} if report else {})})
        return TrainResult(directory, metrics, model)
    except RunDirError as error:
        raise ConfigError("model_dir", config.model_dir, str(error)) from None
    except pipelines.DataError as error:  # the data read again after load_data (the preview, the
        raise ConfigError("dataset", config.dataset, str(error)) from None  # adaptation) and changed since
    finally:
        if directory is not None:
            directory.release_lock()
        keras.mixed_precision.set_global_policy(policy)


# ------------------------------------------------------------------------------------- run directory


def open_run_dir(config: TrainConfig, strategy) -> RunDir:
    """This worker's view of the run directory; refuses one trained with other defining settings."""
    multi_worker = config.strategy == "multi_worker"
    run = RunDir(
        config.model_dir,
        role=distribute.worker_role(strategy),
        roles=distribute.worker_roles(strategy) if multi_worker else (),
    )
    logging.info(
        "strategy %s with %d replica(s); chief: %s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        run.is_chief,
    )
    if run.is_chief:
        run.check_ownership()  # nothing is written into a folder that is not a run directory
    if os.path.exists(run.flags_file) and not config.overwrite:
        try:
            previous = TrainConfig.from_flagfile(run.flags_file)
        except Exception as error:  # damaged or from another version: absl and ConfigError
            logging.warning("%s is unreadable (%s); it will be rewritten", run.flags_file, error)
            return run
        for name in IDENTITY_FIELDS:
            if getattr(previous, name) != getattr(config, name):
                raise ConfigError(
                    name,
                    getattr(config, name),
                    f"{run.root} holds a run with {name}={getattr(previous, name)!r}; use another model_dir, or "
                    f"overwrite to replace it",
                )
    return run


def prepare_run_dir(run: steps.Run) -> None:
    """Lock the run directory, mark it as ours, and record the run's settings.

    With overwrite, first remove what the manifest says an earlier run wrote (nothing else).
    """
    config, directory = run.config, run.directory
    os.makedirs(directory.root, exist_ok=True)
    if not directory.is_chief:
        return
    directory.acquire_lock()
    directory.remove_temporaries()
    if config.overwrite:
        directory.remove_owned()
    directory.record(RunDir.FLAGS, RunDir.CLASS_NAMES, RunDir.STATE, RunDir.LOGS, RunDir.CHECKPOINTS, RunDir.BACKUP)
    atomic_write(directory.flags_file, "\n".join(config.flag_lines()) + "\n")
    write_json(directory.class_names_file, list(run.data.info.class_names))
    if not directory.read_state()["completed_phases"] and not os.path.exists(directory.train_images_dir):
        steps.write_image_grid(directory.train_images_dir, config, run.data.info.num_examples)


def finish_run_dir(run: steps.Run, metrics: dict, kept: dict | None = None) -> None:
    """metrics.json (the class report; with ``keep_best``: the kept epoch's record and the final
    weights' metrics beside the kept weights' own), the run marked finished, the backups removed."""
    directory = run.directory
    if directory.is_chief:
        write_json(directory.metrics_file, {"split": run.config.test_split, **metrics, **(kept or {})})
        directory.write_state({"completed_phases": [phase.name for phase in run.phases], "finished": True})
        shutil.rmtree(directory.path(RunDir.BACKUP), ignore_errors=True)
    directory.cleanup()
