"""The run directory: the one place that names its files, and the one way they are written.

    runs/x/
      flags.txt            the run's settings, rerunnable: --flagfile=runs/x/flags.txt
      state.json           completed phases, finished or not
      class_names.json     the label names, for predict
      logs/                TensorBoard: train/, validation/, train_images/
      backup/<phase>/      BackupAndRestore's resume state (removed when the run finishes)
      checkpoints/<phase>.weights.h5   the weights each finished phase ended with
      model.keras          the final model
      export/              the SavedModel
      metrics.json         test metrics

Every file is written under a temporary name, flushed and fsynced, then renamed over the old one
(`atomic_write`, `atomic_path`): a kill or a crash at any point leaves the previous version or
the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        handle = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _temporary_name(path: str) -> str:
    directory, name = os.path.split(path)
    # Keeps the file's suffix (.keras, .weights.h5): Keras checks it before saving.
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp-" + name, dir=directory or ".")
    os.close(handle)
    return temporary


@contextlib.contextmanager
def atomic_path(path: str, *, directory: bool = False):
    """Yield a temporary path next to ``path``; once the block succeeds it replaces ``path``.

    For writers that take a path (``model.save``, ``save_weights``, ``model.export`` with
    ``directory=True``). On an exception the temporary file is removed and ``path`` is untouched.
    """
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    if directory:
        temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
        shutil.rmtree(temporary)  # the writer creates it
    else:
        temporary = _temporary_name(path)
    try:
        yield temporary
        if directory:
            _fsync_tree(temporary)
            previous = None
            if os.path.isdir(path):
                previous = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old.", dir=parent)
                os.rmdir(previous)
                os.replace(path, previous)
            os.replace(temporary, path)
            if previous:
                shutil.rmtree(previous, ignore_errors=True)
        else:
            with open(temporary, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(temporary, path)
        _fsync_directory(parent)
    except BaseException:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.remove(temporary)
        raise


def _fsync_tree(root: str) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_directory(directory)


def atomic_write(path: str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, whole."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()


def write_json(path: str, payload) -> None:
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: str, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


class RunDir:
    """The files of a run directory, by name. Non-chief workers write theirs to a scratch folder."""

    FLAGS = "flags.txt"
    STATE = "state.json"
    CLASS_NAMES = "class_names.json"
    METRICS = "metrics.json"
    MODEL = "model.keras"
    EXPORT = "export"
    LOGS = "logs"
    BACKUP = "backup"
    CHECKPOINTS = "checkpoints"
    TRAIN_IMAGES = "train_images"
    # Everything a run writes at its top level: what --overwrite replaces.
    OWNED = (FLAGS, STATE, CLASS_NAMES, METRICS, MODEL, EXPORT, LOGS, BACKUP, CHECKPOINTS)

    def __init__(self, root: str, *, is_chief: bool = True, task_id: int = 0, multi_worker: bool = False):
        self.root = root
        self.is_chief = is_chief
        self.task_id = task_id
        self.multi_worker = multi_worker
        self.scratch = root if is_chief else tempfile.mkdtemp(prefix=f"worker{task_id}-")

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def output(self, *parts: str) -> str:
        """Final artifacts and logs: the chief's go to the run directory, other workers' to scratch."""
        return os.path.join(self.scratch, *parts)

    @property
    def flags_file(self) -> str:
        return self.path(self.FLAGS)

    @property
    def state_file(self) -> str:
        return self.path(self.STATE)

    @property
    def class_names_file(self) -> str:
        return self.path(self.CLASS_NAMES)

    @property
    def metrics_file(self) -> str:
        return self.path(self.METRICS)

    @property
    def model_file(self) -> str:
        return self.output(self.MODEL)

    @property
    def export_dir(self) -> str:
        return self.output(self.EXPORT)

    @property
    def logs_dir(self) -> str:
        return self.output(self.LOGS)

    @property
    def train_images_dir(self) -> str:
        return self.output(self.LOGS, self.TRAIN_IMAGES)

    def checkpoint(self, phase: str) -> str:
        """The weights a finished phase ended with (the chief's; others keep theirs in scratch)."""
        return (
            self.path(self.CHECKPOINTS, f"{phase}.weights.h5") if self.is_chief else self.output(f"{phase}.weights.h5")
        )

    def backup(self, phase: str) -> str:
        # Every worker must restore its own state to resume in step, so backups persist per worker,
        # in sibling folders (each worker's BackupAndRestore deletes its own when the phase ends).
        if not self.multi_worker:
            return self.path(self.BACKUP, phase)
        return self.path(self.BACKUP, phase, "chief" if self.is_chief else f"worker{self.task_id}")

    # --- state

    def read_state(self) -> dict:
        return read_json(self.state_file, {"completed_phases": [], "finished": False})

    def write_state(self, state: dict) -> None:
        if self.is_chief:
            write_json(self.state_file, state)

    def remove_owned(self) -> None:
        """--overwrite: remove what a run writes, and nothing else in the folder."""
        for name in self.OWNED:
            target = self.path(name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)

    def cleanup(self) -> None:
        if not self.is_chief:
            shutil.rmtree(self.scratch, ignore_errors=True)


def find_model(path: str) -> str:
    """A ``.keras`` file, or the model of a run directory; raises FileNotFoundError naming both."""
    original = path
    if os.path.isdir(path):
        path = os.path.join(path, RunDir.MODEL)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file ({path})" if path != original else "no such model file")
    return path


def run_dir_of(model_path: str) -> RunDir | None:
    """The run directory a model file belongs to (it holds flags.txt beside it), else None."""
    root = os.path.dirname(os.path.abspath(model_path))
    return RunDir(root) if os.path.isfile(os.path.join(root, RunDir.FLAGS)) else None
