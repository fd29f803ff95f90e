"""Recipes, TFDS download on first use, and the validation split carved from train."""

import os

import numpy as np
import pytest
import tensorflow as tf

import pipelines
import tests.tiny_tfds  # noqa: F401  (registers the local TFDS builders)
import trainers.training
from pipelines import DataError
from tests.conftest import logged, run_program, train_in_process
from trainers import steps
from trainers.config import ConfigError, TrainConfig, recipe_names
from zoo import compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(root, per_class, layout):
    """JPEGs of two classes under each of ``layout``'s split folders."""
    for split in layout:
        for label, name in enumerate(("cats", "dogs")):
            os.makedirs(os.path.join(root, split, name))
            for index in range(per_class):
                pixels = np.full((12, 12, 3), (20 * index + 100 * label) % 256, np.uint8)
                tf.io.write_file(os.path.join(root, split, name, f"{index}.jpg"), tf.io.encode_jpeg(pixels))
    return root


# ------------------------------------------------------------------------------------- TFDS download


def test_a_tfds_dataset_is_downloaded_and_prepared_on_first_use(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(DataError) as refused:
        pipelines.load("zoo_tiny_images", "train", data_dir=data_dir, download=False)
    assert str(refused.value) == (
        f"dataset 'zoo_tiny_images' is not prepared in {data_dir} and downloading is off; prepare it with "
        f"`tfds build zoo_tiny_images --data_dir={data_dir}` (needs network access), or allow downloading"
    )
    dataset, info = pipelines.load("zoo_tiny_images", "train", data_dir=data_dir, batch_size=8)
    assert info.num_examples == 40 and sum(int(b[0].shape[0]) for b in dataset) == 40
    assert os.path.isdir(os.path.join(data_dir, "zoo_tiny_images", "1.0.0"))
    _, again = pipelines.load("zoo_tiny_images", "test", data_dir=data_dir, download=False)  # prepared now
    assert again.num_examples == 6


def test_a_download_that_fails_is_one_line_naming_the_dataset_folder_and_command(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(DataError) as failed:
        pipelines.load("zoo_unreachable_images", "train", data_dir=data_dir)
    message = str(failed.value)
    assert message.startswith(f"dataset 'zoo_unreachable_images' could not be downloaded and prepared into {data_dir}")
    assert "ConnectionError: HTTPSConnectionPool" in message and "\n" not in message
    assert message.endswith(f"run `tfds build zoo_unreachable_images --data_dir={data_dir}`, then rerun")


def test_an_offline_download_fails_at_once_naming_the_host_it_cannot_resolve(tmp_path, monkeypatch):
    # Offline, TFDS retries each URL for about 3.5 minutes before failing; a lookup of the hosts in
    # the dataset's checksums file fails at once. Behind a proxy (which resolves names) TFDS tries.
    import socket

    import tensorflow_datasets as tfds

    from pipelines.sources.tfds import PROXY_VARIABLES

    data_dir = str(tmp_path / "tfds")
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def no_such_name(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    downloads = []

    def download(manager, urls, *args, **kwargs):  # where TFDS's own download_and_prepare fetches
        downloads.append(urls)
        raise ConnectionError("HTTPSConnectionPool: Max retries exceeded")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", download)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    with pytest.raises(DataError) as offline:
        pipelines.load("fashion_mnist", "train", data_dir=data_dir)
    assert str(offline.value) == (
        f"dataset 'fashion_mnist' could not be downloaded and prepared into {data_dir} (cannot resolve "
        f"fashion-mnist.s3-website.eu-central-1.amazonaws.com: no network access?); with network access run "
        f"`tfds build fashion_mnist --data_dir={data_dir}`, then rerun"
    )
    assert downloads == []

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with pytest.raises(DataError, match=r"\(ConnectionError: HTTPSConnectionPool: Max retries exceeded\)"):
        pipelines.load("fashion_mnist", "train", data_dir=data_dir)
    assert len(downloads) == 1 and "fashion-mnist" in str(downloads[0])


# ------------------------------------------------------------------------------------- carved validation


def test_a_tfds_set_without_validation_gets_a_stratified_holdout_from_train(tmp_path, caplog):
    data_dir = str(tmp_path / "tfds")
    args = dict(data_dir=data_dir, batch_size=64, validation_holdout=0.1)

    def images_and_labels(split, **overrides):
        dataset, info = pipelines.load("zoo_tiny_images", split, **{**args, **overrides})
        found = {
            image.numpy().tobytes(): int(label) for images, labels in dataset for image, label in zip(images, labels)
        }
        assert info.num_examples == len(found)
        return found

    train, validation = images_and_labels("train"), images_and_labels("validation")
    assert len(train) == 36 and sorted(validation.values()) == [0, 0, 1, 1]  # 10% of each class
    assert not set(train) & set(validation)
    everything = images_and_labels("train", validation_holdout=0.0)
    assert set(everything) == set(train) | set(validation)
    assert (
        images_and_labels("validation", training=True, seed=3, batch_size=2).keys() == validation.keys()
    )  # any order, seed
    assert "has no validation split: 4 examples (10% of train, stratified by class" in caplog.text


def test_a_folder_with_train_and_test_only_gets_a_holdout_and_the_trainer_uses_it(tmp_path):
    root = make_folder(str(tmp_path / "pets"), per_class=10, layout=["train", "test"])
    _, train = pipelines.load(f"dir:{root}", "train", image_size=16, validation_holdout=0.1)
    validation, info = pipelines.load(f"dir:{root}", "validation", image_size=16, validation_holdout=0.1)
    assert (train.num_examples, info.num_examples) == (18, 2)
    assert sorted(int(label) for _, labels in validation for label in labels) == [0, 1]
    with pytest.raises(DataError, match=r"bad split 'validation'|holds no"):
        pipelines.load(f"dir:{root}", "validation", image_size=16)  # no holdout asked: no such split
    config = TrainConfig(model_dir=str(tmp_path / "run"), dataset=f"dir:{root}", image_size=16, batch_size=6, epochs=1)
    result = trainers.training.train(config)  # validation_split="validation" (the default) is carved
    assert result.metrics["num_examples"] == 20


# ------------------------------------------------------------------------------------- recipes


def learning_rates(config, phase, steps_at=(0, 1, 86)):
    rate = steps.make_learning_rate(config, phase, steps_per_epoch=86)
    return [float(rate(step)) if callable(rate) else float(rate) for step in steps_at]


def test_the_flowers_recipe_is_the_seeds_transfer_learning():
    config = TrainConfig.from_recipe("flowers_xception", model_dir="runs/x")
    assert (config.dataset, config.model, config.weights, config.image_size, config.batch_size) == (
        "tf_flowers",
        "xception",
        "imagenet",
        224,
        32,
    )
    assert (config.train_split, config.validation_split, config.test_split) == (
        "train[25%:]",
        "train[10%:25%]",
        "train[:10%]",
    )
    assert config.augment == ("crop", "flip") and pipelines.ops.RANDOM_CROP_FRACTION == 0.9
    assert config.unfreeze_batchnorm  # as the seed: every layer unfrozen
    # The chapter's shuffle(1000), in float32; 2,752 training images in 86 full batches of 32, the
    # chapter's int(0.75 * 3670 / 32).
    assert config.shuffle_buffer == 1000 and config.mixed_precision is False
    ((_, start, stop),) = compat.resolve_split(config.train_split, {"train": 3670})
    assert (stop - start, (stop - start) // config.batch_size) == (2752, int(0.75 * 3670 / 32))
    ((_, start, stop),) = compat.resolve_split(config.validation_split, {"train": 3670})
    assert stop - start == 551  # all read; the chapter's 17 validation batches read 544
    frozen, finetune = steps.phases(config)
    assert (frozen.name, frozen.epochs, finetune.name, finetune.epochs) == ("frozen", 5, "finetune", 2)
    expected = {
        "frozen": (0.9, False, [0.2, 0.2 / 1.01, 0.2 / 1.86]),
        "finetune": (0.9, True, [0.01, 0.01 / 1.001, 0.01 / 1.086]),
    }
    for phase in (frozen, finetune):
        optimizer = steps.make_optimizer(config, steps.make_learning_rate(config, phase, 86), phase)
        momentum, nesterov, rates = expected[phase.name]
        assert type(optimizer).__name__ == "SGD"
        assert (optimizer.momentum, optimizer.nesterov) == (momentum, nesterov), phase.name
        np.testing.assert_allclose(learning_rates(config, phase), rates, rtol=1e-6)


def test_the_fashion_recipe_is_the_seeds_cnn():
    config = TrainConfig.from_recipe("fashion_mnist_cnn", model_dir="runs/x")
    assert (config.dataset, config.model, config.optimizer, config.batch_size) == (
        "fashion_mnist",
        "fashion_cnn",
        "nadam",
        32,
    )
    assert (config.train_split, config.validation_split, config.test_split) == (
        "train[:55000]",
        "train[55000:]",
        "test",
    )
    assert config.augment == () and config.adapt_steps == 0  # standardisation on the whole split
    assert config.shuffle_buffer == 55000 and config.mixed_precision is False  # as fit shuffles arrays
    (phase,) = steps.phases(config)
    assert phase.epochs == 10 and learning_rates(config, phase) == [0.001] * 3
    assert type(steps.make_optimizer(config, 0.001, phase)).__name__ == "Nadam"


@pytest.mark.slow
@pytest.mark.parametrize("name", recipe_names())
def test_each_recipe_trains_a_step_on_tiny_offline_data(tmp_path, name):
    """The recipe's optimizer, phases, head and augmentation, on shapes (offline, tiny)."""
    recipe = TrainConfig.from_recipe(name, model_dir=str(tmp_path / "run"))
    overrides = dict(
        dataset="shapes",
        weights=None,
        batch_size=4,
        train_split="train[:8]",
        validation_split="validation[:4]",
        test_split="test[:4]",
        steps_per_epoch=1,
    )
    if name == "flowers_localize":
        # The flowers_xception row trains the same Xception on the same two phases; this row's own
        # part is the box head through both phases (with frozen BatchNorm layers to thaw), which a
        # ResNet-18 carries in half the time (19 s against 37 s, side by side in one process on a
        # 2-core AVX2 EPYC). `test_zoo` builds, trains and reloads Xception with the box head.
        overrides.update(model="resnet18")
    small = 72 if overrides.get("model", recipe.model) == "xception" else 32  # Xception's smallest input: 71 px
    overrides.update(image_size=small)
    if recipe.two_phase:
        overrides.update(freeze_epochs=1, finetune_epochs=1)
    else:
        overrides.update(epochs=1)
    if recipe.warmup_epochs:  # no room for a warmup epoch in a one-epoch phase
        overrides.update(warmup_epochs=0)
    # The SavedModel export is the same code for every recipe (its own tests export each head):
    # exported once here, for the Xception of the transfer recipe, skipped for the rest.
    result = trainers.training.train(
        TrainConfig.from_recipe(name, **overrides, model_dir=str(tmp_path / "run")), export=(name == "flowers_xception")
    )
    assert np.isfinite(result.metrics["loss"]) and result.metrics["num_examples"] == 4
    if recipe.two_phase:  # the fine-tuning phase's points come after the frozen phase's
        for logs in ("train", "validation"):
            points = logged(str(tmp_path / "run" / "logs" / logs), "epoch_loss")
            assert [step for step, _ in points] == [0, 1], (logs, points)


@pytest.mark.slow
def test_recipe_flag_lists_loads_and_is_overridden_on_the_command_line(tmp_path, capsys):
    """The program's parser and main, in process (`train_in_process`)."""
    status, listing, _ = train_in_process(["--recipe=list"], capsys)
    assert status == 0
    assert [line.split()[0] for line in listing.splitlines()] == recipe_names()
    status, _, unknown = train_in_process(["--recipe=flowers", f"--model_dir={tmp_path / 'x'}"], capsys)
    assert status == 2 and unknown.strip().splitlines()[-1].startswith(
        "error: --recipe=flowers: accepted: digits_cnn, digits_resnet18, fashion_mnist_cnn, flowers_localize"
    )
    # Flags given on the command line win, wherever they stand; the rest is the recipe's.
    model_dir = tmp_path / "run"
    status, _, stderr = train_in_process(
        [
            "--image_size=32",
            "--recipe=shapes_resnet34",
            f"--model_dir={model_dir}",
            "--model=resnet18",
            "--epochs=1",
            "--steps_per_epoch=1",
            "--train_split=train[:64]",
            "--validation_split=",
            "--test_split=test[:8]",
        ],
        capsys,
    )
    assert status == 0, stderr[-3000:]
    recorded = TrainConfig.from_flagfile(str(model_dir / "flags.txt"))
    assert (recorded.model, recorded.image_size, recorded.epochs) == ("resnet18", 32, 1)
    assert (recorded.optimizer, recorded.lr_schedule, recorded.augment) == ("adam", "cosine", ("crop", "flip"))


def test_unfreeze_from_is_checked_before_any_training(tmp_path):
    config = TrainConfig(
        model_dir=str(tmp_path / "run"),
        model="resnet18",
        image_size=32,
        batch_size=8,
        train_split="train[:16]",
        freeze_epochs=1,
        finetune_epochs=1,
        unfreeze_from="stage9_unit1",
    )
    with pytest.raises(ConfigError) as refused:
        trainers.training.train(config)
    message = refused.value.flag_message()
    assert message.startswith("--unfreeze_from=stage9_unit1: 'stage9_unit1' is not a layer of the backbone")
    assert message.endswith("`python -m zoo resnet18 --layers` lists them")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_zoo_lists_the_backbone_layers_for_unfreeze_from():
    listing = run_program(["-m", "zoo", "resnet18", "--layers"])
    assert listing.returncode == 0, listing.stderr[-2000:]
    lines = listing.stdout.splitlines()
    assert lines[0] == "backbone of resnet18: 15 layers (train from one on with --unfreeze_from=NAME)"
    assert any(line.split()[:3] == ["12", "stage4_unit1", "ResidualUnit"] for line in lines), lines


@pytest.mark.slow
def test_a_localize_run_trains_on_a_tfds_dataset_with_boxes_and_a_carved_validation_split(tmp_path):
    config = TrainConfig(
        model_dir=str(tmp_path / "run"),
        model="fashion_cnn",
        head="localize",
        box_loss="giou",
        dataset="zoo_tiny_boxes",
        data_dir=str(tmp_path / "tfds"),  # prepared on first use
        image_size=32,
        batch_size=4,
        epochs=1,
    )
    result = trainers.training.train(config)  # validation: 10% of train, held out
    assert result.metrics["num_examples"] == 8
    assert {"class_accuracy", "bbox_mean_iou", "map_50", "map_coco"} <= set(result.metrics)
    points = logged(str(tmp_path / "run" / "logs" / "validation"), "epoch_bbox_mean_iou")
    assert len(points) == 1  # the box IoU metric, logged for the carved validation split
