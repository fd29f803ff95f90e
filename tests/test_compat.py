"""One test per shim of `zoo.compat`: each fails when the upstream behaviour it stands on changes,
naming what to revisit after an upgrade of Keras, TensorFlow, TFDS or keras-tuner."""

import contextlib
import inspect
import os

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.conftest import program_env, python_code
from zoo import compat


def three_inputs_two_classes(optimizer="sgd", loss="sparse_categorical_crossentropy", **options):
    """A compiled softmax classifier of 3 numbers into 2 classes: the smallest model fit can train."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer=optimizer, loss=loss, **options)
    return model


def test_nested_layers_reaches_the_sublayers_a_custom_layer_assigns():
    class Block(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = keras.Sequential([keras.layers.Dense(2), keras.layers.BatchNormalization()])

        def call(self, x):
            return self.inner(x)

    block = Block()
    found = compat.nested_layers(block)
    assert found[0] is block
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in found) == 1
    assert sum(isinstance(layer, keras.layers.Dense) for layer in found) == 1


def test_a_zoo_models_weights_file_nests_a_model_and_a_plain_applications_does_not(tmp_path):
    import zoo

    inputs = keras.Input((8, 8, 3))
    inner = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs), name="backbone")
    outer_inputs = keras.Input((8, 8, 3))
    nested = keras.Model(outer_inputs, keras.layers.Flatten()(inner(outer_inputs)))
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
    zoo_model = zoo.build("resnet18", num_classes=2, input_shape=(32, 32, 3), widths=(4, 4, 4, 4))
    for name, model, nests in (("nested", nested, True), ("plain", plain, False), ("zoo", zoo_model, True)):
        path = str(tmp_path / f"{name}.weights.h5")
        model.save_weights(path)
        assert compat.weights_file_nests_a_model(path) is nests, name
    not_hdf5 = tmp_path / "text.weights.h5"
    not_hdf5.write_text("not HDF5")
    assert compat.weights_file_nests_a_model(str(not_hdf5)) is True  # loading it gives the error


def test_building_the_training_state_first_lets_tensorflow_trace_the_training_step_once():
    import tensorflow as tf

    def traces_of_one_fit(build_first: bool) -> int:
        traced = []

        def loss(y_true, y_pred):  # runs once per trace of the training step in fit
            traced.append(1)
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

        model = three_inputs_two_classes(keras.optimizers.SGD(0.1, momentum=0.9), loss, metrics=["accuracy"])
        data = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.zeros(8, "int64"))).batch(4)
        if build_first:
            compat.build_training_state(model, data.element_spec)  # calls the loss symbolically once
        traced.clear()
        model.fit(data, epochs=1, verbose=0, shuffle=False)
        return len(traced)

    # Keras leaves the optimizer's and the metrics' variables to the first traced step (without a
    # distribution strategy), and TensorFlow traces a step that created variables again. When
    # this becomes 1, the shim has nothing left to do: remove it.
    assert traces_of_one_fit(build_first=False) == 2
    assert traces_of_one_fit(build_first=True) == 1


def test_under_a_strategy_keras_reads_a_sample_batch_through_an_iterator_of_its_own():
    import tensorflow as tf

    # The process's one MirroredStrategy (a second one's collectives would meet the trainer's).
    strategy = compat.mirrored_strategy(tuple(d.name for d in tf.config.list_logical_devices("CPU")[:2]))
    assert strategy.num_replicas_in_sync == 2

    def iterators_of_one_fit(shimmed: bool) -> int:
        made = []  # one entry per iterator of the data: each starts the generator anew

        def examples():
            made.append(1)
            for i in range(8):
                yield np.full(3, i, "float32"), np.int64(i % 2)

        def per_replica(context):
            spec = (tf.TensorSpec((3,), tf.float32), tf.TensorSpec((), tf.int64))
            return tf.data.Dataset.from_generator(examples, output_signature=spec).batch(
                context.get_per_replica_batch_size(4)
            )

        data = strategy.distribute_datasets_from_function(per_replica)
        with strategy.scope():
            model = three_inputs_two_classes(keras.optimizers.SGD(0.1))
            if shimmed:
                compat.build_training_state(model, data.element_spec)  # each replica's batch
        with compat.without_a_sample_batch(model) if shimmed else contextlib.nullcontext():
            model.fit(data, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
        assert int(model.optimizer.iterations.numpy()) == 2
        assert "_maybe_symbolic_build" not in vars(model)  # Keras's own again after the block
        return len(made)

    # Keras's TensorFlow trainer reads a batch through an iterator it then drops, before the one it
    # trains from (TensorFlowTrainer._maybe_symbolic_build). When this becomes 1, remove the shim.
    assert iterators_of_one_fit(shimmed=False) == 2
    assert iterators_of_one_fit(shimmed=True) == 1


def test_keras_warns_that_an_evaluation_of_unknown_size_ran_out_of_data():
    import warnings

    import tensorflow as tf

    model = three_inputs_two_classes()
    known = tf.data.Dataset.from_tensor_slices((np.ones((8, 3), "float32"), np.zeros(8, "int64"))).batch(4)
    unknown = known.filter(lambda x, y: True)  # the size a skipping pipeline has: unknown
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY

    def warned(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with compat.passes_end_quietly() if quiet else contextlib.nullcontext():
                model.evaluate(unknown, verbose=0)
                model.predict(unknown, verbose=0)
        return [str(w.message) for w in caught if compat.RAN_OUT_OF_DATA in str(w.message)]

    # keras-team/keras#23360: when this is empty, Keras no longer warns; remove the shim.
    assert len(warned(quiet=False)) == 2
    assert warned(quiet=True) == []


def test_ema_averages_pair_each_averaged_variable_with_its_average():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    assert compat.ema_averages(model.optimizer) == []  # not built yet
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    pairs = compat.ema_averages(model.optimizer)
    assert [variable.path for variable, _ in pairs] == [v.path for v in model.trainable_variables]
    assert all(tuple(average.shape) == tuple(variable.shape) for variable, average in pairs)
    assert compat.ema_averages(keras.optimizers.SGD(0.1)) == []


def test_keras_gradient_accumulation_still_fails_under_mirrored_strategy():
    """The trainer refuses --grad_accum_steps with several replicas because of this
    (compat.GRADIENT_ACCUMULATION_ISSUE); when Keras fixes it, this fails: drop the refusal."""
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(tf.config.list_logical_devices("CPU")[:2])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=2), loss="mse")
    with pytest.raises(RuntimeError, match="merge_call"):
        model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=4, epochs=1, verbose=0)
    assert compat.GRADIENT_ACCUMULATION_ISSUE == "keras-team/keras#20582"


def test_creating_an_iterator_draws_a_datasets_next_pass_seeds_so_skipped_passes_cost_nothing():
    import tensorflow as tf

    def passes():
        order = tf.data.Dataset.range(6).shuffle(6, seed=3, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=5, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip((order, seeds))

    def read(dataset):
        return [(int(a), int(b)) for a, b in dataset]

    dataset = passes()
    first, second, third = read(dataset), read(dataset), read(dataset)
    assert first != third and second != third  # each pass reshuffles and draws anew
    skipped = passes()
    compat.skip_iterations(skipped, 2)
    assert read(skipped) == third  # two iterators started and dropped unread: the third pass
    repeated = passes()
    compat.skip_iterations(repeated, 1)
    assert read(repeated.repeat().take(12)) == second + third  # repeat() goes on from there


def test_keras_keeps_seed_generator_states_out_of_the_weights_file(tmp_path):
    def build():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dropout(0.5)(inputs)))

    model = build()
    (state,) = compat.seed_generator_states(model)
    assert all(state is not weight for weight in model.weights)
    state.assign(np.array([5, 9]).astype(state.dtype))
    path = str(tmp_path / "dropout.weights.h5")
    model.save_weights(path)
    again = build()
    again.load_weights(path)
    # Not restored: when Keras saves the states, the trainer's per-epoch reseeding can go.
    assert compat.seed_generator_states(again)[0].numpy().tolist() != [5, 9]


def test_kerass_augmentation_layers_still_take_no_tensor_seed():
    """The policies run on the layers' own generators because of this (compat.KERAS_LAYER_SEEDS);
    when a tensor seed works, this fails: drive them from the pipeline's per-element seeds."""
    import tensorflow as tf

    images = tf.zeros((2, 8, 8, 3))
    for layer in (keras.layers.MixUp(), keras.layers.CutMix()):
        with pytest.raises(
            ValueError, match=r"^Argument `seed` must be either an integer|^The truth value of an array"
        ):
            layer.get_random_transformation(images, training=True, seed=tf.constant([1, 2]))
    assert "not a tensor" in compat.KERAS_LAYER_SEEDS


def test_randaugment_on_the_drawn_ops_alone_gives_the_layers_own_pixels():
    """compat.randaugment_image reads the layer's draw and its sublayers (Keras's RandAugment
    internals): if either changes, its output leaves the layer's here."""
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32"))

    def layer():
        return keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=7, dtype="float32")

    keras_layer, drawn_only = layer(), layer()  # the same seed: the same draws, call after call
    whole = tf.function(lambda batch: tf.map_fn(lambda image: keras_layer(image, training=True), batch))
    ours = tf.function(lambda batch: tf.map_fn(lambda image: compat.randaugment_image(drawn_only, image), batch))
    for _ in range(2):
        expected, got = whole(images).numpy(), ours(images).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
        changed = [not np.allclose(after, before) for after, before in zip(got, images.numpy())]
        assert sum(changed) >= 6, changed  # ops that move pixels were drawn, not a pass-through


def test_keras_tuner_prints_failed_trials_tracebacks_unless_told_not_to():
    """compat.quiet_failed_trials turns off keras-tuner's DEBUG, which prints each failed trial's
    traceback; when that setting moves, this fails."""
    import inspect

    from keras_tuner.src import config
    from keras_tuner.src.engine import base_tuner

    assert "config_module.DEBUG" in inspect.getsource(base_tuner.BaseTuner._try_run_and_update_trial)
    before = config.DEBUG
    try:
        compat.quiet_failed_trials()
        assert config.DEBUG is False
    finally:
        config.DEBUG = before


def test_backup_and_restore_writes_the_files_the_run_directory_repairs(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), double_checkpoint=True, delete_checkpoint=False)
    x, y = np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, epochs=2, batch_size=2, callbacks=[backup], verbose=0)
    expected = {
        compat.BACKUP_WEIGHTS,
        compat.BACKUP_METADATA,
        compat.BACKUP_WEIGHTS + compat.BACKUP_PREVIOUS,
        compat.BACKUP_METADATA + compat.BACKUP_PREVIOUS,
    }
    assert set(os.listdir(tmp_path)) == expected


def test_a_restored_backup_moves_the_start_of_the_models_next_fit_until_forgotten(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # one epoch backed up, then stopped
        model.fit(x, y, epochs=3, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path)), Stop()], verbose=0)
    restored = model.fit(x, y, epochs=3, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path))], verbose=0)
    assert len(restored.history["loss"]) == 2  # epochs 2 and 3
    # The next fit of the model (another phase, without a backup) starts at the restored epoch...
    assert len(model.fit(x, y, epochs=3, initial_epoch=2, verbose=0).history["loss"]) == 2
    # ... unless it is forgotten.
    compat.forget_restored_epoch(model)
    assert len(model.fit(x, y, epochs=3, initial_epoch=2, verbose=0).history["loss"]) == 1


def test_tfds_reads_record_ids_with_a_deprecated_counter_and_the_shim_silences_tensorflows_warning():
    import logging

    import tensorflow as tf
    from tensorflow.python.util import deprecation
    from tensorflow_datasets.core import reader

    assert "tf.data.experimental.Counter" in inspect.getsource(reader._make_id_dataset)  # still TFDS's way
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        old = deprecation.deprecated(None, "Use new() instead.")(lambda: None)
        with compat.tfds_reading_quietly():
            old()
        assert not records  # silenced: TensorFlow reads the switch before it prints
        old()
        assert any("is deprecated" in record.getMessage() for record in records)
    finally:
        tf.get_logger().removeHandler(handler)
    with pytest.raises(KeyError), compat.tfds_reading_quietly():
        raise KeyError("restored whatever happens")
    assert deprecation._PRINT_DEPRECATION_WARNINGS is True


def test_tfds_split_syntax_resolves_against_sizes_we_give():
    sizes = {"train": 100, "test": 10}
    assert compat.resolve_split("train[:80%]+test", sizes) == [("train", 0, 80), ("test", 0, 10)]
    assert compat.resolve_split("train[10:20]", sizes) == [("train", 10, 20)]
    with pytest.raises((ValueError, AssertionError)):
        compat.resolve_split("validation", sizes)


def test_tfds_data_dir_and_whose_download_it_is():
    assert isinstance(compat.tfds_data_dir(), str) and compat.tfds_data_dir()
    assert compat.tfds_downloads_itself(tfds.builder("mnist"))
    with tfds.testing.mock_data(num_examples=2):
        assert not compat.tfds_downloads_itself(tfds.builder("mnist"))


def test_keras_tuner_converts_hyperparameters_to_hparams_with_their_declared_domain():
    import keras_tuner as kt
    from tensorboard.plugins.hparams import api as hparams_api

    hp = kt.HyperParameters()
    hp.Choice("optimizer", ["sgd", "adam"], default="adam")
    hp.Float("dropout", 0.0, 0.6, step=0.3)
    converted = compat.hparams_of(hp)
    by_name = {hparam.name: (hparam, value) for hparam, value in converted.items()}
    assert by_name["optimizer"][1] == "adam"
    assert isinstance(by_name["optimizer"][0].domain, hparams_api.Discrete)
    assert set(by_name["optimizer"][0].domain.values) == {"sgd", "adam"}
    # A stepped Float as declared: keras-tuner's np.arange gives 0.30000000000000004, and its
    # values are drawn as min + k * step; TensorBoard shows 0.3.
    hp = kt.HyperParameters()
    hp.Float("dropout", 0.0, 0.6, step=0.1)
    hp.values["dropout"] = 0.1 * 3
    ((hparam, value),) = compat.hparams_of(hp).items()
    assert hparam.domain.values == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6] and value == 0.3


def test_keras_tuner_client_reads_its_timeout_from_the_module_constant():
    from keras_tuner.src.distribute import oracle_client

    before = oracle_client.TIMEOUT
    try:
        compat.set_oracle_timeout(7)
        assert oracle_client.TIMEOUT == 7
        # Every request passes the module's constant: setting it is what reaches the calls.
        assert "timeout=TIMEOUT" in inspect.getsource(oracle_client.OracleClient)
    finally:
        oracle_client.TIMEOUT = before


def test_keras_tuner_chief_server_never_stops_by_itself():
    # If keras-tuner stops its gRPC server once the search ends, exit_now loses one of its two reasons.
    from keras_tuner.src.distribute import oracle_chief

    source = inspect.getsource(oracle_chief.start_server)
    assert "server.start()" in source and "server.stop(" not in source


def test_tensorflows_start_up_noise_is_hidden_and_everything_else_passes():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796050187.182724    5587 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n",
        "I0000 00:00:1796050187.264030    5587 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n",
        "E0000 00:00:1796050192.529854    5587 cuda_platform.cc:52] failed call to cuInit: INTERNAL: (303)\n",
        "E0000 00:00:1796050192.529854    5587 some_op.cc:52] a real error\n",
        "a line of the program's own\n",
    ]
    assert compat._start_up_noise(lines) == [True, True, True, True, True, False, False]


@pytest.mark.slow
def test_a_program_starts_without_tensorflows_start_up_lines(tmp_path):
    import subprocess
    import sys

    environment = program_env(TF_CPP_MIN_LOG_LEVEL=None)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.shapes", str(tmp_path), "1"],
        capture_output=True,
        text=True,
        cwd=repo,
        env=environment,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""


def test_keras_tuner_writes_every_state_file_through_the_writer_we_give(tmp_path, monkeypatch):
    import keras_tuner as kt
    from keras_tuner.src import utils

    monkeypatch.setattr(utils, "save_json", utils.save_json)  # restored after the test
    written = {}
    compat.keras_tuner_saves_with(lambda path, text: written.update({path: text}))
    trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id="7")
    trial.save(str(tmp_path / "trial.json"))
    assert (
        list(written) == [str(tmp_path / "trial.json")] and '"trial_id": "7"' in written[str(tmp_path / "trial.json")]
    )
    assert not os.path.exists(tmp_path / "trial.json")  # nothing written behind the writer's back


def test_keras_normalization_still_keeps_its_statistics_as_eager_tensors():
    # zoo.compat.normalization_reads_variables exists because of this (ONNX_CAPTURED_CONSTANTS).
    layer = keras.layers.Normalization(axis=-1)
    layer.adapt(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert not isinstance(layer.mean, keras.Variable)
    from zoo.compat import nested_layers, normalization_reads_variables

    model = keras.Sequential([keras.Input((3,)), layer])
    expected = (1 - np.array([4.5, 5.5, 6.5])) / np.sqrt(11.25)  # the columns' mean and variance
    np.testing.assert_allclose(model(np.ones((1, 3))), [expected], atol=1e-5)
    with normalization_reads_variables(model) as swapped:
        assert swapped == 1 and layer.mean is layer.adapt_mean
        np.testing.assert_allclose(model(np.ones((1, 3))), [expected], atol=1e-5)
    assert not isinstance(layer.mean, keras.Variable)
    assert layer in nested_layers(model)


@pytest.mark.slow
def test_tf2onnx_turns_a_normalizations_eager_statistics_into_inputs_unless_they_read_variables(tmp_path):
    import onnxruntime

    from zoo.compat import normalization_reads_variables

    layer = keras.layers.Normalization(axis=-1)
    layer.adapt(np.arange(12, dtype=np.float32).reshape(4, 3))
    model = keras.Sequential([keras.Input((3,)), layer])
    model(np.ones((1, 3), np.float32))
    model.export(str(tmp_path / "plain.onnx"), format="onnx", verbose=False)
    plain = onnxruntime.InferenceSession(str(tmp_path / "plain.onnx"), providers=["CPUExecutionProvider"])
    assert len(plain.get_inputs()) > 1  # upstream: the mean and variance became inputs
    with normalization_reads_variables(model):
        model.export(str(tmp_path / "fixed.onnx"), format="onnx", verbose=False)
    fixed = onnxruntime.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in fixed.get_inputs()]
    (got,) = fixed.run(None, {name: np.ones((1, 3), np.float32)})
    np.testing.assert_allclose(got, model(np.ones((1, 3))), atol=1e-5)


@pytest.mark.slow
def test_tf_lite_interpreter_still_warns_that_it_moves_and_our_interpreter_runs_quietly(tmp_path):
    import warnings

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "dense.tflite")
    model.export(path, format="litert", verbose=False)
    import tensorflow as tf

    with pytest.warns(UserWarning, match="tf.lite.Interpreter is deprecated"):
        tf.lite.Interpreter(model_path=path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interpreter = compat.tflite_interpreter(path)
    runner = interpreter.get_signature_runner()
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    (got,) = runner(**{name: np.ones((1, 3), np.float32)}).values()
    np.testing.assert_allclose(got, model(np.ones((1, 3))), atol=1e-5)


@pytest.mark.slow
def test_the_tflite_converter_still_prints_its_quantization_line_and_we_hide_it(tmp_path, capfd):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    import tensorflow as tf

    def calibration():
        for _ in range(2):
            yield [np.ones((1, 3), np.float32)]

    options = dict(format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT])
    capfd.readouterr()
    model.export(str(tmp_path / "plain.tflite"), representative_dataset=calibration, **options)
    assert "fully_quantize:" in capfd.readouterr().err  # upstream: printed from C++ whatever the log level
    with compat.tflite_converter_quietly():
        model.export(str(tmp_path / "quiet.tflite"), representative_dataset=calibration, **options)
    assert "fully_quantize:" not in capfd.readouterr().err
    assert (tmp_path / "quiet.tflite").stat().st_size > 0


@pytest.mark.slow
def test_a_file_given_to_a_fork_servers_child_is_the_same_open_file():
    # multiprocessing passes a Connection's descriptor to the process it starts (reduction.DupFd);
    # a trial process has the search's stdout and stderr through that (`pipelines.tuning`).
    import multiprocessing
    from multiprocessing.connection import Connection

    read, write = os.pipe()
    carried = compat.open_file_for_child(write)
    os.close(write)
    child = multiprocessing.get_context("forkserver").Process(target=Connection.send_bytes, args=(carried, b"through"))
    child.start()
    carried.close()
    child.join(120)
    assert child.exitcode == 0
    assert Connection(read).recv_bytes() == b"through"


def test_a_tests_program_process_runs_as_a_plain_install():
    """`program_env` hides the optional packages that TensorFlow and Keras import whenever they are
    installed (this process has them all: the test and figures extras), and the programs start
    without them, as after a plain ``pip install .``."""
    import sys

    import trainers.train  # noqa: F401

    optional = {"sklearn", "matplotlib", "jax"}
    installed = {name for name in optional if name in sys.modules}
    if installed != optional:
        pytest.skip(f"not installed here: {sorted(optional - installed)} (make install installs them)")
    code = "import sys, zoo, trainers.train; print(sorted({'sklearn', 'matplotlib', 'jax'} & set(sys.modules)))"
    out = python_code(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]"]


TWO_STRATEGIES = r"""
import keras, numpy as np, tensorflow as tf
from trainers import distribute
from zoo import compat

distribute.split_cpu(2)
devices = tuple(device.name for device in tf.config.list_logical_devices("CPU"))

def train(strategy, outputs):
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(outputs)])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, outputs)), batch_size=4, epochs=1, verbose=0)

shared = compat.mirrored_strategy(devices)
assert compat.mirrored_strategy(devices) is shared and shared.num_replicas_in_sync == 2
for outputs in (1, 5, 2):  # three models of other shapes, one strategy
    train(shared, outputs)
print("one strategy: trained 3 models", flush=True)
try:
    train(tf.distribute.MirroredStrategy(devices), 7)
    print("a second strategy: trained")
except tf.errors.InvalidArgumentError as error:
    print("a second strategy:", "Shape mismatch in the collective instance" in str(error))
"""


def test_one_mirrored_strategy_per_process_trains_model_after_model_and_a_second_one_collides():
    """compat.mirrored_strategy, because of compat.MIRRORED_STRATEGY_ISSUE; when a second
    MirroredStrategy trains here, TensorFlow numbers each strategy's collectives apart: drop it."""
    result = python_code(TWO_STRATEGIES)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "one strategy: trained 3 models" in result.stdout, result.stdout
    assert "a second strategy: True" in result.stdout, result.stdout  # upstream still collides
    assert compat.MIRRORED_STRATEGY_ISSUE == "tensorflow/tensorflow#62790"
