"""The augmentation policies (issue: training that beats a hand-tuned notebook): randaugment,
erase, mixup and cutmix in the `AUGMENTATIONS` registry, run by Keras's layers in the input
pipeline, each with its strength; mixed labels through the loss (with smoothing) and accuracy."""

import dataclasses
import json

import keras
import numpy as np
import pytest

import pipelines
from pipelines import ops
from tests.conftest import logged, run_program, tiny
from trainers.config import ConfigError, TrainConfig
from trainers.metrics import SparseCrossentropyWithSmoothing, class_accuracy, class_top5_accuracy
from trainers.rundir import RunDir
from zoo import common


def batch(augment, seed=5, channels=None, **strength):
    dataset, _ = pipelines.load(
        "shapes",
        "train[:32]",
        image_size=32,
        batch_size=16,
        training=True,
        augment=augment,
        augment_strength=strength or None,
        seed=seed,
        channels=channels,
    )
    images, labels = next(iter(dataset))
    return images.numpy(), labels.numpy()


def test_each_policy_changes_the_batch_it_should_and_is_seeded():
    plain_images, plain_labels = batch(())
    for name in ("randaugment", "erase", "mixup", "cutmix"):
        images, labels = batch((name,))
        assert images.shape == plain_images.shape and images.dtype == np.float32
        assert not np.array_equal(images, plain_images), name
        assert images.min() >= 0 and images.max() <= 255, name
        np.testing.assert_array_equal(batch((name,))[0], images)  # the same seed draws the same
        if name in common.MIXING_AUGMENTATIONS:
            # Class probabilities: each row sums to 1, over at most two classes.
            assert labels.shape == (16, 5) and labels.dtype == np.float32
            np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
            assert ((labels > 0).sum(axis=1) <= 2).all()
        else:
            np.testing.assert_array_equal(labels, plain_labels)  # the ids, untouched
    # With alpha 1 (a uniform mixing weight) most examples are visibly mixed.
    _, labels = batch(("mixup",), mixup=1.0)
    assert (labels.max(axis=1) < 0.95).sum() >= 8
    # erase with probability 0 erases nothing; at 1 every image gets a patch.
    np.testing.assert_array_equal(batch(("erase",), erase=0.0)[0], plain_images)
    erased = batch(("erase",), erase=1.0)[0]
    assert all(not np.array_equal(a, b) for a, b in zip(erased, plain_images))


def test_each_policy_gives_the_same_float32_batch_under_a_mixed_precision_policy():
    # The trainer sets mixed_bfloat16 before it builds the pipeline on CPUs with bfloat16
    # instructions: the policies' layers stay float32 there (MixUp failed on bfloat16 inputs).
    for name in ("randaugment", "erase", "mixup", "cutmix"):
        want = batch((name,))
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            got = batch((name,))
        finally:
            keras.mixed_precision.set_global_policy("float32")
        for got_part, want_part in zip(got, want):
            assert got_part.dtype == want_part.dtype, name
            np.testing.assert_array_equal(got_part, want_part, err_msg=name)


def test_mixup_and_cutmix_together_give_each_batch_one_of_them(monkeypatch):
    # Stand-ins that mark the labels with the layer that ran: class 0 for mixup, 1 for cutmix.
    class Marking(keras.layers.Layer):
        def __init__(self, column, **kwargs):
            super().__init__(**kwargs)
            self.column = column

        def call(self, data, training=None):
            marked = np.zeros(5, "float32")
            marked[self.column] = 1
            return {"images": data["images"], "labels": data["labels"] * 0 + marked}

    def marking(column):
        return lambda strength, seed, dtype: Marking(column, dtype=dtype)

    registry = dict(ops.AUGMENTATIONS)
    for column, name in enumerate(("mixup", "cutmix")):
        registry[name] = dataclasses.replace(registry[name], layer=marking(column))
    monkeypatch.setattr(ops, "AUGMENTATIONS", registry)
    dataset, _ = pipelines.load(
        "shapes", "train[:320]", image_size=16, batch_size=16, training=True, augment="mixup,cutmix", seed=1
    )
    ran = [int(labels.numpy()[:, 1].all()) for _, labels in dataset]  # 1: cutmix ran on the whole batch
    assert len(ran) == 20 and 4 <= sum(ran) <= 16  # both, at about even odds


def test_randaugment_takes_gray_images_and_draws_per_image():
    images, _ = batch(("randaugment",), channels=1, randaugment=1.0)
    assert images.shape == (16, 32, 32, 1)
    plain, _ = batch((), channels=1)
    changed = [not np.array_equal(a, b) for a, b in zip(images, plain)]
    assert sum(changed) >= 8  # two ops per image at full magnitude change most of them


def test_a_localize_task_accepts_only_the_ops_that_keep_its_box():
    for name in ("randaugment", "mixup", "cutmix"):
        with pytest.raises(pipelines.DataError) as caught:
            pipelines.load("shapes", "train[:32]", task="localize", augment=("crop", name))
        assert str(caught.value) == (
            f"augmentation(s) '{name}' would not keep the box on the object; a localize head accepts crop, flip, erase"
        )
        with pytest.raises(ConfigError) as caught:
            TrainConfig(model="resnet18", head="localize", augment=("flip", name))
        assert caught.value.flag_message().startswith(f"--augment=flip,{name}: augmentation(s) '{name}' would not")
    # erase moves no pixel: the box stays right.
    dataset, _ = pipelines.load(
        "shapes", "train[:16]", task="localize", image_size=32, batch_size=8, training=True, augment="crop,erase"
    )
    images, targets = next(iter(dataset))
    assert targets["bbox"].shape == (8, 4) and images.shape == (8, 32, 32, 3)
    assert [name for name, op in ops.AUGMENTATIONS.items() if op.boxes] == list(common.BOX_AUGMENTATIONS)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(mixup_alpha=0.0), "--mixup_alpha=0.0: must be above 0.0"),
        (dict(cutmix_alpha=-1.0), "--cutmix_alpha=-1.0: must be at least 0.0"),
        (dict(randaugment_magnitude=1.5), "--randaugment_magnitude=1.5: must be at most 1.0"),
        (dict(erase_probability=-0.1), "--erase_probability=-0.1: must be at least 0.0"),
    ],
)
def test_each_bad_strength_is_one_line(settings, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**settings)
    assert caught.value.flag_message() == message


def test_bad_strengths_given_to_the_pipeline_are_one_line():
    with pytest.raises(pipelines.DataError, match=r"^mixup_alpha must be a number above 0.0, received 0$"):
        pipelines.load("shapes", "train", augment="mixup", augment_strength={"mixup": 0})
    with pytest.raises(pipelines.DataError, match=r"^augment_strength names 'mix'; accepted: randaugment, erase,"):
        pipelines.load("shapes", "train", augment="mixup", augment_strength={"mix": 0.2})


def test_the_class_loss_and_accuracy_take_mixed_labels_and_ids():
    rng = np.random.default_rng(0)
    predictions = keras.ops.softmax(rng.normal(size=(6, 7)).astype("float32"))
    ids = np.array([0, 3, 6, 2, 2, 5])
    soft = np.eye(7, dtype="float32")[ids] * 0.7 + np.eye(7, dtype="float32")[np.roll(ids, 1)] * 0.3
    loss = SparseCrossentropyWithSmoothing(label_smoothing=0.1)
    want = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(soft, predictions)
    np.testing.assert_allclose(float(loss(soft, predictions)), float(want), rtol=1e-6)
    # On ids it is the one-hot loss, as before.
    want = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(7)[ids], predictions)
    np.testing.assert_allclose(float(loss(ids, predictions)), float(want), rtol=1e-6)
    # Accuracy counts a mixed example right when its larger share is predicted, as on its id.
    np.testing.assert_array_equal(class_accuracy(soft, predictions), class_accuracy(ids, predictions))
    np.testing.assert_array_equal(
        class_accuracy(ids, predictions), keras.metrics.sparse_categorical_accuracy(ids, predictions)
    )
    np.testing.assert_array_equal(class_top5_accuracy(soft, predictions), class_top5_accuracy(ids, predictions))


@pytest.mark.slow
def test_a_mixed_run_under_mirrored_strategy_trains_validates_and_records_its_policies(tmp_path):
    # A process of its own: several MirroredStrategy trainings in one test worker can meet each
    # other's collective ops (a graph error none of them meets alone).
    config = TrainConfig(
        model_dir=str(tmp_path / "run"),
        model="resnet18",
        model_options='{"widths": [8, 8, 16, 16]}',
        strategy="mirrored",
        logical_cpus=2,
        augment=("crop", "flip", "randaugment", "erase", "mixup", "cutmix"),
        mixup_alpha=0.4,
        randaugment_magnitude=0.3,
        label_smoothing=0.1,
        **tiny(epochs=2),
    )
    flags = [line for line in config.flag_lines()]
    done = run_program(["-m", "trainers.train", *flags], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "strategy MirroredStrategy with 2 replica(s)" in done.stderr
    for name in ("epoch_loss", "epoch_accuracy"):
        for logs in ("train", "validation"):
            values = [value for _, value in logged(str(tmp_path / "run" / "logs" / logs), name)]
            assert len(values) == 2 and all(np.isfinite(values)), (logs, name, values)
            if name == "epoch_accuracy":
                assert all(0 <= v <= 1 for v in values)
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert 0 <= metrics["accuracy"] <= 1
    run = RunDir(config.model_dir)
    assert TrainConfig.from_flagfile(run.flags_file) == config
    lines = open(run.flags_file).read().splitlines()
    for line in ("--augment=crop,flip,randaugment,erase,mixup,cutmix", "--mixup_alpha=0.4"):
        assert line in lines, line
