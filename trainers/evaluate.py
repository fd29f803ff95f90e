"""Evaluate a saved model on a split: `python -m trainers.evaluate --model_path=RUN_DIR [--split=test]`.

On a run directory, the run's own settings apply (dataset, test split, loss weights, the test-time
central crop), so evaluating its test split reproduces its metrics.json; flags given override
them. A bare .keras file is evaluated with the defaults. Prints the metrics and writes them as JSON
(--output; default: eval_<dataset>_<split>.json beside the model).
"""

from __future__ import annotations

import dataclasses
import os
import re

from absl import flags, logging

from trainers import cli, steps, task
from trainers.config import ConfigError, TrainConfig
from trainers.rundir import run_dir_of, write_json

FLAGS = flags.FLAGS


def define_flags() -> None:
    from_run = " (default: the run's own)"
    # The model's own input size applies: no --image_size.
    cli.define_config_flags(
        names=[name for name in cli.DATA_FLAGS if name != "image_size"],
        defaults={"dataset": None, "batch_size": None},
        helps={
            "dataset": "'shapes', 'dir:PATH' or a TFDS name" + from_run + ".",
            "batch_size": "Batch size" + from_run + ".",
        },
    )
    flags.DEFINE_string("model_path", None, "A .keras file, or a run directory holding model.keras.")
    flags.DEFINE_string("split", None, "Split to evaluate, TFDS syntax (default: the run's test split, else 'test').")
    flags.DEFINE_boolean("central_crop", None, "Central-crop before resizing (default: as the run trained).")
    flags.DEFINE_string("output", None, "Where to write the metrics JSON (folders are created).")
    flags.mark_flag_as_required("model_path")


def run_config(model_path: str, model, **given) -> TrainConfig:
    """The settings a model was trained with (its run directory's flags.txt), with ``given`` on top."""
    run = run_dir_of(model_path)
    config = TrainConfig.from_flagfile(run.flags_file) if run else TrainConfig(head=task.head_of(model))
    return dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})


def evaluation_data(model, config: TrainConfig, split: str, central_crop: bool | None = None):
    """``split`` of the run's dataset as ``model`` takes it: its input size and channels, and the
    run's test-time preprocessing (``central_crop`` overrides it). Raises pipelines.DataError."""
    import pipelines

    height, width, channels = model.input_shape[1:]
    overrides = dict(image_size=(height, width), channels=channels, task=task.head_of(model))
    if central_crop is not None:
        overrides["central_crop"] = central_crop
    return pipelines.load(config.dataset, split, **steps.eval_data_args(config, **overrides))


def score(model, config: TrainConfig, dataset, info) -> dict:
    """Compile ``model`` as its run did (losses, loss weights, metrics) and evaluate ``dataset``."""
    task.compile_model(model, head=task.head_of(model), weights=config.loss_weights, box_loss=config.box_loss)
    return steps.evaluate(model, dataset, info)


def evaluate_model(model, config: TrainConfig, split: str, central_crop: bool | None = None) -> dict:
    """`score` on `evaluation_data`: ``split``, evaluated as the run evaluated its test split."""
    return score(model, config, *evaluation_data(model, config, split, central_crop))


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}")
    import pipelines

    path, model = cli.open_model(FLAGS.model_path)
    try:
        config = run_config(
            path,
            model,
            dataset=FLAGS.dataset,
            data_dir=FLAGS.data_dir,
            batch_size=FLAGS.batch_size,
            skip_bad_files=FLAGS.skip_bad_files if FLAGS["skip_bad_files"].present else None,
        )
    except ConfigError as error:
        raise cli.UserError(error.flag_message()) from None
    split = FLAGS.split or config.test_split or "test"
    try:
        dataset, info = evaluation_data(model, config, split, FLAGS.central_crop)
    except pipelines.DataError as error:
        raise cli.UserError(f"--dataset={config.dataset} --split={split}: {error}") from None
    num_classes = (model.output["class"] if isinstance(model.output, dict) else model.output).shape[-1]
    if info.num_classes != num_classes:
        raise cli.UserError(
            f"--dataset={config.dataset} has {info.num_classes} classes but the model predicts {num_classes}"
        )
    try:
        metrics = score(model, config, dataset, info)
    except steps.TrainingError as error:  # an image that cannot be decoded, named
        cli.fail(str(error), status=1)
    metrics.update(dataset=config.dataset, split=split, model=path)
    output = FLAGS.output or os.path.join(
        os.path.dirname(path), "eval_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{config.dataset}_{split}") + ".json"
    )
    write_json(output, metrics)
    for key in sorted(metrics):
        print(f"{key:>20}: {metrics[key]}")
    logging.info("metrics written to %s", output)
    print(f"written to {output}")
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
