"""Deploying a trained model: artifacts that take raw pixels, checked by running them.

    exported = export("runs/shapes", "tflite", quantize="int8")   # the Python side of trainers.export
    exported.path, exported.check.accuracy, exported.check.seconds_per_image
    artifact = Artifact.open(exported.path); artifact(images)      # in its own runtime

`python -m trainers.export` (the program) says what an artifact takes and gives, what the
quantizations are, and how the check works.

Every artifact takes ``images``, float32 (batch, height, width, channels), raw pixels in
[0, 255], of any size (one size per call), and gives ``class`` (the probabilities) and, for a
localize model, ``bbox`` ([ymin, xmin, ymax, xmax] on the image given). The run's test-time
preprocessing is inside (`deployable`): the central crop its evaluation applies, the bilinear
resize to the model's input size; the model scales the pixels itself. Each is written by Keras's
own exporter (``keras.Model.export``: ``tf_saved_model``, ``litert``, ``onnx``).

Beside each artifact ``ARTIFACT.json`` says what it is (format, quantization, outputs, class
names, the check's numbers) and marks the path as ours: an existing path without it is never
overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging as std_logging
import os
import tempfile
import time
import warnings

from trainers.saved import EXPORTED_FILES
from zoo.common import error_line

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
OUTPUTS = ("class", "bbox")
# The runtime each format is checked (and predicted) with.
RUNTIMES = {"saved_model": "TensorFlow", "tflite": "the TFLite interpreter", "onnx": "onnxruntime"}
PRODUCER = "trainers.export"  # the sidecar's mark: a path is ours when its sidecar says this
FAILED = "failed-check"
DEFAULT_CALIBRATION_STEPS = 16
DEFAULT_MAX_ACCURACY_DROP = 1.0  # points


class ExportError(ValueError):
    """A request that cannot be carried out, with the one line that says why."""


# ------------------------------------------------------------------------------------- names


def sidecar(path: str) -> str:
    """The JSON file that describes the artifact at ``path`` (a file or a SavedModel folder)."""
    return os.path.normpath(path) + ".json"


def read_sidecar(path: str) -> dict | None:
    """The description of the artifact at ``path``, or None when it is not one of ours."""
    from pipelines.durable import read_json

    meta = read_json(sidecar(path), None)
    return meta if isinstance(meta, dict) and meta.get("producer") == PRODUCER else None


def is_artifact(path: str) -> bool:
    return os.path.exists(path) and read_sidecar(path) is not None


def default_output(model_file: str, format: str, quantize: str = "none") -> str:
    """``deploy/`` beside the model: ``saved_model/``, ``model.tflite`` (``model-int8.tflite``
    when quantized), ``model.onnx``."""
    folder = os.path.join(os.path.dirname(os.path.abspath(model_file)), "deploy")
    if format == "saved_model":
        return os.path.join(folder, "saved_model")
    if format == "tflite":
        return os.path.join(folder, "model.tflite" if quantize == "none" else f"model-{quantize}.tflite")
    return os.path.join(folder, "model.onnx")


def describe(format: str, quantize: str) -> str:
    return format if quantize == "none" else f"{format} {quantize}"


def failed_name(path: str) -> str:
    """Where an artifact that failed its check is kept: ``model-int8.failed-check.tflite``."""
    path = os.path.normpath(path)
    root, extension = os.path.splitext(path)
    if os.path.basename(path) == "saved_model" or not extension:
        return f"{path}.{FAILED}"
    return f"{root}.{FAILED}{extension}"


# ---------------------------------------------------------------------------------- validation


def check_request(format: str, quantize: str, outputs, head: str | None = None) -> tuple[str, ...]:
    """The outputs to export, after checking the request; ExportError naming a bad value."""
    if format not in FORMATS:
        raise ExportError(f"--format={format}: unknown format; accepted: {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize={quantize}: unknown quantization; accepted: {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and format != "tflite":
        raise ExportError(f"--quantize={quantize} applies to --format=tflite only (received --format={format})")
    if isinstance(outputs, str):
        outputs = [name.strip() for name in outputs.split(",") if name.strip()]
    outputs = tuple(outputs or ())
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown or (outputs and "class" not in outputs):
        raise ExportError(f"--outputs={','.join(outputs)}: accepted: 'class' or 'class,bbox'")
    if head is not None:
        has = ("class", "bbox") if head == "localize" else ("class",)
        if "bbox" in outputs and "bbox" not in has:
            raise ExportError(
                f"--outputs={','.join(outputs)}: the model has no box head (it classifies only); accepted: class"
            )
        outputs = outputs or has
    return outputs


# A file format's name is its extension's: {"tflite": ".tflite", "onnx": ".onnx"} (Keras's LiteRT
# exporter refuses any other extension).
EXTENSIONS = {extension[1:]: extension for extension in EXPORTED_FILES}


def check_output_name(path: str, format: str) -> None:
    """ExportError when ``path`` does not end as a ``format`` file must."""
    extension = EXTENSIONS.get(format)
    if extension and not os.path.normpath(path).endswith(extension):
        raise ExportError(f"--output={path}: a {format} artifact's name must end in {extension}")


def check_destination(path: str) -> None:
    """ExportError unless ``path`` is free or holds one of our artifacts (which may be replaced)."""
    if os.path.lexists(path) and read_sidecar(path) is None:
        raise ExportError(
            f"--output={path} exists and is not an artifact of {PRODUCER} (it has no "
            f"{os.path.basename(sidecar(path))}); nothing was overwritten: choose another --output or remove it"
        )


# ----------------------------------------------------------------------------- the artifact model


def computes_in_float32(model) -> bool:
    """Whether every layer of ``model`` computes in float32 (not a run trained under mixed precision)."""
    from zoo.compat import nested_layers

    return all(layer.dtype_policy.name == "float32" for layer in nested_layers(model) if hasattr(layer, "dtype_policy"))


def float32_copy(model):
    """``model`` itself when it computes in float32, else a float32 copy with the same weights (a
    run trained under mixed precision): TFLite's converter and ONNX want float32 graphs."""
    import keras

    from zoo.compat import nested_layers

    if computes_in_float32(model):
        return model

    def to_float32(config):
        if isinstance(config, dict):
            if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
                return {**config, "config": {**config["config"], "name": "float32"}}
            return {key: to_float32(value) for key, value in config.items()}
        if isinstance(config, list):
            return [to_float32(value) for value in config]
        return config

    copy = model.__class__.from_config(to_float32(model.get_config()))
    copy.set_weights(model.get_weights())
    for layer in nested_layers(copy):
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # its mean and variance tensors, from the weights just set
    return copy


def deployable(model, *, central_crop: bool, outputs=("class",)):
    """``model`` behind the run's test-time preprocessing: a Keras model taking raw pixels of any
    size and giving ``{"class": probabilities}`` (``"bbox"`` too when asked, on the whole image)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from pipelines import ops

    height, width, channels = model.input_shape[1:]

    # Layers of this function only: an artifact is a traced graph, never a config to rebuild.
    class TestTimePreprocessing(keras.layers.Layer):
        """The central crop (when the run's evaluation applies it), then the bilinear resize of
        `pipelines.ops.resize`, on a batch of raw pixels."""

        def call(self, images):
            if central_crop:
                shape = tf.shape(images)
                oy, ox, crop_height, crop_width = ops.central_crop_window(shape[1], shape[2])
                images = tf.image.crop_to_bounding_box(images, oy, ox, crop_height, crop_width)
            return tf.image.resize(images, (height, width), method="bilinear", antialias=False)

    class BoxOnWholeImage(keras.layers.Layer):
        """A box predicted on the central crop, in the whole image's coordinates."""

        def call(self, images, box):
            if not central_crop:
                return box
            shape = tf.shape(images)
            oy, ox, crop_height, crop_width = ops.central_crop_window(shape[1], shape[2])
            return ops.uncrop_box(box, oy, ox, crop_height, crop_width, shape[1], shape[2])

    images = keras.Input((None, None, channels), name="images")
    predicted = model(TestTimePreprocessing(name="test_time_preprocessing")(images))
    if isinstance(predicted, dict):
        out = {"class": predicted["class"]}
        if "bbox" in outputs:
            out["bbox"] = BoxOnWholeImage(name="box_on_whole_image")(images, predicted["bbox"])
    else:
        out = {"class": predicted}
    wrapper = keras.Model(images, out, name=f"{model.name}_deployable")
    # Keras's ONNX exporter refuses a model that was never called ("The model provided has never called").
    wrapper(np.zeros((1, height, width, channels), np.float32))
    return wrapper


# ------------------------------------------------------------------------------------- runtimes


class Artifact:
    """An exported model loaded in its own runtime; called on a float32 batch of raw pixels as a
    Keras model is (``artifact(images)``), it gives what the zoo model gives: the probabilities,
    or ``{"class", "bbox"}`` for a box model."""

    def __init__(self, path: str, meta: dict):
        self.path = path
        self.format = meta["format"]
        self.outputs = tuple(meta["outputs"])
        self.channels = int(meta["channels"])
        self.class_names = tuple(meta["class_names"]) if meta.get("class_names") else None
        self.num_classes = int(meta["num_classes"])
        self._run = {"saved_model": self._saved_model, "tflite": self._tflite, "onnx": self._onnx}[self.format]()

    @classmethod
    def open(cls, path: str) -> Artifact:
        """The artifact at ``path``; ExportError when it is not one of this program's."""
        meta = read_sidecar(path)
        if meta is None or not os.path.exists(path):
            raise ExportError(
                f"{path} is not an artifact of {PRODUCER} (no {os.path.basename(sidecar(path))} beside it)"
            )
        if meta.get("format") not in FORMATS:
            raise ExportError(f"{sidecar(path)} names an unknown format {meta.get('format')!r}")
        try:
            return cls(path, meta)
        except ImportError as error:
            raise ExportError(f"{path}: its runtime is not installed ({error_line(error)}); {INSTALL_HINT}") from None
        except Exception as error:  # a damaged file: each runtime raises its own type
            raise ExportError(f"{path}: {RUNTIMES[meta['format']]} cannot load it ({error_line(error)})") from None

    @property
    def head(self) -> str:
        return "localize" if "bbox" in self.outputs else "classify"

    def __call__(self, images, training=False):
        import numpy as np

        named = self._run(np.asarray(images, dtype=np.float32))
        if len(named) == 1:  # one output, whatever the runtime named it
            named = {"class": next(iter(named.values()))}
        missing = [name for name in self.outputs if name not in named]
        if missing:
            raise ExportError(f"{self.path} gives outputs {sorted(named)}, not {list(self.outputs)}")
        if self.head == "classify":
            return np.asarray(named["class"])
        return {name: np.asarray(named[name]) for name in self.outputs}

    def _saved_model(self):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(self.path)  # kept: its functions use its variables

        def run(images):
            out = self._loaded.serve(tf.constant(images))
            return {k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else {"class": out.numpy()}

        return run

    def _tflite(self):
        from zoo.compat import tflite_interpreter

        interpreter = tflite_interpreter(self.path)
        runner = interpreter.get_signature_runner()
        (input_name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
        return lambda images: runner(**{input_name: images})

    def _onnx(self):
        import onnxruntime

        session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        (input_name,) = [i.name for i in session.get_inputs()]
        names = [o.name for o in session.get_outputs()]
        return lambda images: dict(zip(names, session.run(None, {input_name: images})))


INSTALL_HINT = "pip install 'keras-zoo-trainers[export]' (tf2onnx, onnx, onnxruntime)"


# ----------------------------------------------------------------------------------------- writing


def _write(model, format: str, path: str, quantize: str, calibration) -> None:
    """``model`` written by Keras's exporter as ``format`` at ``path`` (a new path); ExportError
    naming the exporter and the versions when it fails."""
    import keras
    import tensorflow as tf

    options, shim = {}, contextlib.nullcontext()
    if format == "saved_model":
        options["format"] = "tf_saved_model"
    elif format == "tflite":
        options["format"] = "litert"
        if quantize != "none":
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            options["target_spec"] = {"supported_types": [tf.float16]}
        if quantize == "int8":
            options["representative_dataset"] = calibration
    else:
        try:
            import tf2onnx  # noqa: F401  (keras.Model.export imports it lazily: say what is missing first)
        except ImportError:
            raise ExportError(f"--format=onnx needs tf2onnx: {INSTALL_HINT}") from None
        from zoo.compat import normalization_reads_variables

        std_logging.getLogger("tf2onnx").setLevel(std_logging.ERROR)
        options["format"] = "onnx"
        shim = normalization_reads_variables(model)
    with shim:
        try:
            model.export(path, verbose=False, **options)
        except Exception as error:  # the exporter's own failure, in one line
            versions = f"keras {keras.__version__}, tensorflow {tf.__version__}"
            if format == "onnx":
                versions += f", tf2onnx {tf2onnx.__version__}"
            raise ExportError(
                f"--format={format}{'' if quantize == 'none' else f' --quantize={quantize}'}: "
                f"keras.Model.export(format={options['format']!r}) failed with {versions} ({error_line(error)})"
            ) from None


@contextlib.contextmanager
def _quiet_exporters():
    """The exporters' INFO lines (renamed SavedModel inputs, saver timings, tf2onnx's steps, the
    TFLite converter's quantization line) and Keras's numpy 2 FutureWarning from its tf2onnx patch
    hidden: they drown the program's own."""
    from absl import logging as absl_logging

    from zoo.compat import tflite_converter_quietly

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        with warnings.catch_warnings(), tflite_converter_quietly():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"keras\.src\.export")
            yield
    finally:
        absl_logging.set_verbosity(verbosity)


def _calibration_batches(saved, steps: int):
    """A representative dataset for int8: ``steps`` batches of the run's training pipeline, its
    augmentation included, at the model's input size."""
    import pipelines
    from trainers import steps as run_steps

    height, width, channels = saved.model.input_shape[1:]
    config = saved.config
    try:
        dataset, _ = pipelines.load(
            config.dataset,
            config.train_split,
            **run_steps.training_data_args(config, image_size=(height, width), channels=channels, task=saved.head),
        )
    except pipelines.DataError as error:
        raise ExportError(
            f"--quantize=int8 calibrates on the run's training data, which cannot be loaded "
            f"(--dataset={config.dataset} --train_split={config.train_split}: {error})"
        ) from None

    def batches():
        for index, (images, _) in enumerate(dataset):
            if index >= steps:
                break
            yield [images]

    return batches


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


# ----------------------------------------------------------------------------------------- checking


@dataclasses.dataclass(frozen=True)
class Check:
    """An artifact run over a split beside the Keras model it came from."""

    split: str
    examples: int
    keras_accuracy: float
    accuracy: float
    max_probability_difference: float
    seconds_per_image: float
    max_accuracy_drop: float  # points
    keras_box_iou: float | None = None
    box_iou: float | None = None

    @property
    def accuracy_drop(self) -> float:
        """In points: how far the artifact's accuracy is below the Keras model's."""
        return 100.0 * (self.keras_accuracy - self.accuracy)

    @property
    def passed(self) -> bool:
        return self.accuracy_drop <= self.max_accuracy_drop + 1e-9


def _raw_split(saved, split: str, head: str):
    """``split`` as raw pixels for an artifact of ``head``: one image per batch, each at its own
    size, never cropped (the artifact crops and resizes itself), boxes on the whole image. A drawn
    source (shapes) has no size of its own: it is drawn at the model's input size, as the run drew it."""
    import pipelines
    from pipelines.sources import DRAWN
    from trainers import steps

    height, width, channels = saved.model.input_shape[1:]
    size = (height, width) if saved.config.dataset in DRAWN else None
    args = steps.eval_data_args(saved.config, channels=channels, task=head, central_crop=False, batch_size=1)
    return pipelines.load(saved.config.dataset, split, **{**args, "image_size": size})


class _Timed:
    """An artifact called as `metrics.predict_split` calls a model, the time of its calls added up;
    the first call (which allocates, or traces) is made once more, untimed, before it."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, images, training=False):
        if not self.calls:
            self.artifact(images)
        start = time.perf_counter()
        out = self.artifact(images)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def check(artifact: Artifact, saved, split: str, max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP) -> Check:
    """Run ``artifact`` over ``split`` one raw image at a time, and the Keras model over the same
    split as `trainers.evaluate` feeds it; raises pipelines.DataError for data that cannot be had."""
    import numpy as np

    from trainers import metrics

    dataset, info = saved.evaluation_data(split)
    mismatch = saved.data_mismatch(info)
    if mismatch:
        raise ExportError(f"--check_split={split}: {mismatch}, or --check_split=''")
    reference = metrics.predict_split(saved.model, dataset)
    timed = _Timed(artifact)
    got = metrics.predict_split(timed, _raw_split(saved, split, artifact.head)[0])
    if len(got.probabilities) != len(reference.probabilities):
        raise ExportError(
            f"--check_split={split}: {len(got.probabilities)} raw images but {len(reference.probabilities)} evaluated"
        )
    box_iou = keras_box_iou = None
    if got.boxes is not None:
        box_iou = float(np.mean(metrics.box_iou(got.true_boxes, got.boxes)))
        keras_box_iou = float(np.mean(metrics.box_iou(reference.true_boxes, reference.boxes)))
    return Check(
        split=split,
        examples=len(got.probabilities),
        keras_accuracy=metrics.top_k_accuracy(reference.true_classes, reference.probabilities, k=1),
        accuracy=metrics.top_k_accuracy(got.true_classes, got.probabilities, k=1),
        max_probability_difference=float(np.max(np.abs(got.probabilities - reference.probabilities))),
        seconds_per_image=timed.seconds / timed.calls,
        max_accuracy_drop=float(max_accuracy_drop),
        keras_box_iou=keras_box_iou,
        box_iou=box_iou,
    )


# ------------------------------------------------------------------------------------------ export


@dataclasses.dataclass(frozen=True)
class Exported:
    path: str  # where the artifact is: the --output, or its failed-check name
    format: str
    quantization: str
    size_bytes: int
    check: Check | None

    @property
    def passed(self) -> bool:
        return self.check is None or self.check.passed


def export(
    model_path,
    format: str = "saved_model",
    *,
    output: str | None = None,
    quantize: str = "none",
    outputs=None,
    calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
    check_split: str | None = None,
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    progress=print,
) -> Exported:
    """Export the model at ``model_path`` (a run directory or ``.keras`` file, or an opened
    `trainers.saved.Saved`) as ``format``, check it on ``check_split`` (default: the run's test
    split; ``""``: no check) and put it at ``output`` (default `default_output`), or at its
    `failed_name` when it loses more than ``max_accuracy_drop`` points of accuracy.

    Raises ExportError (a bad request, an exporter's failure), FileNotFoundError/ValueError (no
    model there) and pipelines.DataError (the check's or the calibration's data)."""
    from pipelines.durable import atomic_path, write_json
    from trainers import saved as saved_models

    check_request(format, quantize, outputs)
    if not (isinstance(calibration_steps, int) and calibration_steps >= 1):
        raise ExportError(f"--calibration_steps={calibration_steps}: give a whole number of batches >= 1")
    if not max_accuracy_drop >= 0:
        raise ExportError(f"--max_accuracy_drop={max_accuracy_drop}: give points of accuracy >= 0")
    if output is not None:
        check_output_name(output, format)
        check_destination(output)  # before the model is read: nothing of the user's is at risk
    saved = saved_models.open_saved(model_path) if isinstance(model_path, str) else model_path
    outputs = check_request(format, quantize, outputs, head=saved.head)
    output = output or default_output(saved.path, format, quantize)
    check_destination(output)
    if check_split is None:
        check_split = saved.config.test_split or "test"

    model = deployable(float32_copy(saved.model), central_crop=saved.central_crop, outputs=outputs)
    calibration = _calibration_batches(saved, calibration_steps) if quantize == "int8" else None
    parent = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(parent, exist_ok=True)
        workspace = tempfile.TemporaryDirectory(dir=parent, prefix=".export-")
    except OSError as error:
        raise ExportError(f"--output={output}: cannot write in {parent} ({error.strerror})") from None
    with workspace as scratch:
        written = os.path.join(scratch, os.path.basename(os.path.normpath(output)))
        started = time.perf_counter()
        with _quiet_exporters():
            _write(model, format, written, quantize, calibration)
        progress(f"exported {describe(format, quantize)} in {time.perf_counter() - started:.1f} s")
        meta = {
            "producer": PRODUCER,
            "format": format,
            "quantization": quantize,
            "outputs": list(outputs),
            "channels": int(saved.model.input_shape[-1]),
            "model_input_size": [int(v) for v in saved.model.input_shape[1:3]],
            "central_crop": bool(saved.central_crop),
            "num_classes": int(saved.num_classes),
            "class_names": list(saved.class_names() or []),
            "model": os.path.abspath(saved.path),
        }
        write_json(sidecar(written), meta)
        result = None
        if check_split:
            progress(f"checking it with {RUNTIMES[format]} on {check_split!r} ...")
            result = check(Artifact.open(written), saved, check_split, max_accuracy_drop)
            meta["check"] = {
                **dataclasses.asdict(result),
                "accuracy_drop": result.accuracy_drop,
                "passed": result.passed,
            }
        destination = output if result is None or result.passed else failed_name(output)
        if destination != output:
            check_destination(destination)
        size = _size(written)
        meta["size_bytes"] = size
        # The description first: a path with an artifact but no description would read as not ours.
        write_json(sidecar(destination), meta)
        with atomic_path(destination, directory=os.path.isdir(written)) as temporary:
            os.replace(written, temporary)
    return Exported(destination, format, quantize, size, result)


def format_check(exported: Exported) -> str:
    """The check as a small table: the Keras model and the artifact side by side."""
    result = exported.check
    boxes = result.box_iou is not None
    header = f"{'':>12} {'accuracy':>9}" + (f" {'box IoU':>8}" if boxes else "") + f" {'max |dp|':>9} {'ms/image':>9}"
    keras_row = f"{'keras':>12} {result.keras_accuracy:>9.4f}"
    if boxes:
        keras_row += f" {result.keras_box_iou:>8.4f}" if result.keras_box_iou is not None else f" {'':>8}"
    keras_row += f" {'':>9} {'':>9}"
    row = f"{describe(exported.format, exported.quantization):>12} {result.accuracy:>9.4f}" + (
        f" {result.box_iou:>8.4f}" if boxes else ""
    )
    row += f" {result.max_probability_difference:>9.2g} {1000 * result.seconds_per_image:>9.3f}"
    return "\n".join(
        [
            f"checked on {result.split!r}: {result.examples} raw images, one at a time "
            f"(the Keras model as trainers.evaluate feeds it)",
            header,
            keras_row,
            row,
        ]
    )
