"""Reading a trained model back: the one place that interprets a ``--model_path``.

    saved = open_saved("runs/x")                # a run directory, or any .keras file
    saved.model, saved.config, saved.class_names, saved.central_crop
    dataset, info = saved.evaluation_data("test")   # the split as the run evaluated it
    metrics = saved.evaluate("test")

A run directory (or its ``model.keras``) brings its settings (``flags.txt``): dataset, loss
weights, the test-time crop. A bare ``.keras`` file brings none: it is read with the trainer's
defaults, so `trainers.evaluate`, `trainers.predict` and `trainers.show` treat the same model the
same way. Errors a user can fix are ValueErrors (FileNotFoundError for a missing model,
`ConfigError` for a flags.txt that does not parse, `pipelines.DataError` for the data).
"""

from __future__ import annotations

import dataclasses
import json
import os

from pipelines import tuning
from trainers import task
from trainers.config import TrainConfig
from trainers.rundir import RunDir
from zoo.common import error_line

# What an exported model is made of: a SavedModel folder holds this file; TFLite and ONNX files
# end so (`trainers.deploy` names its artifacts by this table). None of them is a Keras model.
SAVED_MODEL_FILE = "saved_model.pb"
EXPORTED_FILES = {".tflite": "a TFLite file", ".onnx": "an ONNX file"}


def locate(model_path: str) -> tuple[str, RunDir | None]:
    """``(model file, its run directory or None)`` of a ``.keras`` file or a run directory;
    FileNotFoundError when there is no model there, ValueError for an exported model (a SavedModel
    folder, a .tflite or .onnx file), each naming the run directory beside it where there is one."""
    path = os.path.join(model_path, RunDir.MODEL) if os.path.isdir(model_path) else model_path
    exported = exported_kind(model_path)
    if exported:
        raise ValueError(f"{model_path} is {exported}, not a run directory or a .keras file{run_hint(model_path)}")
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(model_path, tuning.SETTINGS_FILE)):
            trials = os.path.join(model_path, tuning.TRIALS_DIR)
            raise FileNotFoundError(
                f"{model_path} is a search of trainers.tune, not a run: each trial's run is {trials}/TRIAL/execution0"
            )
        missing = f"no such model file ({path})" if path != model_path else "no such model file"
        raise FileNotFoundError(missing + run_hint(model_path))
    root = os.path.dirname(os.path.abspath(path))
    run = RunDir(root) if os.path.isfile(os.path.join(root, RunDir.FLAGS)) else None
    return path, run


def exported_kind(path: str) -> str | None:
    """What kind of exported model ``path`` is ("a SavedModel folder", "a TFLite file", "an ONNX
    file"), or None for anything else."""
    if os.path.isdir(path):
        return "a SavedModel folder" if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)) else None
    return EXPORTED_FILES.get(os.path.splitext(path)[1].lower()) if os.path.isfile(path) else None


def run_hint(path: str) -> str:
    """The end of an error line for a path inside a run directory, finished or not (the run's
    export/, deploy/, checkpoints/ or logs/, one or two levels down): "; its run directory is DIR";
    else ""."""
    folder = os.path.dirname(os.path.normpath(path))
    for _ in range(2):
        if folder and any(os.path.isfile(os.path.join(folder, name)) for name in (RunDir.MODEL, RunDir.FLAGS)):
            return f"; its run directory is {folder}"
        folder = os.path.dirname(folder)
    return ""


def load_model(path: str):
    """A saved zoo model (safe mode: no code is loaded); ValueError when the file is not one."""
    import keras

    import zoo.layers  # noqa: F401  (registers the zoo's own layers, which saved models name)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # a file that is not a Keras model: several exception types
        reason = error_line(error)
        raise ValueError(f"{path} is not a valid Keras model file ({reason})") from None


def read_class_names(path: str, num_classes: int) -> tuple[str, ...]:
    """The class names a JSON list in ``path`` gives a model of ``num_classes``; ValueError when
    the file does not hold that many names."""
    try:
        with open(path) as f:
            names = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable JSON list of class names ({error})") from None
    if not isinstance(names, list) or len(names) != num_classes:
        count = len(names) if isinstance(names, list) else "no list of"
        raise ValueError(f"{path} lists {count} names for a model of {num_classes} classes")
    return tuple(str(name) for name in names)


@dataclasses.dataclass(frozen=True)
class Saved:
    """A trained model and what it was trained with."""

    path: str  # the .keras file
    model: object  # the keras.Model, uncompiled
    run: RunDir | None  # its run directory, for a model that has one
    config: TrainConfig  # the run's settings (with any overrides), or the defaults for a bare file

    @property
    def head(self) -> str:
        return task.head_of(self.model)

    @property
    def num_classes(self) -> int:
        output = self.model.output["class"] if isinstance(self.model.output, dict) else self.model.output
        return output.shape[-1]

    @property
    def central_crop(self) -> bool:
        """The test-time crop the run's evaluation applied (`trainers.task`); off for a bare file."""
        return task.test_time_preprocessing(self.config)["central_crop"]

    @property
    def weights_note(self) -> str | None:
        """Which weights the saved model holds, when its run kept the best epoch's (``keep_best``):
        a line for the programs to print; None otherwise."""
        if self.run is None or not self.config.keep_best:
            return None
        from pipelines.durable import read_json

        best = read_json(self.run.metrics_file, {}).get("best")
        if not isinstance(best, dict):
            return f"weights: the final epoch's (keep_best={self.config.keep_best} found no best epoch)"
        return (
            f"weights: the best epoch's, epoch {best.get('epoch')} by {best.get('monitor')}={best.get('value', 0):.4g} "
            f"(keep_best; the final weights' test metrics are in {self.run.metrics_file})"
        )

    def class_names(self, path: str | None = None) -> tuple[str, ...] | None:
        """The names of the model's classes: from ``path`` when given, else the run's
        ``class_names.json`` (beside the model); None when there is none."""
        path = path or os.path.join(os.path.dirname(self.path), RunDir.CLASS_NAMES)
        return read_class_names(path, self.num_classes) if os.path.exists(path) else None

    def data_mismatch(self, info) -> str | None:
        """Why the model cannot be scored on data described by ``info`` (a `pipelines.DatasetInfo`):
        another number of classes, as "--dataset=NAME has 5 classes but the model predicts 3: ..."; None
        when it can."""
        if info.num_classes == self.num_classes:
            return None
        return (
            f"--dataset={self.config.dataset} has {info.num_classes} classes but the model predicts "
            f"{self.num_classes}: give the dataset it was trained on (--dataset)"
        )

    def class_names_note(self, info) -> str | None:
        """A warning line when the data's class names (``info``) are not the ones the model was
        trained with (its run's class_names.json): the scores pair the two lists in order."""
        try:
            names = self.class_names()
        except ValueError:  # a damaged class_names.json: the programs that print names say so
            return None
        if names is None or tuple(names) == tuple(info.class_names):
            return None
        return (
            f"the data's classes ({', '.join(info.class_names)}) are not the model's ({', '.join(names)}); "
            f"they are paired in that order"
        )

    def evaluation_data(self, split: str, central_crop: bool | None = None):
        """``split`` of the run's dataset as the model takes it (its input size and channels) and
        as the run evaluated its test split (``central_crop`` overrides the crop). Raises
        pipelines.DataError."""
        import pipelines
        from trainers import steps

        height, width, channels = self.model.input_shape[1:]
        overrides = dict(image_size=(height, width), channels=channels, task=self.head)
        if central_crop is not None:
            overrides["central_crop"] = central_crop
        return pipelines.load(self.config.dataset, split, **steps.eval_data_args(self.config, **overrides))

    def score(self, dataset, info, report: bool = False) -> dict:
        """Compile the model as its run did (losses, loss weights, metrics) and evaluate ``dataset``
        (``report``: with the class report, as `trainers.steps.evaluate`)."""
        from trainers import steps

        task.compile_model(
            self.model,
            head=self.head,
            weights=self.config.loss_weights,
            box_loss=self.config.box_loss,
            label_smoothing=self.config.label_smoothing,
            mixed_labels=self.config.mixes_labels,
        )
        return steps.evaluate(self.model, dataset, info, report=report)

    def evaluate(self, split: str, central_crop: bool | None = None) -> dict:
        """`score` on `evaluation_data`: ``split``, evaluated as the run evaluated its test split."""
        return self.score(*self.evaluation_data(split, central_crop))


def open_saved(model_path: str, **overrides) -> Saved:
    """The model at ``model_path`` (a ``.keras`` file or a run directory) with the settings it was
    trained with, ``overrides`` (TrainConfig fields; None values ignored) on top.

    FileNotFoundError or ValueError when there is no Keras model there; ConfigError for a run whose
    flags.txt does not parse or an override that is not valid.
    """
    path, run = locate(model_path)
    model = load_model(path)
    config = TrainConfig.from_flagfile(run.flags_file) if run else TrainConfig(head=task.head_of(model))
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    return Saved(path, model, run, config)
