"""Shared test setup: quiet TensorFlow, two logical CPU devices, deterministic seeds, and the
tiny training settings and helpers every test file builds on."""

import glob
import os
import socket

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


def train_in_process(argv, capsys):
    """``python -m trainers.train ARGV`` run in this process as `trainers.cli.run` runs it (the same
    parser, main and error handling; the flags in a fresh `FlagValues`): (exit status, stdout,
    stderr). For tests of the program's flags and messages that need no process of their own."""
    from absl import flags
    from absl import logging as absl_logging

    from trainers import cli
    from trainers import train as train_program

    flag_values = flags.FlagValues()
    train_program.define_flags(flag_values)
    capsys.readouterr()
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)  # as absl's --verbosity default sets it in a program
    try:
        args = cli.parse_flags(["trainers.train", *argv], flag_values)
        status = cli.guarded(lambda args: train_program.main(args, flag_values), args)
    except SystemExit as exit:
        status = exit.code
    finally:
        absl_logging.set_verbosity(verbosity)
    captured = capsys.readouterr()
    return status or 0, captured.out, captured.err


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
