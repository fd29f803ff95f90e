"""The run directory: the one place that names its files, and the one way they are written.

    runs/x/
      flags.txt            the run's settings, rerunnable: --flagfile=runs/x/flags.txt
      state.json           completed phases, finished or not
      class_names.json     the label names, for predict
      logs/                TensorBoard: train/, validation/, train_images/, evaluation/ (the class report)
      backup/<phase>/      BackupAndRestore's resume state (removed when the run finishes)
      checkpoints/<phase>.weights.h5   the weights each finished phase ended with
      model.keras          the final model
      export/              the SavedModel
      metrics.json         test metrics, the class report (per-class scores, confusion matrix)

Every file is written under a temporary name, flushed and fsynced, then renamed over the old one
(`pipelines.durable`): a kill or a crash at any point leaves the previous version or the new one,
never half a file; one trainer at a time holds the folder's lock.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Sequence

from absl import logging

from pipelines.durable import FolderLock, LockHeld, atomic_path, read_json, write_json
from zoo import compat

# Fault injection for the crash-consistency tests (tests/test_run_dir_faults.py):
# ZOO_FAULT_POINT=NAME kills the trainer with SIGKILL when it reaches the named point.
FAULT_POINT_VARIABLE = "ZOO_FAULT_POINT"
FAULT_POINTS = (
    "first_backup",  # the first epoch's BackupAndRestore files just written, nothing else yet
    "phase_checkpoint",  # a phase's weights saved, state.json not yet saying the phase is done
    "phase_switch",  # state.json says the phase is done, its backup not yet removed
    "model_saved",  # model.keras written, the SavedModel not yet
    "exported",  # the SavedModel written, metrics.json and the finished state not yet
)


def fault_point(name: str) -> None:
    """Die here, as a kill -9 would, when ``ZOO_FAULT_POINT`` names this point."""
    assert name in FAULT_POINTS, name
    if os.environ.get(FAULT_POINT_VARIABLE) == name:
        logging.warning("%s=%s: killing this process", FAULT_POINT_VARIABLE, name)
        logging.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class RunDirError(ValueError):
    """The run directory cannot be used as asked (not ours, in use); the message says why."""


def _has_key(payload, key: str) -> bool:
    return isinstance(payload, dict) and key in payload


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
    EVALUATION = "evaluation"  # under logs/: the class report of the test split
    # Marks the folder as a run directory and lists what the run wrote (all --overwrite removes).
    MANIFEST = ".zoo-run.json"
    # One trainer at a time: host and PID of the holder.
    LOCK = ".zoo-run.lock"
    # Everything a run writes at its top level.
    OWNED = (FLAGS, STATE, CLASS_NAMES, METRICS, MODEL, EXPORT, LOGS, BACKUP, CHECKPOINTS)

    def __init__(self, root: str, *, role: str = "chief", roles: Sequence[str] = ()):
        """``role``: this worker's name ("chief", or "worker<i>": `distribute.worker_role`).
        ``roles``: with several workers, every worker's name (`distribute.worker_roles`); each keeps
        its backups in a folder of that name. Empty on one machine."""
        self.root = root
        self.role = role
        self.roles = tuple(roles)
        self.is_chief = role == "chief"
        self._scratch = root if self.is_chief else None
        self._lock = FolderLock(os.path.join(root, self.LOCK), "trainer")

    @property
    def scratch(self) -> str:
        """Where this worker's outputs go: the run directory for the chief; for the others a
        temporary folder, made on first use and removed by `cleanup`."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix=f"{self.role}-")
        return self._scratch

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

    @property
    def evaluation_logs_dir(self) -> str:
        return self.output(self.LOGS, self.EVALUATION)

    def completed_weights(self, phase: str) -> str:
        """The weights a finished phase ended with, as the chief saved them: what every worker
        resumes from (training is synchronous, so all workers' weights are the chief's)."""
        return self.path(self.CHECKPOINTS, f"{phase}.weights.h5")

    def checkpoint(self, phase: str) -> str:
        """Where this worker saves a finished phase's weights (non-chief workers: scratch)."""
        return self.completed_weights(phase) if self.is_chief else self.output(f"{phase}.weights.h5")

    def backup(self, phase: str) -> str:
        # Every worker must restore its own state to resume in step, so backups persist per worker,
        # in sibling folders (each worker's BackupAndRestore deletes its own when the phase ends).
        if not self.roles:
            return self.path(self.BACKUP, phase)
        return self.path(self.BACKUP, phase, self.role)

    def peer_backups(self, phase: str) -> list[str]:
        """The other workers' backup folders of ``phase`` (multi-worker; none otherwise)."""
        return [self.path(self.BACKUP, phase, role) for role in self.roles if role != self.role]

    # --- ownership and locking

    @property
    def manifest_file(self) -> str:
        return self.path(self.MANIFEST)

    @property
    def lock_file(self) -> str:
        return self.path(self.LOCK)

    def is_ours(self) -> bool:
        """A folder this trainer may write into: new, empty, or marked as a run directory."""
        if not os.path.exists(self.root):
            return True
        if not os.path.isdir(self.root):
            return False
        # A lock alone is a run starting up: the other trainer's lock message is the better refusal.
        return not set(os.listdir(self.root)) - {self.LOCK} or _has_key(read_json(self.manifest_file), "files")

    def check_ownership(self) -> None:
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise RunDirError(f"{self.root} is a file, not a folder")
        if not self.is_ours() and os.path.exists(self.manifest_file):
            raise RunDirError(
                f"{self.manifest_file} is damaged, so which files are the run's is unknown and nothing is "
                f"touched; move any files of yours out and delete the folder, or give a new folder"
            )
        if not self.is_ours():
            raise RunDirError(
                f"{self.root} holds files that no run of this trainer wrote (no {self.MANIFEST}); "
                f"give a new or empty folder"
            )

    def manifest(self) -> dict:
        return read_json(self.manifest_file) or {}

    def record(self, *names: str) -> None:
        """Mark the folder as a run directory (once) and list ``names`` as written by the run."""
        if not self.is_chief:
            return
        manifest = self.manifest() or {"run_id": uuid.uuid4().hex, "created": time.time(), "files": []}
        new = [name for name in names if name not in manifest["files"]]
        if new or not os.path.exists(self.manifest_file):
            manifest["files"] = sorted(set(manifest["files"]) | set(new))
            write_json(self.manifest_file, manifest)

    def acquire_lock(self) -> None:
        """Take the folder's lock (`pipelines.durable.FolderLock`), or raise RunDirError naming the
        trainer that holds it; a lock left by a process that is gone is taken over."""
        try:
            self._lock.acquire()
        except LockHeld as error:
            raise RunDirError(str(error)) from None

    def release_lock(self) -> None:
        self._lock.release()

    # --- state

    def read_state(self, phase_names=()) -> dict:
        """The completed phases and whether the run finished.

        Given the run's ``phase_names``, the completed phases are checked against their
        checkpoints: an unreadable state.json (a damaged disk, a file from before atomic writes)
        is rebuilt from the checkpoints that load, and a phase whose checkpoint no longer loads is
        trained again. Each with a warning, never a traceback.
        """
        state = read_json(self.state_file)
        damaged = os.path.exists(self.state_file) and not _has_key(state, "completed_phases")
        if damaged:
            state = {"completed_phases": list(phase_names), "finished": False}
        state = state or {"completed_phases": [], "finished": False}
        for index, name in enumerate(state["completed_phases"] if phase_names else ()):
            if not readable_weights(self.completed_weights(name)):
                if not damaged:
                    logging.warning("%s is unreadable; training phase %s again", self.completed_weights(name), name)
                state = {"completed_phases": state["completed_phases"][:index], "finished": False}
                break
        if damaged:
            completed = state["completed_phases"]
            logging.warning("%s is unreadable; rebuilt from the checkpoints: completed %s", self.state_file, completed)
        return state

    def write_state(self, state: dict) -> None:
        if self.is_chief:
            write_json(self.state_file, state)

    def remove_owned(self) -> None:
        """--overwrite: remove what the manifest says the run wrote, and nothing else."""
        for name in self.manifest().get("files", []):
            if name not in self.OWNED:  # a manifest names only the run's own files
                continue
            target = self.path(name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)

    # `_temporary_name`'s pattern: ".NAME.RANDOM.tmp-NAME", and ".old" for a replaced folder.
    _TEMPORARY = re.compile(r"^\.(?P<name>.+)\.\w+\.tmp-(?P=name)(\.old)?$")

    def remove_temporaries(self) -> None:
        """Remove the temporary files a killed writer left (under the lock: no writer is alive)."""
        for directory, folders, files in os.walk(self.root):
            for name in files + folders:
                if self._TEMPORARY.match(name):
                    target = os.path.join(directory, name)
                    logging.info("removing %s, left by an interrupted write", target)
                    if os.path.isdir(target) and not os.path.islink(target):
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        os.remove(target)
            folders[:] = [f for f in folders if not self._TEMPORARY.match(f)]

    def cleanup(self) -> None:
        if not self.is_chief and self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


# ------------------------------------------------------------------------------------- crash recovery


def readable_weights(path: str) -> bool:
    """Whether a ``.weights.h5`` file opens and every array in it reads (a truncated one fails)."""
    import h5py

    if not os.path.isfile(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
        return True
    except Exception:  # h5py raises OSError, KeyError, RuntimeError... for damaged files
        return False


def repair_backup(directory: str, peers: Sequence[str] = ()) -> str:
    """Make a `keras.callbacks.BackupAndRestore` folder loadable, or remove it.

    Keras writes ``latest.weights.h5`` and ``training_metadata.json`` (and, with
    ``double_checkpoint``, ``.bkp`` copies of the previous ones) in place, so a kill or a full disk
    mid-write leaves a truncated file that Keras then fails to load on every rerun.

    ``peers`` are the other workers' folders of the same phase (multi-worker). Workers must resume
    from the same point, or their collective steps fall out of step, and a cluster killed at once
    can leave one worker's last backup whole and another's cut off. So the folder is brought to
    the latest point every worker can resume from (a missing or unusable folder can only start the
    phase again). Each worker changes only its own folder, and only towards that common point, so
    workers repairing at the same time all reach the same one.

    Returns "ok" (nothing to do, or nothing there), "previous" (the previous backup restored) or
    "removed" (the phase restarts).
    """
    if not os.path.isdir(directory) or not os.listdir(directory):
        return "ok"
    own = _resumable(directory)
    common = set(own)
    for peer in peers:
        common &= set(_resumable(peer))
    if not common:
        shutil.rmtree(directory, ignore_errors=True)
        return "removed"
    suffix = own[max(common)]
    if not suffix:
        return "ok"
    for name in (compat.BACKUP_WEIGHTS, compat.BACKUP_METADATA):
        path = os.path.join(directory, name)
        with atomic_path(path) as temporary:
            shutil.copyfile(path + suffix, temporary)
    return "previous"


def backup_epoch(directory: str) -> int | None:
    """The epoch `keras.callbacks.BackupAndRestore` resumes at from ``directory``, read as it
    reads it (its weights file there, the epoch from its metadata), or None where it will start
    the phase. Read after `repair_backup`."""
    if not os.path.isfile(os.path.join(directory, compat.BACKUP_WEIGHTS)):
        return None
    point = _backup_point(directory)
    return None if point is None else point[0]


def _backup_point(directory: str, suffix: str = "") -> tuple[int, int] | None:
    """(epoch, batch) from a BackupAndRestore folder's metadata (``suffix``: its previous copy's),
    or None where it is missing or damaged."""
    metadata = read_json(os.path.join(directory, compat.BACKUP_METADATA + suffix))
    try:
        return int(metadata["epoch"]), int(metadata.get("batch") or 0)
    except (TypeError, ValueError, KeyError, AttributeError):  # missing, damaged, not a dict
        return None


def _resumable(directory: str) -> dict[tuple[int, int], str]:
    """The points a BackupAndRestore folder can resume from, (epoch, batch) -> the files' suffix:
    its latest files ("") and, when whole, their previous copies (".bkp")."""
    points = {}
    for suffix in (compat.BACKUP_PREVIOUS, ""):  # the latest files win when both hold the same point
        point = _backup_point(directory, suffix)
        if point is None:
            continue
        weights = os.path.join(directory, compat.BACKUP_WEIGHTS + suffix)
        if readable_weights(weights):
            points[point] = suffix
    return points
