"""Every export format and quantization of trained runs, side by side: size, accuracy against the
Keras model's, box IoU, the largest probability difference and the time per image, as
`trainers.export` measures them (each artifact loaded in its own runtime and run over the test
split one raw image at a time). The baseline row is the Keras model itself (``predict_on_batch``
on one preprocessed image at a time, in the same process); "x keras" is its time per image over
the artifact's (above 1: the artifact is faster).

    python benchmarks/export_table.py --work=/tmp/export_table RUN_DIR [RUN_DIR ...]
        [--check_split=test] [--calibration_steps=16] [--formats=saved_model,tflite,onnx]

Prints one markdown table (BUILD.md, "Deploying a run"); the artifacts are left under --work.
"""

from __future__ import annotations

import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
VARIANTS = [
    ("saved_model", "none"),
    ("tflite", "none"),
    ("tflite", "float16"),
    ("tflite", "dynamic"),
    ("tflite", "int8"),
    ("onnx", "none"),
]


def define_flags() -> None:
    flags.DEFINE_string("work", None, "Folder for the artifacts (created).")
    flags.DEFINE_string("check_split", None, "Split to check on (default: each run's test split).")
    flags.DEFINE_integer("calibration_steps", 16, "int8: training batches to calibrate on.")
    flags.DEFINE_list("formats", ["saved_model", "tflite", "onnx"], "Formats to export.")
    flags.mark_flag_as_required("work")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def keras_seconds_per_image(saved, split: str) -> float:
    """The Keras model's ``predict_on_batch`` (its compiled predict step) on one preprocessed
    image at a time: the baseline."""
    dataset, _ = saved.evaluation_data(split)
    images = [image[None].numpy() for batch, _ in dataset for image in batch]
    saved.model.predict_on_batch(images[0])  # traced once, not timed
    start = time.perf_counter()
    for image in images:
        saved.model.predict_on_batch(image)
    return (time.perf_counter() - start) / len(images)


def main(argv):
    from trainers import deploy
    from trainers.saved import open_saved

    runs = argv[1:]
    if not runs:
        raise app.UsageError("give one or more run directories")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores", flush=True)
    rows = []
    for run in runs:
        saved = open_saved(run)
        name = os.path.basename(os.path.normpath(run))
        split = FLAGS.check_split or saved.config.test_split or "test"
        baseline = keras_seconds_per_image(saved, split)
        localize = saved.head == "localize"
        keras_row = None
        for format, quantize in VARIANTS:
            if format not in FLAGS.formats:
                continue
            output = os.path.join(FLAGS.work, name, os.path.basename(deploy.default_output(run, format, quantize)))
            result = deploy.export(
                saved,
                format,
                output=output,
                quantize=quantize,
                calibration_steps=FLAGS.calibration_steps,
                check_split=split,
                max_accuracy_drop=100.0,  # measure every variant; the table shows the drops
                progress=lambda line: None,
            )
            check = result.check
            if keras_row is None:
                iou = f"{check.keras_box_iou:.4f}" if localize else "-"
                keras_row = (
                    f"| {name} | keras predict_on_batch | | {check.keras_accuracy:.4f} | {iou} | | "
                    f"{1000 * baseline:.2f} | 1.00 |"
                )
                rows.append(keras_row)
            iou = f"{check.box_iou:.4f}" if localize else "-"
            rows.append(
                f"| {name} | {deploy.describe(format, quantize)} | {result.size_bytes / 1e6:.2f} MB | "
                f"{check.accuracy:.4f} ({100 * (check.accuracy - check.keras_accuracy):+.2f}) | {iou} | "
                f"{check.max_probability_difference:.2g} | "
                f"{1000 * check.seconds_per_image:.2f} | {baseline / check.seconds_per_image:.2f} |"
            )
            print(rows[-1], flush=True)
        print(f"{name}: {check.examples} images of {split!r}", flush=True)
    print()
    print("| run | artifact | size | accuracy (points vs keras) | box IoU | max abs dp | ms/image | x keras |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
