"""Export a trained model for deployment, and check the artifact by running it.

    python -m trainers.export --model_path=runs/shapes --format=saved_model
    python -m trainers.export --model_path=runs/shapes --format=tflite --quantize=int8
    python -m trainers.export --model_path=runs/shapes --format=onnx
    zoo-export ...                              (the same program, installed)

In Python: ``trainers.deploy.export("runs/shapes", "tflite", quantize="int8")``.

Formats: ``saved_model`` (a TensorFlow SavedModel: TF Serving, ``tf.saved_model.load``),
``tflite`` (TensorFlow Lite / LiteRT, for phones; ``--quantize=none|float16|dynamic|int8``) and
``onnx`` (for runtimes outside TensorFlow, e.g. onnxruntime). Each is written by Keras's own
exporter (``keras.Model.export``).

What every artifact takes and gives, so that no caller needs to know how the run preprocessed:
  in:  ``images``, float32 (batch, height, width, channels), raw pixels in [0, 255], any height
       and width (one size per call);
  out: ``class``, the class probabilities (batch, classes); for a localize model also ``bbox``
       (batch, 4), [ymin, xmin, ymax, xmax] normalized to the image given.
The run's test-time preprocessing is inside: the central crop its evaluation applies (a run
trained on random crops), then the bilinear resize to the model's input size; the model scales
the pixels itself, as every zoo model does. A box predicted on the crop is mapped back to the
whole image.

Quantization (TFLite): ``float16`` stores the weights as float16; ``dynamic`` stores them as
int8 and quantizes activations on the fly; ``int8`` quantizes weights and activations with
ranges calibrated on ``--calibration_steps`` batches of the run's own training pipeline (its
augmentation included). Inputs and outputs stay float32.

Every artifact is checked by running it: loaded back in its own runtime (TensorFlow for the
SavedModel, the TFLite interpreter, onnxruntime), it predicts the run's test split (or
``--check_split``) one raw image at a time, and the command prints its accuracy (and mean box
IoU) beside the Keras model's on the same split as `trainers.evaluate` feeds it, the largest
difference in probabilities, the file size and the time per image on this CPU. An artifact whose
accuracy is more than ``--max_accuracy_drop`` points below the Keras model's is kept under a
name that says so (``model-int8.failed-check.tflite``) and the command exits with status 1.

Beside each artifact, ``ARTIFACT.json`` says what it is (format, quantization, outputs, class
names, the check's numbers). It also marks the path as this program's: an existing path without
it is never overwritten. `trainers.predict --model_path=ARTIFACT` predicts with any artifact.
"""

from __future__ import annotations

from absl import flags

from trainers import cli
from trainers.deploy import (
    DEFAULT_CALIBRATION_STEPS,
    DEFAULT_MAX_ACCURACY_DROP,
    FORMATS,
    QUANTIZATIONS,
    ExportError,
    check_destination,
    check_output_name,
    check_request,
    describe,
    export,
    format_check,
    sidecar,
)

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The flags of `python -m trainers.export` (into ``flag_values``, absl's global flags by default)."""
    define = dict(flag_values=flag_values)
    flags.DEFINE_string("model_path", None, "A run directory, or a .keras file.", **define)
    flags.DEFINE_enum("format", "saved_model", FORMATS, "What to export to.", **define)
    flags.DEFINE_string(
        "quantize",
        "none",
        f"TFLite only: {', '.join(QUANTIZATIONS)} (int8 is calibrated on the training pipeline).",
        **define,
    )
    flags.DEFINE_string(
        "output",
        None,
        "Where to write the artifact (default: deploy/ beside the model); an existing one must be ours.",
        **define,
    )
    flags.DEFINE_string(
        "outputs",
        None,
        "What the artifact gives: 'class' or 'class,bbox' (default: every output the model has).",
        **define,
    )
    flags.DEFINE_integer(
        "calibration_steps", DEFAULT_CALIBRATION_STEPS, "--quantize=int8: training batches to calibrate on.", **define
    )
    flags.DEFINE_string(
        "dataset",
        None,
        "Data to check (and calibrate) on: 'shapes', 'dir:PATH' or a TFDS name (default: the run's own).",
        **define,
    )
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: the run's own).", **define)
    flags.DEFINE_string(
        "check_split",
        None,
        "Split to check the artifact on, TFDS syntax (default: the run's test split; '' for none).",
        **define,
    )
    flags.DEFINE_float(
        "max_accuracy_drop",
        DEFAULT_MAX_ACCURACY_DROP,
        "Points of accuracy the artifact may lose before it fails its check.",
        **define,
    )
    flags.mark_flag_as_required("model_path", flag_values=flag_values)


def main(argv, flag_values: flags.FlagValues = FLAGS):
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments {argv[1:]}")
    import pipelines

    given = flag_values
    # --format is an enum: absl refuses an unknown one in one line before main runs.
    try:
        check_request(given.format, given.quantize, given.outputs)
        if given.output is not None:
            check_output_name(given.output, given.format)
            check_destination(given.output)
    except ExportError as error:
        raise cli.UserError(str(error)) from None
    saved = cli.open_saved(given.model_path, dataset=given.dataset, data_dir=given.data_dir)
    if saved.weights_note:
        print(saved.weights_note)
    try:
        exported = export(
            saved,
            given.format,
            output=given.output,
            quantize=given.quantize,
            outputs=given.outputs,
            calibration_steps=given.calibration_steps,
            check_split=given.check_split,
            max_accuracy_drop=given.max_accuracy_drop,
        )
    except ExportError as error:
        raise cli.UserError(str(error)) from None
    except pipelines.DataError as error:
        raise cli.UserError(
            f"--dataset={saved.config.dataset}: {error} (nothing was written; --check_split='' exports without "
            "the check, and --quantize=int8 needs the training data)"
        ) from None
    print(f"written to {exported.path} ({exported.size_bytes / 1e6:.2f} MB); described in {sidecar(exported.path)}")
    if exported.check is not None:
        print(format_check(exported))
        if not exported.passed:
            cli.fail(
                f"the {describe(exported.format, exported.quantization)} artifact's accuracy is "
                f"{exported.check.accuracy_drop:.2f} points below the Keras model's (more than "
                f"--max_accuracy_drop={given.max_accuracy_drop:g}); kept as {exported.path}",
                status=1,
            )
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
