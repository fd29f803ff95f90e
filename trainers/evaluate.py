"""Evaluate a saved model on a split: `python -m trainers.evaluate --model_path=RUN_DIR --split=test`.

Prints the metrics and writes them as JSON (--output; default: eval_<dataset>_<split>.json beside
the model). The task (classify / localize) and image size come from the model itself.
"""

from __future__ import annotations

import os
import re

from absl import flags, logging

from trainers import common
from trainers.common import FLAGS, UserError

flags.DEFINE_string("model_path", None, "A .keras file, or a run directory holding model.keras.")
flags.DEFINE_string("dataset", "shapes", "'shapes', 'dir:PATH' or a TFDS name.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_string("split", "test", "Split to evaluate, TFDS syntax.")
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_boolean("central_crop", False, "Central-crop before resizing (the seed's eval crop).")
flags.DEFINE_boolean("skip_bad_files", False, "Skip unreadable image files (with a warning).")
flags.DEFINE_string("output", None, "Where to write the metrics JSON.")
flags.mark_flag_as_required("model_path")


def compile_for_evaluation(model):
    import keras

    if common.task_of(model) == "classify":
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(
            loss={"class": "sparse_categorical_crossentropy", "bbox": "mse"},
            metrics={"class": ["accuracy"], "bbox": [keras.metrics.MeanSquaredError(name="mse")]},
        )


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}")
    import pipelines

    path = common.resolve_model_path(FLAGS.model_path)
    model = common.load_model(path)
    height, width, channels = model.input_shape[1:]
    try:
        dataset, info = pipelines.load(
            FLAGS.dataset, FLAGS.split, task=common.task_of(model), image_size=(height, width),
            batch_size=FLAGS.batch_size, data_dir=FLAGS.data_dir, channels=channels,
            central_crop=FLAGS.central_crop, skip_bad_files=FLAGS.skip_bad_files,
        )
    except pipelines.DataError as error:
        raise UserError(f"--dataset={FLAGS.dataset} --split={FLAGS.split}: {error}") from None
    num_classes = model.output["class"].shape[-1] if isinstance(model.output, dict) else model.output.shape[-1]
    if info.num_classes != num_classes:
        raise UserError(
            f"--dataset={FLAGS.dataset} has {info.num_classes} classes but the model predicts {num_classes}"
        )
    compile_for_evaluation(model)
    metrics = {k: float(v) for k, v in model.evaluate(dataset, return_dict=True, verbose=0).items()}
    metrics.update(dataset=FLAGS.dataset, split=FLAGS.split, num_examples=info.num_examples, model=path)
    output = FLAGS.output or os.path.join(
        os.path.dirname(path), "eval_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{FLAGS.dataset}_{FLAGS.split}") + ".json"
    )
    common.write_json(output, metrics)
    for key in sorted(metrics):
        print(f"{key:>20}: {metrics[key]}")
    logging.info("metrics written to %s", output)
    print(f"written to {output}")
    return 0


def entry_point():
    common.run(main)


if __name__ == "__main__":
    entry_point()
