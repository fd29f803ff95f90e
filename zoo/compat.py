"""Every private or version-bound upstream API the project relies on, in one place.

Each shim says which upstream behaviour it depends on (and the upstream issue, where there is
one), and `tests/test_compat.py` has a test for each that fails when upstream changes: after an
upgrade of Keras, TensorFlow, TFDS or keras-tuner, its failures name exactly what to revisit.

It imports each upstream package inside the function that needs it, so importing this module
loads no framework. It lives in `zoo`, the bottom package, so that zoo, pipelines and trainers
can all reach it (BUILD.md, "Layout").
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile

# ------------------------------------------------------------------------------------- TensorFlow

# What TensorFlow's C++ side prints while it starts, before ``absl::InitializeLog()``: such lines
# ignore TF_CPP_MIN_LOG_LEVEL (TF >= 2.18), and the CUDA probe prints an ERROR ("failed call to
# cuInit") on every machine without an NVIDIA driver, in every process (each search trial too).
_LOG_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LOG_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d\d")  # absl's prefix
_NO_GPU = "failed call to cuInit"


# Set in the environment of a process that others are forked from (a search's trial server,
# `pipelines.tuning.run_in_child`): it imports TensorFlow but probes no device, since CUDA
# initialized before a fork cannot be used after it; each forked trial probes its own.
FORK_SERVER = "ZOO_FORK_SERVER"


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with the start-up lines TF_CPP_MIN_LOG_LEVEL asks
    to hide hidden: its INFO and WARNING lines, and the CUDA probe's error on a machine without a
    GPU driver. Everything else it prints passes. TF_CPP_MIN_LOG_LEVEL=0 or 1 shows them all.
    With `FORK_SERVER` set to 1 it imports and does not probe.

    Unless the user chose a level, it becomes 2 (TensorFlow's C++ INFO and WARNING lines, device
    set-up and CUDA probing, drown the programs' own); set before the first TensorFlow import.
    Without TensorFlow installed (a benchmark under Keras's JAX backend) there is nothing to start."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    probe = os.environ.get(FORK_SERVER) != "1"
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "1"):
        import tensorflow as tf

        if probe:
            tf.config.list_physical_devices()
        return

    with _filtered_stderr(_start_up_noise):
        import tensorflow as tf

        if probe:
            tf.config.list_physical_devices()  # the CUDA probe


def _start_up_noise(lines: list[str]) -> list[bool]:
    """Which of TensorFlow's start-up lines to hide: INFO and WARNING, the CUDA probe's error, the
    preamble, and the lines that continue a hidden one (no log prefix of their own)."""
    hide, previous = [], False
    for line in lines:
        match = _LOG_LINE.match(line)
        if match:
            previous = match["severity"] in "IW" or _NO_GPU in line
        elif line.startswith(_LOG_PREAMBLE):
            previous = True
        hide.append(previous)
    return hide


@contextlib.contextmanager
def _filtered_stderr(noise):
    """Capture file descriptor 2 (C++ writes there, not to `sys.stderr`), then pass on the lines
    that ``noise`` does not mark -- also when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line, hidden in zip(lines, noise(lines)) if not hidden))
            sys.stderr.flush()


# ------------------------------------------------------------------------------------- Keras


def nested_layers(layer) -> list:
    """``layer`` and every layer inside it, at any depth.

    Keras 3 has no public walk over sublayers: `Layer._flatten_layers` is how Keras itself visits
    them (for ``trainable``, weights and summaries), including the sublayers a custom layer
    assigns as attributes, which ``model.layers`` does not list.
    """
    return list(layer._flatten_layers(include_self=True, recursive=True))


def weights_file_nests_a_model(path: str) -> bool:
    """Whether a Keras 3 ``.weights.h5`` file (`Model.save_weights`) holds a model inside a model.

    Every zoo model wraps its backbone model, and a plain `keras.applications` model wraps none,
    so this tells a whole zoo model's file from one saved by a plain application. Keras 3 writes
    the file by object structure, not by layer name (keras/src/saving/saving_lib.py): each layer
    under ``layers/<class-based key>``, a nested model's own layers under its ``layers`` group.
    A file h5py cannot read counts as a zoo model's, so that loading it gives the error.
    """
    import h5py

    try:
        with h5py.File(path, "r") as file:
            layers = file.get("layers")
            return layers is None or any(
                isinstance(child, h5py.Group) and "layers" in child for child in layers.values()
            )
    except OSError:
        return True


def build_training_state(model, element_spec) -> None:
    """Create a compiled ``model``'s optimizer, loss and metric variables for batches shaped as
    ``element_spec`` (a dataset's; a distributed dataset's, whose batches are each replica's),
    before its first training step is traced.

    Keras's TensorFlow trainer does this itself (the private ``Trainer._symbolic_build``) only under
    a distribution strategy; otherwise the first traced step creates them, and ``tf.function`` then
    traces the whole step a second time without them (``TensorFlowTrainer._maybe_symbolic_build``
    says so). ResNet-18 at 32 pixels: 9.3 s -> 8.2 s for a tiny one-epoch run on the AMX Xeon.
    Call it inside the strategy's scope; under one, fit in `without_a_sample_batch`.
    """
    model._symbolic_build(data_batch=_replica_spec(element_spec))


def _replica_spec(element_spec):
    """``element_spec`` with each `PerReplicaSpec` (a distributed dataset's) as one replica's spec."""
    import tensorflow as tf

    def one_replica(spec):
        return spec._value_specs[0] if hasattr(spec, "_value_specs") else spec

    return tf.nest.map_structure(one_replica, element_spec)


@contextlib.contextmanager
def without_a_sample_batch(model):
    """Inside: ``model.fit`` and ``model.evaluate`` under a distribution strategy read their data
    through one iterator, not two. Call `build_training_state` first.

    Keras's TensorFlow trainer, under a strategy, starts each ``fit`` and ``evaluate`` by making an
    iterator of the data and reading a batch from it, to build the training state, built or not
    (the private ``TensorFlowTrainer._maybe_symbolic_build``), then drops it and makes the one it
    trains from. The random datasets of a training stream (each pass a new order and new
    augmentation seeds: ``Dataset.random(seed, rerandomize_each_iteration=True)``, a reshuffling
    ``shuffle``) draw at each new iterator from a generator they share, so that first iterator
    draws the first pass, and, while it lives, its prefetching can reach the next pass and draw
    that too: a race, after which training starts a pass later (3 fits of 60 on 2 replicas of the
    tiny shapes set, whose pass is 4 batches). A run on several replicas did not always repeat.
    (The JAX and Torch trainers' sample batch was keras-team/keras#19929, fixed by #19945; no issue
    found for this one.)
    """
    model._maybe_symbolic_build = _no_sample_batch
    try:
        yield model
    finally:
        del model._maybe_symbolic_build


def _no_sample_batch(iterator=None, data_batch=None) -> None:
    """`without_a_sample_batch`'s stand-in: the training state is built already."""


# Keras 3.15.1's epoch iterator warns "Your input ran out of data; interrupting training" at the
# end of a pass over a dataset whose size it does not know, an evaluation's and a prediction's
# too, where running out is how the pass ends (keras-team/keras#23360, fixed after 3.15.1). The
# pipelines tell tf.data the size of a split read once where they know it; with --skip_bad_files
# (or a source that cannot count, a mocked TFDS set) they cannot.
RAN_OUT_OF_DATA = "Your input ran out of data"


@contextlib.contextmanager
def passes_end_quietly():
    """Inside: no "ran out of data" warning from Keras (`RAN_OUT_OF_DATA`). For ``evaluate`` and
    ``predict``, and for a ``fit`` whose training data never runs out (a repeated stream), where the
    warning can only come from its validation passes."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=RAN_OUT_OF_DATA, category=UserWarning)
        yield


def ema_averages(optimizer) -> list:
    """``(variable, its moving average)`` for each variable a ``use_ema`` optimizer averages.

    Keras keeps the averages in the optimizer's private ``_model_variables_moving_average``, in
    the order of ``_trainable_variables`` (what `keras.callbacks.SwapEMAWeights` swaps in itself).
    """
    if not getattr(optimizer, "use_ema", False) or not getattr(optimizer, "built", False):
        return []
    return list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))


# Keras's optimizers accumulate gradients (``gradient_accumulation_steps``) behind an ``ops.cond``
# around the update, and under a TensorFlow distribution strategy with several replicas the
# update's cross-replica sum inside that cond fails ("merge_call called while defining a new
# graph"). Until it is fixed, the trainer refuses the combination in one line naming this issue.
GRADIENT_ACCUMULATION_ISSUE = "keras-team/keras#20582"

# Every tf.distribute.MirroredStrategy numbers its collective ops from the same keys (group 1,
# instances from 100: ``MirroredStrategy._collective_key_base``, "only set this in tests"), and the
# process's collective executor remembers each instance's shape. So the first all-reduce of a
# second strategy over the same devices meets the first strategy's and fails ("Shape mismatch in
# the collective instance 100"): a second training in one process (a notebook, `train()` in a
# loop) stopped. One strategy per device list and process numbers each new op after the last.
MIRRORED_STRATEGY_ISSUE = "tensorflow/tensorflow#62790"


def skip_iterations(dataset, count: int) -> None:
    """Make ``dataset``'s next iteration its ``count + 1``-th, by starting ``count`` iterations
    and dropping them unread.

    A dataset's random ops that change each iteration (``Dataset.random(seed,
    rerandomize_each_iteration=True)``, ``shuffle(seed=..., reshuffle_each_iteration=True)``) hold
    a seed generator made with the dataset, and draw the next iteration's seeds from it when an
    iterator is created (TensorFlow's ``RandomSeedGenerator::GenerateSeeds``, called from each
    iterator's ``Initialize``): reading is not needed. So a repeated pipeline built again in a new
    process (a resumed run) continues the seeded sequence of passes from pass ``count`` after
    this, as the uninterrupted one would have, without computing the passes before it. TensorFlow
    documents only that each iteration differs; `tests/test_compat.py` pins that creating an
    iterator is what advances it.
    """
    for _ in range(count):
        iter(dataset)


@functools.cache
def mirrored_strategy(devices: tuple[str, ...]):
    """This process's `tf.distribute.MirroredStrategy` over ``devices`` (made on the first call;
    see `MIRRORED_STRATEGY_ISSUE`)."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


def seed_generator_states(model) -> list:
    """The state variables of the `keras.random.SeedGenerator` s of ``model`` (a model or a layer:
    its Dropout layers, the zoo's stochastic depth, an augmentation layer's), in its order.

    Keras keeps each generator's ``[seed, counter]`` in a variable named ``seed_generator_state``,
    among ``model.variables`` but not ``model.weights`` (keras/src/random/seed_generator.py), so
    ``save_weights``, and `keras.callbacks.BackupAndRestore` with it, does not keep it: a resumed
    run would draw the masks of its first epoch again. `tests/test_compat.py` pins both.
    """
    weights = {id(variable) for variable in model.weights}
    return [
        variable
        for variable in model.variables
        if id(variable) not in weights and variable.path.rsplit("/", 1)[-1] == "seed_generator_state"
    ]


def reset_seed_generator(state, word) -> None:
    """Start the generator whose state variable is ``state`` (`seed_generator_states`) afresh from
    ``word`` (an integer, or an integer tensor inside a traced function): Keras's state is
    ``[seed, counter]``, each draw adding one to the counter; this sets ``[word mod 2**31, 0]``."""
    import tensorflow as tf

    state.assign(tf.cast(tf.stack([tf.cast(word, tf.int64) % 2**31, 0]), state.dtype))


# Keras's image augmentation layers (RandAugment, RandomErasing, MixUp, CutMix) take no
# per-example stateless seed: ``get_random_transformation(seed=...)`` goes through
# ``keras.random.draw_seed``, which takes an int or a SeedGenerator, not a tensor, and RandAugment
# draws its ops from its own generator whatever seed it is given. So `pipelines.ops.policy_batches`
# runs them on their own generators instead of the pipeline's per-element seeds, in one sequential
# map, setting the generators' states (`seed_generator_states`) before each batch.
# `tests/test_compat.py` pins this.
KERAS_LAYER_SEEDS = "keras.random.draw_seed takes an int or a SeedGenerator, not a tensor"


def randaugment_image(layer, image):
    """Keras's ``RandAugment`` ``layer`` on one image (height, width, channels), computing only the
    ops it drew: the same draws and the same pixels as ``layer(image, training=True)``.

    Keras's `RandAugment.transform_images` (keras/src/layers/preprocessing/image_preprocessing/
    rand_augment.py) computes every one of its ops on the input and keeps the drawn ones with
    ``where``: 9 ops' work for 2. This takes the layer's own draw (``get_random_transformation``:
    ``{"transforms": {sublayer name: its transformation}, "layer_idxes": the ops drawn, as indices
    into that dict}``, the sublayers being the layer's attributes of those names) and runs just the
    drawn sublayers' ``transform_images`` through one ``tf.switch_case`` in a ``tf.while_loop``
    over the drawn ops (its nine branches traced once, not once per op). `tests/test_compat.py` checks
    it against the layer itself, so an upgrade that changes either side fails there.
    """
    import tensorflow as tf

    drawn = layer.get_random_transformation(image, training=True)
    ops = list(drawn["transforms"].items())
    indices = tf.cast(drawn["layer_idxes"], tf.int32)
    images = tf.expand_dims(tf.cast(image, layer.compute_dtype), 0)

    def apply_one(step, images):  # one switch over the ops, traced once for every drawn op
        branches = [
            lambda name=name, transformation=transformation: tf.ensure_shape(
                tf.cast(getattr(layer, name).transform_images(images, transformation, training=True), images.dtype),
                images.shape,
            )
            for name, transformation in ops
        ]
        return step + 1, tf.switch_case(indices[step], branches)

    _, images = tf.while_loop(lambda step, _: step < layer.num_ops, apply_one, (tf.constant(0), images))
    return tf.cast(images[0], layer.compute_dtype)


# `keras.callbacks.BackupAndRestore`'s files in its backup folder (keras/src/callbacks/
# backup_and_restore.py): the weights and the epoch/batch reached, written in place, and with
# ``double_checkpoint=True`` the previous pair under the same names plus this suffix. The run
# directory repairs a half-written pair from them (`trainers.rundir.repair_backup`).
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
BACKUP_PREVIOUS = ".bkp"


def forget_restored_epoch(model) -> None:
    """Let ``model``'s next `fit` start at its own ``initial_epoch``.

    `keras.callbacks.BackupAndRestore`, restoring a backup, sets the model's private
    ``_initial_epoch`` to the epoch it restored, and `fit` starts at ``self._initial_epoch or
    initial_epoch`` (keras/src/backend/*/trainer.py) without ever clearing it: the next `fit` of
    the same model (a run's next phase) started at the restored epoch instead of its own, and
    trained an epoch too many. `tests/test_compat.py` pins it.
    """
    model._initial_epoch = None


def multi_worker_strategy():
    """`tf.distribute.MultiWorkerMirroredStrategy` whose ``reduce`` takes what Keras 3's `fit` gives it.

    Keras 3 calls ``strategy.reduce`` with a nested (x, y) batch (to build the model) and with
    scalar metrics along ``axis=0``; the collective strategy takes one value, of rank >= 1 when an
    axis is given, so `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
    Reducing leaf by leaf, a scalar across replicas only, is what those calls mean.
    """
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            parent = super()

            def reduce_leaf(leaf):
                local = (
                    self.experimental_local_results(leaf)[0]
                    if isinstance(leaf, tf.distribute.DistributedValues)
                    else leaf
                )
                leaf_axis = None if axis is not None and local.shape.rank == 0 else axis
                return parent.reduce(reduce_op, leaf, leaf_axis)

            return tf.nest.map_structure(reduce_leaf, value)

    return MultiWorkerMirroredStrategy()


# ------------------------------------------------------------------------------------- TFDS


def resolve_split(split: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """TFDS's split syntax (``"train[:80%]+validation"``) resolved against split sizes, for any
    source: ``[(split name, start, stop), ...]``. ValueError or AssertionError for a bad split.

    TFDS resolves its syntax only for its own builders; `tfds.core.ReadInstruction` and
    `tfds.core.SplitInfo` (``shard_lengths``, ``num_bytes``) do it for sizes we give them.
    """
    import tensorflow_datasets as tfds

    infos = {name: tfds.core.SplitInfo(name=name, shard_lengths=[size], num_bytes=0) for name, size in sizes.items()}
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
    return [(i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to) for i in instructions]


def tfds_data_dir() -> str:
    """Where TFDS keeps prepared datasets when no data_dir is given (``tfds.core.constants``)."""
    import tensorflow_datasets as tfds

    return tfds.core.constants.DATA_DIR


def tfds_downloads_itself(builder) -> bool:
    """Whether ``builder.download_and_prepare`` is TFDS's own (which retries each URL of
    ``builder.url_infos`` ten times with backoff, about 3.5 minutes offline; its ``MAX_RETRIES`` is
    a private constant), not a builder's override or `tfds.testing.mock_data`'s stand-in."""
    return type(builder).download_and_prepare.__module__.startswith("tensorflow_datasets.core")


@contextlib.contextmanager
def tfds_reading_quietly():
    """Inside, TensorFlow prints no deprecation warnings (restored after, whatever happens).

    TFDS's reader numbers records with the deprecated ``tf.data.experimental.Counter`` when asked
    for record ids (``ReadConfig(add_tfds_id=True)``: tensorflow_datasets/core/reader.py,
    ``_make_id_dataset``), and TensorFlow logged three lines ("CounterV2 ... is deprecated ...
    Use `tf.data.Dataset.counter(...)` instead") in every run of a TFDS set with a holdout or
    boxes: TFDS's to change, not the user's. The switch is TensorFlow's private
    ``deprecation._PRINT_DEPRECATION_WARNINGS``, what its ``deprecation.silence()`` sets; not that
    context itself, which restores the switch only when its block does not raise (no ``finally``),
    and the read inside raises for a dataset not prepared. `tests/test_compat.py` pins both.
    """
    from tensorflow.python.util import deprecation

    before = deprecation._PRINT_DEPRECATION_WARNINGS
    deprecation._PRINT_DEPRECATION_WARNINGS = False
    try:
        yield
    finally:
        deprecation._PRINT_DEPRECATION_WARNINGS = before


# ------------------------------------------------------------------------------------- keras-tuner


def hparams_of(hyperparameters) -> dict:
    """keras-tuner's own conversion of `HyperParameters` to TensorBoard's HParams (each with the
    domain it was declared with) -> value: ``keras_tuner.src.engine.tuner_utils``, not exported."""
    from keras_tuner.src.engine import tuner_utils
    from tensorboard.plugins.hparams import api as hparams_api

    converted = tuner_utils.convert_hyperparams_to_hparams(hyperparameters, hparams_api)
    # keras-tuner lists a stepped Float's domain with np.arange and draws its values as
    # min + k * step: TensorBoard would show dropout 0.30000000000000004. Both as declared.
    tidy = {}
    for hparam, value in converted.items():
        domain = hparam.domain
        if isinstance(domain, hparams_api.Discrete) and domain.dtype is float:
            hparam = hparams_api.HParam(hparam.name, hparams_api.Discrete([_declared(v) for v in domain.values]))
        tidy[hparam] = _declared(value) if isinstance(value, float) else value
    return tidy


def _declared(value: float) -> float:
    """A float as a person would have written it: 12 significant digits (0.1 * 3 -> 0.3)."""
    return float(f"{value:.12g}")


def quiet_failed_trials() -> None:
    """keras-tuner prints the whole traceback of every failed trial (``keras_tuner.src.config.DEBUG``
    is True by default, and `BaseTuner._try_run_and_update_trial` then calls
    ``traceback.print_exc()``): a search's trial that fails says so in one line instead (the
    traceback stays in the trial's record, ``trial.message``)."""
    from keras_tuner.src import config

    config.DEBUG = False


def set_oracle_timeout(seconds: float) -> None:
    """How long a distributed search's worker waits on each request to the chief's oracle.

    keras-tuner's client passes the module constant ``oracle_client.TIMEOUT`` (an hour) to every
    gRPC call and offers no setting: a worker whose chief never starts would wait that long.
    """
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = seconds


def keras_tuner_saves_with(write_text) -> None:
    """Route keras-tuner's state files (``oracle.json``, each ``trial.json``, the tuner's own)
    through ``write_text(path, text)``.

    keras-tuner writes them all through ``keras_tuner.src.utils.save_json``, in place: a kill or a
    full disk mid-write leaves half a file, on which every later reload of the search fails.
    """
    import json

    from keras_tuner.src import utils

    def save_json(path, obj):
        text = json.dumps(obj)
        write_text(path, text)
        return text

    utils.save_json = save_json


# What keras-tuner's `BaseTuner.get_state` saves in the tuner's own file (``tuner0.json``).
TUNER_STATE: dict = {}


def oracle_state_from_trials(oracle, trials: dict) -> dict:
    """The state keras-tuner keeps in ``oracle.json`` for ``oracle`` (fresh from its constructor,
    with the search's settings) after the ``trials`` (trial id -> `Trial`, from their own files).

    Rebuilds what `Oracle.get_state` saves (keras_tuner/src/engine/oracle.py): the order trials
    started and ended in, their value hashes (so no values are tried twice), the space (from the
    trials' own hyperparameters), the trials to run again (those that had not ended), and the seed
    state advanced by one draw per trial. Not for Hyperband, whose brackets live only there.
    """
    import collections

    ended = ("COMPLETED", "FAILED", "INVALID", "STOPPED")
    order = sorted(trials, key=lambda trial_id: (len(trial_id), trial_id))
    oracle.trials = dict(trials)
    oracle.start_order = list(order)
    oracle.end_order = [t for t in order if trials[t].status in ended]
    oracle.ongoing_trials = {}
    oracle._retry_queue = [t for t in order if trials[t].status not in ended]
    oracle._run_times = collections.defaultdict(lambda: 0, {t: 1 for t in order})
    hashes = {t: oracle._compute_values_hash(trials[t].hyperparameters.values) for t in order}
    oracle._id_to_hash = collections.defaultdict(lambda: None, hashes)
    oracle._tried_so_far = set(hashes.values())
    oracle._seed_state = oracle.seed + len(order)
    if order:
        oracle.hyperparameters = trials[order[-1]].hyperparameters.copy()
    return oracle.get_state()


def exit_now(status: int) -> None:
    """End the process now, output flushed, skipping the interpreter's shutdown, for two upstream
    behaviours: keras-tuner's chief leaves its gRPC server running (``oracle_chief.start_server``
    never stops it), whose threads would keep a finished search alive; and h5py's half-written files
    (a full disk mid-save) print tracebacks as they are freed at a normal exit.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def open_file_for_child(fd: int):
    """A duplicate of ``fd`` that a process multiprocessing starts receives as the same open file
    (``.fileno()``, ``.close()``), however it starts, fork server included: multiprocessing passes
    the descriptors its `Connection` objects hold to the new process (``reduction.DupFd``), and
    nothing public passes a plain one. A fork server's child otherwise has the server's stdout and
    stderr, those of the process that happened to start it."""
    from multiprocessing.connection import Connection

    return Connection(os.dup(fd))


# ------------------------------------------------------------------------------ export runtimes

ONNX_CAPTURED_CONSTANTS = (
    "keras.layers.Normalization keeps its adapted mean and variance as eager tensors, and tf2onnx "
    "(through keras.Model.export(format='onnx')) turns a function's captured tensors into extra model inputs"
)


@contextlib.contextmanager
def normalization_reads_variables(model):
    """While in the block, every adapted `keras.layers.Normalization` in ``model`` reads its
    ``adapt_mean`` / ``adapt_variance`` variables instead of the eager tensors ``finalize_state``
    made of them (``ONNX_CAPTURED_CONSTANTS``): a traced function then reads variables, which
    tf2onnx freezes into constants, rather than capturing tensors it would make inputs of.

    Only for layers whose kept axes are the trailing ones, where the variables broadcast against
    the input as the reshaped tensors do (the zoo's per-pixel and per-channel standardization)."""
    import keras

    swapped = []
    for layer in nested_layers(model):
        if not isinstance(layer, keras.layers.Normalization) or layer.input_mean is not None or not layer.built:
            continue
        kept = tuple(layer.adapt_mean.shape)
        if tuple(layer._broadcast_shape[len(layer._broadcast_shape) - len(kept) :]) != kept:
            continue
        swapped.append((layer, layer.mean, layer.variance))
        # object.__setattr__: Keras's attribute tracking would add the variables a second time.
        object.__setattr__(layer, "mean", layer.adapt_mean)
        object.__setattr__(layer, "variance", layer.adapt_variance)
    try:
        yield len(swapped)
    finally:
        for layer, mean, variance in swapped:
            object.__setattr__(layer, "mean", mean)
            object.__setattr__(layer, "variance", variance)


TFLITE_INTERPRETER_DEPRECATED = "tf.lite.Interpreter warns that it moves to the ai_edge_litert package"


def tflite_interpreter(path: str):
    """A TFLite interpreter for the model file ``path``: LiteRT's (``ai_edge_litert``) where it is
    installed, else TensorFlow's ``tf.lite.Interpreter``, whose deprecation warning
    (``TFLITE_INTERPRETER_DEPRECATED``) is silenced: it still runs every model the converter
    writes, Select TF ops included."""
    import warnings

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        interpreter = Interpreter(model_path=path)
    with _filtered_stderr(_tflite_noise):  # the delegate is applied (and announced) on the first allocation
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def tflite_converter_quietly():
    """TFLite's converter prints ``fully_quantize: 0, inference_type: 6, ...`` from C++ for every
    calibrated conversion, whatever TF_CPP_MIN_LOG_LEVEL says: hidden while in the block."""
    with _filtered_stderr(lambda lines: [line.startswith("fully_quantize:") for line in lines]):
        yield


def _tflite_noise(lines: list[str]) -> list[bool]:
    """The interpreter's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (every process)."""
    return [line.startswith("INFO: Created TensorFlow Lite") for line in lines]
