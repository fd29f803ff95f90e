"""Shared test setup: quiet TensorFlow, two logical CPU devices, deterministic seeds, and the
tiny training settings and helpers every test file builds on."""

import glob
import os
import socket
import sys
import typing

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's error line

import tensorflow as tf  # noqa: E402

# Split the CPU into two logical devices before TensorFlow starts its runtime, so multi-replica
# code (MirroredStrategy, per-replica batching) runs for real in the tests.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Stand-ins that make `import sklearn`, `import matplotlib` and `import jax` fail, as they do after a
# plain `pip install .`. TensorFlow and Keras import all three at start-up whenever they are installed
# (Keras's scikit-learn wrappers and plotting utilities, tf.lite's `from jax import jit`): about 3 s of
# a program process's 6-8 s of CPU here, though a program uses them only for figures (`trainers.show`),
# the chapter's photos (scikit-learn's) and the JAX backend.
PLAIN_INSTALL = os.path.join(REPO, "tests", "plain_install")


def program_env(*, extras: bool = False, **variables: str | None) -> dict[str, str]:
    """The environment of a program run in a process of its own: this environment, the repository
    importable, TensorFlow's C++ log at warnings and up (TF_CPP_MIN_LOG_LEVEL=2), then ``variables``
    (None removes one). Without ``extras`` the process runs as on a plain ``pip install .``: no
    scikit-learn, matplotlib or JAX (`PLAIN_INSTALL`); the processes it starts inherit that."""
    path = REPO if extras else os.pathsep.join([PLAIN_INSTALL, REPO])
    environment = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2")
    for name, value in variables.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def python_code(code: str, *args: str, timeout: float = 300, **variables):
    """``python -c CODE ARGS`` from the repository in a fresh interpreter (its tests check what
    importing does, which a forked program has done already): `run_program` (``variables``)."""
    return run_program(["-c", code, *args], timeout=timeout, fresh=True, **variables)


# The environment variables a program reads when it imports TensorFlow, Keras or the project: a
# program whose environment gives one of them another value than the program server's runs in a
# fresh interpreter instead (`start_program`). TF_CPP_MIN_LOG_LEVEL unset is the 2 the programs
# set themselves (`compat.start_tensorflow_quietly`), as the server has it.
IMPORT_TIME_VARIABLES = (
    "HOME",
    "KERAS_BACKEND",
    "KERAS_HOME",
    "PYTHONHASHSEED",
    "PYTHONPATH",
    "TF_CPP_MIN_LOG_LEVEL",
    "TF_CPP_MAX_VLOG_LEVEL",
    "TF_ENABLE_ONEDNN_OPTS",
)


# ZOO_PROGRAM_SERVER=0 starts every program in a fresh interpreter (to tell a fork's artefact from a
# program's bug); so does any system but Linux (the server needs fork and SOCK_SEQPACKET sockets).
PROGRAM_SERVER = "ZOO_PROGRAM_SERVER"


def _program_server_on() -> bool:
    return sys.platform.startswith("linux") and os.environ.get(PROGRAM_SERVER, "1") != "0"


class _ProgramServer:
    """This test worker's `tests/program_server.py`, started on first use, gone when the worker is."""

    process = None
    environment: dict | None = None  # `program_env()` as this worker first asked for a program

    @classmethod
    def serves(cls, environment: dict) -> bool:
        """Whether a program with ``environment`` can be forked from the server: the server is on
        and has (or will have) the same `IMPORT_TIME_VARIABLES`."""
        if not _program_server_on():
            return False
        if cls.environment is None:
            cls.environment = program_env()
        at_import = {**environment, "TF_CPP_MIN_LOG_LEVEL": environment.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        return all(at_import.get(name) == cls.environment.get(name) for name in IMPORT_TIME_VARIABLES)

    @classmethod
    def address(cls) -> str:
        """The server's socket; the server is started (with the `environment` that `serves` took)
        when it is not running."""
        import atexit
        import shutil
        import subprocess
        import tempfile

        if cls.process is None or cls.process.poll() is not None:  # not started yet, or died
            folder = tempfile.mkdtemp(prefix="zoo-program-server-")
            atexit.register(shutil.rmtree, folder, True)
            address = os.path.join(folder, "socket")
            log = open(os.path.join(folder, "server.log"), "w")
            cls.process = subprocess.Popen(
                [sys.executable, os.path.join(REPO, "tests", "program_server.py"), address],
                cwd=REPO,
                env={**cls.environment, compat.FORK_SERVER: "1"},
                stdin=subprocess.PIPE,  # closed when this worker exits: the server then exits too
                stdout=subprocess.PIPE,
                stderr=log,
            )
            if cls.process.stdout.readline().strip() != b"ready":
                log.close()
                with open(log.name) as told:
                    raise RuntimeError(f"the program server did not start: {told.read()[-3000:]}")
            cls.socket_path = address
        return cls.socket_path


class ForkedProcess:
    """A program forked from the program server, read as `subprocess.Popen` reads one: ``pid``,
    ``returncode``, ``stdout`` and ``stderr`` (where piped), ``poll``, ``wait``, ``communicate``,
    ``send_signal``, ``terminate``, ``kill``."""

    def __init__(self, connection: socket.socket, args, stdout=None, stderr=None):
        self._connection = connection
        self.args = args
        self.pid = int(connection.recv(64))
        self.returncode = None
        self.stdout, self.stderr = stdout, stderr

    def _status(self, timeout):
        import subprocess

        self._connection.settimeout(timeout)
        try:
            status = self._connection.recv(64)
            if not status:
                raise RuntimeError(f"the program server went away before process {self.pid} ended")
            self.returncode = int(status)
        except (TimeoutError, BlockingIOError):
            if timeout:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            return
        finally:
            self._connection.settimeout(None)
        self._connection.close()

    def poll(self):
        if self.returncode is None:
            self._status(0)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self._status(timeout)
        return self.returncode

    def communicate(self, timeout=None):
        """The piped output to its end, and the exit status (``timeout`` as `wait` takes it; after a
        timeout, call again once the process is killed)."""
        import concurrent.futures

        if not hasattr(self, "_reads"):  # one reader a pipe, kept across a timeout
            pipes = (self.stdout, self.stderr)
            pool = concurrent.futures.ThreadPoolExecutor(2)
            self._reads = [pool.submit(pipe.read) if pipe is not None else None for pipe in pipes]
            pool.shutdown(wait=False)
        self.wait(timeout)
        texts = tuple(read.result() if read is not None else None for read in self._reads)
        for pipe in (self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        return texts

    def send_signal(self, number):
        if self.returncode is None:
            os.kill(self.pid, number)

    def terminate(self):
        import signal

        self.send_signal(signal.SIGTERM)

    def kill(self):
        import signal

        self.send_signal(signal.SIGKILL)


def start_program(
    argv, *, stdout=None, stderr=None, text: bool = False, cwd: str = REPO, fresh: bool = False, **variables
):
    """``subprocess.Popen([python, *ARGV], stdout=, stderr=, text=)`` (``-m MODULE ...``, ``-c CODE
    ...`` or ``SCRIPT ...``) with `program_env` (``variables``) and stdin from /dev/null: forked from
    this worker's program server (`tests/program_server.py`: TensorFlow and the project already
    imported) when the environment's `IMPORT_TIME_VARIABLES` are the server's, else (or with
    ``fresh``) a fresh interpreter. Either way a real process of its own: PID, exit status, signals, output. ``stdout``
    and ``stderr``: a descriptor, ``subprocess.PIPE``, ``DEVNULL``, ``STDOUT`` (stderr) or None (this
    process's)."""
    import json
    import subprocess

    environment = program_env(**variables)
    if fresh or not _ProgramServer.serves(environment):
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=text,
        )
    opened, pipes = [os.open(os.devnull, os.O_RDWR)], {}
    descriptors = [opened[0]]
    for number, target in ((1, stdout), (2, stderr)):
        if target is None:
            descriptors.append(number)
        elif target == subprocess.DEVNULL:
            descriptors.append(opened[0])
        elif target == subprocess.STDOUT:
            descriptors.append(descriptors[1])
        elif target == subprocess.PIPE:
            read, write = os.pipe()
            pipes[number] = open(read, "r" if text else "rb")
            opened.append(write)
            descriptors.append(write)
        else:
            descriptors.append(target)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(_ProgramServer.address())
        request = json.dumps({"argv": list(map(str, argv)), "env": environment, "cwd": str(cwd)}).encode()
        socket.send_fds(connection, [request], descriptors)
    finally:
        for descriptor in opened:
            os.close(descriptor)
    return ForkedProcess(connection, [sys.executable, *argv], pipes.get(1), pipes.get(2))


def run_program(argv, *, timeout: float = 300, cwd: str = REPO, fresh: bool = False, **variables):
    """`start_program` to its end, output captured: ``subprocess.run(capture_output=True, text=True,
    timeout=timeout)``'s `subprocess.CompletedProcess` (the process killed on a timeout)."""
    import subprocess

    process = start_program(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, fresh=fresh, **variables
    )
    try:
        out, err = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess([sys.executable, *argv], process.returncode, out, err)


# A tiny training run on the shapes set: the settings every test that trains starts from (and
# narrows: `tiny(image_size=16, ...)`), as `TrainConfig` fields.
TINY = dict(
    dataset="shapes",
    train_split="train[:64]",
    validation_split="validation[:32]",
    test_split="test[:32]",
    image_size=32,
    batch_size=16,
)


def tiny(**overrides) -> dict:
    """`TINY` with ``overrides``."""
    return {**TINY, **overrides}


def as_flags(settings: dict) -> list[str]:
    """``TrainConfig`` fields as the command line spells them."""
    return [f"--{name}={value}" for name, value in settings.items()]


class Ran(typing.NamedTuple):
    """What a program run in process left: unpacks as (status, stdout, stderr), and reads as
    `subprocess.CompletedProcess` does (``.returncode``, ``.stdout``, ``.stderr``)."""

    returncode: int
    stdout: str
    stderr: str


def program_in_process(module, argv, capsys) -> Ran:
    """``python -m MODULE ARGV`` run in this process as `trainers.cli.run` runs it (the program's
    parser, main and error handling): `Ran` (exit status, stdout, stderr). For tests of a program's flags,
    messages and files that need no process of their own (a process costs a TensorFlow import:
    about 6 s of CPU here). A program whose ``define_flags`` takes a `FlagValues` gets a fresh one;
    the others define theirs on absl's global flags, and those are removed again afterwards."""
    import importlib
    import inspect

    from absl import flags
    from absl import logging as absl_logging

    from trainers import cli

    program = importlib.import_module(module)
    if "flag_values" in inspect.signature(program.define_flags).parameters:
        flag_values, before = flags.FlagValues(), None
        program.define_flags(flag_values)
        main = lambda args: program.main(args, flag_values)  # noqa: E731
    else:
        flag_values, before = flags.FLAGS, set(flags.FLAGS)
        program.define_flags()
        main = program.main
    capsys.readouterr()
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)  # as absl's --verbosity default sets it in a program
    try:
        parse_flags = getattr(program, "parse_flags", cli.parse_flags)  # `python -m zoo` has its own
        args = parse_flags([module, *map(str, argv)], flag_values)
        status = cli.guarded(main, args)
    except SystemExit as exit:
        status = exit.code
    finally:
        absl_logging.set_verbosity(verbosity)
        if before is not None:
            for name in set(flag_values) - before:
                if name in flag_values:  # a short name goes with its flag
                    delattr(flag_values, name)
    captured = capsys.readouterr()
    return Ran(status or 0, captured.out, captured.err)


def train_in_process(argv, capsys):
    """``python -m trainers.train ARGV`` in this process: `program_in_process`."""
    return program_in_process("trainers.train", argv, capsys)


def interrupted_after_first_epoch(config, monkeypatch):
    """Train ``config`` but die right after epoch 1's backup, as a kill there would: the epoch's
    summary, which comes after BackupAndRestore has written the backup, raises instead. (The real
    kill -9 at each point is `test_run_dir_faults`'s and `test_trainers`'s.)"""
    from trainers import callbacks, training

    def die(self, epoch, logs=None):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(callbacks.EpochSummary, "on_epoch_end", die)
        with pytest.raises(KeyboardInterrupt):
            training.train(config)


@pytest.fixture
def small_filesystem(tmp_path):
    """A small tmpfs (root only: skipped elsewhere), unmounted afterwards. Its size is set by the
    test: ``subprocess.run(["mount", "-o", "remount,size=3m", path])``; it starts at 4 MiB."""
    import subprocess

    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(mounted.stderr or 'mount failed').strip()})")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
FLOWERS_SAMPLE = os.path.abspath(os.path.join(SHARED_DATA, "flowers-sample"))


REQUIRE_FUSED = "ZOO_REQUIRE_FUSED"


def skip_without_kernel(reason: str):
    """Skip a test that needs the fused kernel; fail instead where CI requires it (.ci/run)."""
    message = f"fused kernel not available: {reason}"
    if os.environ.get(REQUIRE_FUSED) == "1":
        pytest.fail(f"{message} ({REQUIRE_FUSED}=1: CI requires the kernel to build)")
    pytest.skip(message)


@pytest.fixture
def flowers_sample():
    """The real photos beside the repository (../shared/data); a user's fresh clone has none."""
    if not os.path.isdir(FLOWERS_SAMPLE):
        pytest.skip(f"real photos not found at {FLOWERS_SAMPLE} (only beside the team's checkouts)")
    return FLOWERS_SAMPLE


@pytest.fixture(autouse=True, scope="session")
def _temporary_files_under_pytests_folder(tmp_path_factory):
    """The temporary files of this worker and of the programs it starts go under pytest's folder for
    the run, which pytest removes once the run passes (setup.cfg: ``tmp_path_retention_policy``),
    not the machine's /tmp. The suite kills programs on purpose, and a process that ends without its
    exit handlers leaves what TensorFlow deletes only in one: the module AutoGraph writes for each
    function it converts (about 180 a run); the chapter's notebook trains into a folder of its own
    there (290 MB). Not where the folder's path is too long for the Unix sockets made in it (104
    bytes on macOS, 108 on Linux): the program server's, a program's fork server's."""
    import multiprocessing.util
    import tempfile

    folder = tmp_path_factory.getbasetemp() / "tmp"
    if len(str(folder)) + len("/zoo-program-server-XXXXXXXX/socket") >= 104:
        yield None
        return
    # This worker's own multiprocessing folder (its fork server's socket) stays where it is: its
    # exit handler removes it after pytest has removed the run's folder.
    multiprocessing.util.get_temp_dir()
    folder.mkdir()
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # read again from TMPDIR
    yield folder
    if before is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # Keras's global state only (layer names, the Functional graph): the full gc.collect() that
    # clear_session() runs by default took up to 11 s a test late in a worker's life, and Python's
    # own collector frees the same objects anyway.
    keras.backend.clear_session(free_memory=False)


def logged(log_dir, tag):
    """(step, value) pairs logged under `tag` in a TensorBoard folder, over every event file of the
    run (all restarts), sorted."""
    points = []
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            points += [(event.step, float(tf.make_ndarray(v.tensor))) for v in event.summary.value if v.tag == tag]
    return sorted(points)
