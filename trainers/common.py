"""What every trainer program shares: flag parsing with one-line errors, devices, strategies."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")


class UserError(Exception):
    """A mistake in the command line or the data: reported as one line, exit status 2."""


def fail(message: str, status: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def parse_flags(argv):
    """absl's parser, but a bad flag is one line on stderr and exit status 2 (no usage dump)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(str(error))


def run(main):
    """`app.run` with our parser; `UserError`, `ValueError` from zoo/pipelines -> one line, exit 2."""

    def guarded(argv):
        import logging as std_logging

        # TensorFlow's own INFO lines (collectives, SavedModel assets) drown the trainer's.
        std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
        try:
            return main(argv)
        except UserError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", status=130)

    app.run(guarded, flags_parser=parse_flags)


def split_cpu(count: int) -> None:
    """Expose ``count`` logical CPU devices (before TensorFlow initializes its devices).

    Lets MirroredStrategy run with several replicas on a machine without GPUs: for tests, and for
    trying a multi-device setup on a laptop.
    """
    import tensorflow as tf

    if count <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        logging.warning("TensorFlow devices are already initialized; --logical_cpus ignored")


def make_strategy(name: str):
    """``auto``: MirroredStrategy over the GPUs when there are several, else the default."""
    import tensorflow as tf

    if name == "multi_worker":
        # Must come first: collective ops are configured before TensorFlow's context starts,
        # and listing logical devices starts it.
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "--strategy=multi_worker needs TF_CONFIG in the environment (the cluster and this "
                "worker's task); see BUILD.md"
            )
        return _multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        devices = [d.name for d in (gpus or cpus)]
        return tf.distribute.MirroredStrategy(devices)
    raise UserError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def _multi_worker_strategy():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """`reduce` that takes what Keras 3's `fit` gives it under this strategy.

        Keras 3 calls `strategy.reduce` with a nested (x, y) batch (to build the model) and with
        scalar metrics along ``axis=0``; the collective strategy takes one value, of rank >= 1
        when an axis is given, so `fit` fails under MultiWorkerMirroredStrategy
        (keras-team/keras#20585). Reducing leaf by leaf, a scalar across replicas only, is what
        those calls mean.
        """

        def reduce(self, reduce_op, value, axis=None):
            parent = super(MultiWorkerMirroredStrategy, self)

            def reduce_leaf(leaf):
                local = self.experimental_local_results(leaf)[0] if isinstance(
                    leaf, tf.distribute.DistributedValues) else leaf
                leaf_axis = None if axis is not None and local.shape.rank == 0 else axis
                return parent.reduce(reduce_op, leaf, leaf_axis)

            return tf.nest.map_structure(reduce_leaf, value)

    return MultiWorkerMirroredStrategy()


def worker_info(strategy) -> tuple[bool, int]:
    """(is this the chief, task index). Single-machine strategies: always the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None) or not resolver.cluster_spec().as_dict():
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict())
    return is_chief, int(task_id or 0)


def write_json(path: str, payload) -> None:
    """Write atomically: a run killed mid-write never leaves a half file behind."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def resolve_model_path(path: str) -> str:
    """A .keras file, or a run directory holding model.keras."""
    original = path
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.isfile(path):
        raise UserError(f"--model_path={original}: no such model file ({path})")
    return path


def load_model(path: str):
    import keras

    import zoo  # noqa: F401  (registers the zoo's custom layers for safe-mode loading)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # a file that is not a Keras model: several exception types
        raise UserError(f"--model_path={path}: cannot load a Keras model ({str(error).splitlines()[0]})") from None


def task_of(model) -> str:
    return "localize" if isinstance(model.output, dict) else "classify"
