"""Evaluate a saved model on a split: `python -m trainers.evaluate --model_path=RUN_DIR [--split=test]`.

On a run directory, the run's own settings apply (dataset, test split, loss weights, the test-time
central crop), so evaluating its test split reproduces its metrics.json; flags given override
them. A bare .keras file is evaluated with the defaults. Prints the metrics and writes them as JSON
(--output; default: eval_<dataset>_<split>.json beside the model), with the class report: top-5
accuracy (more than 5 classes), each class's precision, recall and F1, and the confusion matrix.
"""

from __future__ import annotations

import os
import re

from absl import flags, logging

from pipelines import durable
from trainers import cli, config, steps

FLAGS = flags.FLAGS


def define_flags() -> None:
    from_run = " (default: the run's own)"
    # The model's own input size applies: no --image_size.
    config.define_flags(
        names=[name for name in config.DATA_FLAGS if name != "image_size"],
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


def main(argv):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}")

    saved = cli.open_saved(
        FLAGS.model_path,
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        batch_size=FLAGS.batch_size,
        skip_bad_files=FLAGS.skip_bad_files if FLAGS["skip_bad_files"].present else None,
        max_image_pixels=FLAGS.max_image_pixels if FLAGS["max_image_pixels"].present else None,
        follow_links=FLAGS.follow_links if FLAGS["follow_links"].present else None,
    )
    if saved.weights_note:
        print(saved.weights_note)
    dataset_name = saved.config.dataset
    split = FLAGS.split or saved.config.test_split or "test"
    output = FLAGS.output or os.path.join(
        os.path.dirname(saved.path), "eval_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset_name}_{split}") + ".json"
    )
    problem = (
        "is a folder; give the JSON file to write"
        if os.path.isdir(output)
        else durable.unwritable(os.path.dirname(os.path.abspath(output)))
    )
    if problem:  # before the evaluation, not after it
        raise cli.UserError(f"--output={output}: {problem}")
    dataset, info = cli.evaluation_data(saved, split, FLAGS.central_crop)
    try:
        metrics = saved.score(dataset, info, report=True)
    except steps.TrainingError as error:  # an image that cannot be decoded, named
        cli.fail(str(error), status=1)
    metrics.update(dataset=dataset_name, split=split, model=saved.path)
    for key in sorted(metrics):
        if key != "report":
            print(f"{key:>20}: {metrics[key]}")
    from trainers.metrics import format_report

    print(format_report(metrics["report"]))
    try:
        durable.write_json(output, metrics)
    except OSError as error:  # e.g. the disk filled during the evaluation: the metrics are printed above
        cli.fail(f"--output={output}: the metrics above could not be written ({error.strerror or error})", status=1)
    logging.info("metrics written to %s", output)
    print(f"written to {output}")
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
