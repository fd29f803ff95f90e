"""Regularization and schedule settings (issue: training that beats a hand-tuned notebook): each a
`TrainConfig` field and a flag, recorded in flags.txt, through the optimizer and loss Keras
provides, resumed after a kill, and working under MirroredStrategy."""

import dataclasses
import json
import os

import h5py
import keras
import numpy as np
import pytest

import trainers.training
import zoo
from tests.conftest import TINY, interrupted_after_first_epoch, tiny
from trainers import steps
from trainers.config import ConfigError, TrainConfig
from trainers.metrics import SparseCrossentropyWithSmoothing
from trainers.rundir import RunDir
from trainers.saved import open_saved
from zoo import compat

REGULARIZED = dict(
    label_smoothing=0.1,
    weight_decay=1e-4,
    warmup_epochs=1,
    ema=True,
    ema_momentum=0.9,
    grad_accum_steps=2,
    clipnorm=1.0,
    drop_path=0.1,
)


def test_label_smoothing_is_kerass_on_one_hot_labels():
    rng = np.random.default_rng(0)
    probabilities = keras.ops.softmax(rng.normal(size=(6, 4)).astype("float32"))
    labels = np.array([0, 1, 2, 3, 1, 0])
    loss = SparseCrossentropyWithSmoothing(0.1)(labels, probabilities)
    smoothed = np.eye(4)[labels] * 0.9 + 0.1 / 4  # the rule, by hand
    expected = -(smoothed * np.log(np.asarray(probabilities))).sum(axis=1).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    assert float(SparseCrossentropyWithSmoothing(0.0)(labels, probabilities)) == pytest.approx(float(plain), rel=1e-5)
    again = keras.losses.deserialize(keras.losses.serialize(SparseCrossentropyWithSmoothing(0.2)))
    assert again.label_smoothing == 0.2


def test_the_optimizer_gets_each_setting_and_decay_spares_biases_and_batchnorm():
    config = TrainConfig(model="resnet18", **tiny(epochs=3), **REGULARIZED)
    phase = steps.phases(config)[0]
    optimizer = steps.make_optimizer(config, 0.01, phase)
    assert (optimizer.weight_decay, optimizer.clipnorm, optimizer.use_ema, optimizer.ema_momentum) == (
        1e-4,
        1.0,
        True,
        0.9,
    )
    assert optimizer.gradient_accumulation_steps == 2
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()])
    optimizer.build(model.trainable_variables)
    decayed = {v.path.split("/")[-1]: optimizer._use_weight_decay(v) for v in model.trainable_variables}
    assert decayed == {"kernel": True, "bias": False, "gamma": False, "beta": False}
    plain = steps.make_optimizer(TrainConfig(model="resnet18", **TINY), 0.01)
    assert (plain.weight_decay, plain.clipnorm, plain.use_ema, plain.gradient_accumulation_steps) == (
        None,
        None,
        False,
        None,
    )


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_rises_linearly_then_follows_the_schedule(schedule):
    config = TrainConfig(model="resnet18", **tiny(epochs=4), lr_schedule=schedule, warmup_epochs=1)
    phase = steps.phases(config)[0]
    rate = steps.make_learning_rate(config, phase, steps_per_epoch=10)
    rates = [float(rate(step)) for step in range(40)]
    # From lr / warmup_steps, a straight line up to lr over the first epoch's 10 steps.
    np.testing.assert_allclose(rates[:11], [0.001 + 0.009 * step / 10 for step in range(11)], rtol=1e-5)
    if schedule == "constant":
        assert rates[10:] == pytest.approx([0.01] * 30)
    else:
        assert rates[39] < rates[25] < rates[11] < 0.01  # then decaying


def test_bad_combinations_are_refused_naming_the_setting():
    with pytest.raises(ConfigError, match=r"^warmup_epochs=1: works with lr_schedule constant or cosine, not with"):
        TrainConfig(**tiny(epochs=3), warmup_epochs=1, lr_decay=0.01)
    with pytest.raises(ConfigError, match=r"^warmup_epochs=2: must be fewer than each phase's epochs \(3, 1\)"):
        TrainConfig(**TINY, freeze_epochs=3, finetune_epochs=1, warmup_epochs=2)
    with pytest.raises(ConfigError, match=r"^clipnorm=0.0: must be a positive norm"):
        TrainConfig(**TINY, clipnorm=0.0)
    with pytest.raises(ConfigError, match=r"^label_smoothing=1.0: must be at most 0.9"):
        TrainConfig(**TINY, label_smoothing=1.0)


@pytest.mark.slow
def test_a_regularized_run_under_mirrored_strategy_records_its_settings_and_ends_on_the_average(tmp_path, monkeypatch):
    # Everything but gradient accumulation, which Keras cannot do with several replicas (refused below).
    config = TrainConfig(
        model_dir=str(tmp_path / "run"),
        model="resnet18",
        model_options='{"widths": [8, 8, 16, 16]}',
        strategy="mirrored",
        **tiny(epochs=2),
        **{**REGULARIZED, "grad_accum_steps": 1},
        bn_momentum=0.9,
    )
    result = trainers.training.train(config)
    assert result.model.distribute_strategy.num_replicas_in_sync == 2
    assert np.isfinite(result.metrics["loss"])
    run = RunDir(config.model_dir)
    assert TrainConfig.from_flagfile(run.flags_file) == config  # every setting recorded in flags.txt
    flags_text = open(run.flags_file).read()
    recorded = ("--label_smoothing=0.1", "--weight_decay=0.0001", "--warmup_epochs=1", "--ema", "--clipnorm=1.0")
    for line in (*recorded, "--drop_path=0.1", "--bn_momentum=0.9"):
        assert line in flags_text.splitlines(), line
    # Each phase ends on the averaged weights: the model holds the optimizer's averages.
    optimizer = result.model.optimizer
    averages = {id(v): a for v, a in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)}
    for variable in result.model.trainable_variables:
        np.testing.assert_allclose(variable.numpy(), averages[id(variable)].numpy(), rtol=1e-6, atol=1e-7)
    # ...and the saved model is that model.
    saved = open_saved(config.model_dir)
    for got, want in zip(saved.model.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(got, want)
    norms = [layer for layer in compat.nested_layers(saved.model) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    assert len(momenta) == 20 and set(momenta) == {0.9}  # --bn_momentum, kept in model.keras
    # Killed after its first epoch and rerun, the same run on two replicas ends on the same weights
    # (its stream read through one iterator: compat.without_a_sample_batch).
    resumed = dataclasses.replace(config, model_dir=str(tmp_path / "resumed"))
    interrupted_after_first_epoch(resumed, monkeypatch)
    again = trainers.training.train(resumed)
    assert steps.weights_checksum(again.model) == steps.weights_checksum(result.model)
    accumulating = TrainConfig(
        **{**dataclasses.asdict(config), "grad_accum_steps": 2, "model_dir": str(tmp_path / "b")}
    )
    with pytest.raises(ConfigError, match=r"^grad_accum_steps=2: Keras's gradient accumulation fails under a tf.dis"):
        trainers.training.train(accumulating)
    assert not (tmp_path / "b").exists()
    without = TrainConfig(model_dir=str(tmp_path / "c"), **tiny(model="fashion_cnn"), bn_momentum=0.9)
    with pytest.raises(ConfigError, match=r"^bn_momentum=0.9: fashion_cnn has no BatchNormalization layer$"):
        trainers.training.train(without)
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_a_run_killed_after_its_first_epoch_keeps_its_averages_and_accumulators_and_resumes(
    tmp_path, monkeypatch, capsys
):
    """The first epoch's backup holds the optimizer's whole state (the EMA averages and the
    accumulated gradients beside Adam's moments and the step the warmup counts), so the rerun
    resumes from it; a run without those settings backs up that much less. (The Fashion CNN:
    stochastic depth, the one setting it lacks, keeps no state.)"""
    common = {**tiny(epochs=3, model="fashion_cnn", image_size=16), "optimizer": "adam", "learning_rate": 0.002}
    regularized = {**common, **REGULARIZED, "drop_path": 0.0}
    runs = {
        name: TrainConfig(model_dir=str(tmp_path / name), **settings)
        for name, settings in (("plain", common), ("regularized", regularized))
    }
    for config in runs.values():
        interrupted_after_first_epoch(config, monkeypatch)

    def optimizer_state(name):
        path = os.path.join(RunDir(runs[name].model_dir).backup("train"), compat.BACKUP_WEIGHTS)
        with h5py.File(path, "r") as file:
            return [np.asarray(file["optimizer/vars"][key]) for key in sorted(file["optimizer/vars"], key=int)]

    model = zoo.build("fashion_cnn", num_classes=5, input_shape=(16, 16, 3))
    trainable = len(model.trainable_variables)
    plain, kept = optimizer_state("plain"), optimizer_state("regularized")
    # An average and an accumulator more per trainable variable; the plain run's constant learning
    # rate is a variable of the optimizer's, the regularized run's warmup schedule is not.
    assert len(kept) == len(plain) - 1 + 2 * trainable
    assert int(kept[0]) == int(plain[0]) == 4  # the step the schedule (and warmup) counts: one epoch's 4
    capsys.readouterr()
    result = trainers.training.train(runs["regularized"])
    output = capsys.readouterr().out
    assert "Epoch 1/3" not in output and "Epoch 2/3" in output  # resumed after the first epoch
    assert np.isfinite(result.metrics["loss"])


def test_stochastic_depth_skips_whole_residual_branches_per_example_in_training_only():
    from zoo.layers import ResidualUnit

    unit = ResidualUnit(4, drop_rate=0.5, name="unit")
    images = np.repeat(np.random.default_rng(0).normal(size=(1, 6, 6, 4)).astype("float32"), 64, axis=0)
    keras.utils.set_random_seed(1)
    trained = np.asarray(unit(images, training=True))
    skipped = np.asarray(keras.activations.relu(images))  # the identity shortcut alone
    dropped = np.all(np.isclose(trained, skipped), axis=(1, 2, 3))
    assert 10 < dropped.sum() < 54  # about half of the 64 examples skip the branch, whole
    inference = np.asarray(unit(images, training=False))
    plain = ResidualUnit(4, name="plain")
    plain(images)
    plain.set_weights(unit.get_weights())
    np.testing.assert_allclose(inference, np.asarray(plain(images, training=False)), rtol=1e-6)
    assert ResidualUnit.from_config(unit.get_config()).drop_rate == 0.5


def test_drop_path_grows_with_depth_and_is_refused_where_there_is_none():
    model = zoo.build("resnet34", num_classes=3, input_shape=(32, 32, 3), widths=(4, 4, 4, 4), drop_path=0.3)
    units = [layer for layer in zoo.backbone_of(model).layers if "_unit" in layer.name]
    rates = [unit.drop_rate for unit in units]
    np.testing.assert_allclose(rates, np.linspace(0, 0.3, 16))
    config = TrainConfig(model="resnet18", **TINY, drop_path=0.1)
    assert config.builder_options == {"drop_path": 0.1} and "--drop_path=0.1" in config.flag_lines()
    with pytest.raises(ConfigError, match=r"^drop_path=0.1: model fashion_cnn has no stochastic depth; accepted for"):
        TrainConfig(model="fashion_cnn", **TINY, drop_path=0.1)
    with pytest.raises(ConfigError, match=r"^drop_path=0.1: is given in model_options too"):
        TrainConfig(model="resnet18", **TINY, drop_path=0.1, model_options='{"drop_path": 0.2}')
    with pytest.raises(ValueError, match=r"drop_path must be a number in \[0, 1\), received 1.5"):
        zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3), drop_path=1.5)


def test_bn_momentum_reaches_every_batchnorm_and_is_what_keras_updates_with():
    model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3), widths=(4, 4, 4, 4))
    norms = [layer for layer in compat.nested_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 20  # the stem's, two in each of the 8 residual units, one in each of 3 shortcuts
    assert {layer.momentum for layer in norms} == {0.99}
    assert zoo.set_batchnorm_momentum(model, 0.9) == 20
    assert {layer.momentum for layer in norms} == {0.9}
    unit = next(layer for layer in zoo.backbone_of(model).layers if isinstance(layer, zoo.ResidualUnit))
    assert zoo.ResidualUnit.from_config(unit.get_config()).bn1.momentum == 0.9  # what model.keras rebuilds
    # Keras reads it at each training step: moving mean <- m * moving mean + (1 - m) * batch mean.
    single = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    assert zoo.set_batchnorm_momentum(single, 0.5) == 1
    batch = np.array([[1.0, 4.0], [3.0, 8.0]], "float32")
    single(batch, training=True)
    np.testing.assert_allclose(single.layers[0].moving_mean.numpy(), [1.0, 3.0])
    application = zoo.build("mobilenetv3small", num_classes=3, input_shape=(32, 32, 3))  # a keras.applications backbone
    assert zoo.set_batchnorm_momentum(application, 0.9) == 34
    backbone = zoo.backbone_of(application).layers
    assert {layer.momentum for layer in backbone if isinstance(layer, keras.layers.BatchNormalization)} == {0.9}
    assert zoo.set_batchnorm_momentum(zoo.build("fashion_cnn", num_classes=3, input_shape=(16, 16, 1)), 0.9) == 0
    with pytest.raises(ValueError, match=r"bn_momentum must be in \[0, 1\), received 1.5"):
        zoo.ResidualUnit(8, bn_momentum=1.5)
    with pytest.raises(ConfigError, match=r"^bn_momentum=1.0: must be at most 0.9999"):
        TrainConfig(**TINY, bn_momentum=1.0)


def test_keep_best_keeps_the_best_epochs_weights_and_its_record_outlives_a_restart(tmp_path):
    from trainers.callbacks import KeepBest

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    folder = str(tmp_path / "checkpoints")
    callback = KeepBest("val_accuracy", lower_is_better=False, folder=folder)
    callback.set_model(model)
    kept = {}
    for epoch, value in enumerate([0.5, 0.7, 0.6]):
        model.layers[0].kernel.assign(np.full((3, 2), float(epoch), "float32"))
        callback.on_epoch_end(epoch, {"val_accuracy": value})
        kept[epoch + 1] = model.get_weights()
    record = KeepBest.read(folder)
    assert (record["epoch"], record["value"], record["monitor"]) == (2, 0.7, "val_accuracy")
    assert set(os.listdir(folder)) == {"best.json", "best-epoch2.weights.h5"}  # the older best removed
    # After a restart (a new callback reads the record): worse is ignored, better replaces it.
    again = KeepBest("val_accuracy", lower_is_better=False, folder=folder)
    again.set_model(model)
    again.on_epoch_end(3, {"val_accuracy": 0.65})
    assert KeepBest.read(folder)["epoch"] == 2
    again.on_epoch_end(4, {"val_accuracy": float("nan")})  # never a best
    assert KeepBest.read(folder)["epoch"] == 2
    model.load_weights(os.path.join(folder, "best-epoch2.weights.h5"))
    np.testing.assert_array_equal(model.get_weights()[0], kept[2][0])
    losses = KeepBest("val_loss", lower_is_better=True, folder=str(tmp_path / "loss"))
    losses.set_model(model)
    for epoch, value in enumerate([0.9, 0.4, 0.6]):
        losses.on_epoch_end(epoch, {"val_loss": value})
    assert KeepBest.read(str(tmp_path / "loss"))["epoch"] == 2


def test_with_ema_the_kept_weights_are_the_averages():
    from trainers.callbacks import averaged_weights

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.5), loss="mse")
    model.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=1, batch_size=4, verbose=0)
    optimizer = model.optimizer
    for variable in model.trainable_variables:  # fit ended on the averages; train on a little, by hand
        variable.assign(variable + 1.0)
    raw = [v.numpy() for v in model.trainable_variables]
    averages = [a.numpy() for a in optimizer._model_variables_moving_average]
    with averaged_weights(model):
        for variable, average in zip(model.trainable_variables, averages):
            np.testing.assert_array_equal(variable.numpy(), average)
    for variable, value in zip(model.trainable_variables, raw):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert not all(np.array_equal(a, b) for a, b in zip(raw, averages))


def test_keep_best_names_a_validation_metric_of_the_head():
    assert TrainConfig(**TINY, keep_best="val_loss").keep_best == "val_loss"
    with pytest.raises(ConfigError, match=r"^keep_best='accuracy': accepted for head classify: val_loss, val_accuracy"):
        TrainConfig(**TINY, keep_best="accuracy")
    with pytest.raises(
        ConfigError, match=r"accepted for head localize: val_loss, val_class_loss, val_bbox_loss, val_c"
    ):
        TrainConfig(**TINY, head="localize", keep_best="val_map_50")
    with pytest.raises(ConfigError, match=r"^keep_best='val_loss': needs a validation split"):
        TrainConfig(**{**TINY, "validation_split": ""}, keep_best="val_loss")


@pytest.mark.slow
def test_keep_best_across_both_phases_exports_the_best_and_records_the_final(tmp_path):
    from tests.conftest import logged
    from trainers.callbacks import KeepBest

    config = TrainConfig(
        model_dir=str(tmp_path / "run"),
        model="resnet18",
        model_options='{"widths": [8, 8, 16, 16]}',
        **tiny(freeze_epochs=1, finetune_epochs=2),
        keep_best="val_accuracy",
        ema=True,
    )
    result = trainers.training.train(config)
    run = RunDir(config.model_dir)
    recorded = json.load(open(run.metrics_file))
    validation = [value for _, value in logged(os.path.join(run.logs_dir, "validation"), "epoch_accuracy")]
    assert len(validation) == 3  # both phases, on one axis
    best = recorded["best"]
    assert best["monitor"] == "val_accuracy" and best["value"] == pytest.approx(max(validation), abs=1e-6)
    assert validation[best["epoch"] - 1] == pytest.approx(best["value"], abs=1e-6)  # the first of the best
    assert set(recorded["final"]) == {"accuracy", "loss", "num_examples"}
    assert {k: recorded[k] for k in ("accuracy", "loss")} == {k: result.metrics[k] for k in ("accuracy", "loss")}
    # model.keras holds the kept weights; evaluate reproduces the kept weights' metrics and says so.
    saved = open_saved(config.model_dir)
    kept = zoo.build("resnet18", num_classes=5, input_shape=(32, 32, 3), widths=(8, 8, 16, 16))
    kept.load_weights(os.path.join(run.path(RunDir.CHECKPOINTS), KeepBest.read(run.path(RunDir.CHECKPOINTS))["file"]))
    for got, want in zip(saved.model.get_weights(), kept.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert saved.evaluate(config.test_split)["loss"] == pytest.approx(recorded["loss"], rel=1e-4)
    assert saved.weights_note.startswith(f"weights: the best epoch's, epoch {best['epoch']} by val_accuracy=")
