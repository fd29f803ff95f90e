"""Files that survive a kill, a crash or a full disk, and folders that one process owns at a time.

Every file is written under a temporary name, flushed and fsynced, then renamed over the old one
(`atomic_write`, `atomic_path`): a kill or a crash at any point leaves the previous version or the
new one, never half a file. `FolderLock` is a lock file naming its holder (host, PID, since when);
a lock left by a process that is gone is taken over. The run directory (`trainers.rundir`) and the
hyperparameter search (`pipelines.tuning`) both stand on these.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time

from absl import logging


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's files are private (0600)


def _temporary_name(path: str) -> str:
    """A new, unique file beside ``path``, hidden, ending in ``path``'s own name."""
    directory, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp-" + name, dir=directory or ".")
    os.fchmod(handle, _FILE_MODE)  # readable as any file the user writes (TensorBoard servers, teammates)
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
    # Keeps the file's name as its suffix (.keras, .weights.h5): Keras checks it before saving.
    temporary = _temporary_name(path)
    if directory:
        os.remove(temporary)  # the writer creates the folder under this unique name
    try:
        yield temporary
        if directory:
            _fsync_tree(temporary)
            previous = None
            if os.path.isdir(path):
                previous = f"{temporary}.old"
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
    """The JSON in ``path``, or ``default`` when it is missing or unreadable (damaged, half-written)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or quota) is full: an OSError from Python or h5py, or a
    TensorFlow error (SavedModel, TensorBoard) whose message says so."""
    import tensorflow as tf

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, (OSError, tf.errors.OpError)) and any(
        text in str(error) for text in ("No space left on device", "Disk quota exceeded")
    )


def unwritable(path: str) -> str | None:
    """Why no folder can be made or written at ``path`` (a read-only mount, an immutable folder,
    /proc, a regular file on the way), or None. Tried for real, before anything else is written: a
    probe file is made and removed in ``path``, or in the nearest folder above it that exists."""
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a folder"
    try:
        handle, probe = tempfile.mkstemp(prefix=".zoo-probe-", dir=existing)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        return f"cannot be written: {existing}: {error.strerror}"
    return None


class LockHeld(RuntimeError):
    """Another live process holds the lock; the message names it and says what to do."""


class FolderLock:
    """A lock file naming its holder: one process at a time in a folder (a run, a search)."""

    def __init__(self, path: str, holder: str):
        """``path``: the lock file; ``holder``: what holds such a lock, for messages ("trainer")."""
        self.path, self.holder = path, holder
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise LockHeld naming the process that holds it.

        A lock left by a process that is gone (kill -9, a crash, a reboot) on this host is taken
        over with a warning. A lock from another host cannot be checked: the message says what to do.
        """
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        for _ in range(3):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_json(self.path, {})
                if not _stale(holder):
                    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
                    raise LockHeld(
                        f"{os.path.dirname(self.path)} is in use by another {self.holder} (pid {holder.get('pid')} "
                        f"on {holder.get('host')}, since {since}); wait for it to finish, or remove {self.path} "
                        f"if that process is gone"
                    ) from None
                folder = os.path.dirname(self.path)
                logging.warning("taking over the lock of %s left by a stopped %s (%s)", folder, self.holder, holder)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                continue
            with os.fdopen(handle, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return
        raise LockHeld(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.held = False


def _stale(holder) -> bool:
    pid = holder.get("pid") if isinstance(holder, dict) else None
    if not isinstance(pid, int):  # unreadable: a kill between creating and writing it
        return True
    if holder.get("host") != socket.gethostname():
        return False  # another host's process cannot be checked from here
    if pid == os.getpid():  # left by this process (an in-process run that failed)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False
