"""pipelines.load on every source, offline: shapes, folders of files the tests write, TFDS mocks."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import pipelines
from pipelines import DataError, shapes


def take_all(dataset):
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y["class"].numpy() if isinstance(y, dict) else y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# ----------------------------------------------------------------------------------- shapes


def test_shapes_elements_and_info():
    dataset, info = pipelines.load("shapes", "train[:20]", task="localize", batch_size=8)
    assert info.num_classes == 5 and info.class_names == shapes.CLASS_NAMES
    assert info.num_examples == 20 and info.image_shape == (64, 64, 3)
    batches = list(dataset)
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]  # eval keeps the last partial batch
    image, target = batches[0]
    assert image.dtype == tf.float32 and 0 <= image.numpy().min() and image.numpy().max() <= 255
    assert set(target) == {"class", "bbox"} and target["bbox"].shape == (8, 4)


def test_shapes_are_deterministic_and_splits_differ():
    a, _ = take_all(pipelines.load("shapes", "test[:10]", seed=3)[0])
    b, _ = take_all(pipelines.load("shapes", "test[:10]", seed=3)[0])
    c, _ = take_all(pipelines.load("shapes", "validation[:10]", seed=3)[0])
    d, _ = take_all(pipelines.load("shapes", "test[:10]", seed=4)[0])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)  # a run's seed never changes the data itself
    assert not np.allclose(a, c)
    e = shapes.render(0, split="test", seed=1)["image"]
    assert not np.allclose(a[0], e[:64, :64].numpy())  # the generator's own seed does


def test_an_empty_slice_is_refused_by_every_source():
    """Nothing to train on, validate or evaluate: one DataError (before, the built-in sets gave an
    empty dataset, which failed only after a whole training, in the test evaluation)."""
    for source in ("shapes", "synthetic"):
        with pytest.raises(DataError, match=rf"^split 'test\[:0\]' of '{source}' holds no examples; give a split or"):
            pipelines.load(source, "test[:0]", image_size=16)
    # Image folders and TFDS say so themselves (test_folder_split_subfolders_and_slicing and
    # test_prepared_tfds_dataset_split_recipe_sizes_and_errors).


def test_the_drawing_is_traced_once_per_image_shape_and_draws_what_render_draws():
    # Tracing the drawing costs about 0.5 s of CPU; every split a run loads (train, validation,
    # test, the preview, the adaptation) calls the one traced function of its image shape.
    draw = shapes.materializer(height=24, width=20, channels=3)
    for split in ("train[:4]", "validation[:4]", "test[:4]"):
        pipelines.load("shapes", split, image_size=(24, 20), batch_size=4)
    assert draw.experimental_get_tracing_count() == 1
    images, labels = take_all(pipelines.load("shapes", "test[:3]", image_size=(24, 20), batch_size=3)[0])
    for index in range(3):
        eager = shapes.render(index, height=24, width=20, split="test")  # no tracing: op by op
        np.testing.assert_array_equal(images[index], eager["image"].numpy())
        assert labels[index] == int(eager["label"])


def test_shapes_samples_are_written_as_pngs_named_after_their_class(tmp_path):
    paths = shapes.write_samples(str(tmp_path), count=3, size=32)
    assert len(paths) == 3
    for index, path in enumerate(paths):
        example = shapes.render(index, height=32, width=32, split="test")
        assert os.path.basename(path) == f"test{index}_{shapes.CLASS_NAMES[int(example['label'])]}.png"
        decoded = tf.io.decode_png(tf.io.read_file(path)).numpy()
        np.testing.assert_allclose(decoded, np.round(example["image"].numpy()), atol=0.5)


def test_the_samples_program_takes_a_folder_and_a_count_and_help_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert shapes.main(["out", "2"]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["test0_square.png", "test1_circle.png"]
    for argv, status in ((["--help"], 0), ([], 2), (["out", "0"], 2), (["out", "two"], 2)):
        with pytest.raises(SystemExit) as exited:
            shapes.main(argv)
        assert exited.value.code == status, argv
    assert os.listdir(tmp_path) == ["out"]  # --help was once taken for the folder to write into
    assert "count must be at least 1, received 0" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exited:  # was a traceback (FileExistsError / NotADirectoryError)
        shapes.main(["a_file/out", "1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m pipelines.shapes: error: out_dir a_file/out: cannot be written (Not a directory)"
    )


def test_shapes_any_size_gray_or_rgb():
    dataset, info = pipelines.load("shapes", "train[:4]", image_size=(24, 40), channels=1, batch_size=4)
    assert info.image_shape == (24, 40, 1)
    assert next(iter(dataset))[0].shape == (4, 24, 40, 1)


def test_shapes_colour_statistics_do_not_give_the_class_away():
    # A nearest-centroid classifier on mean colour and brightness spread stays near chance:
    # telling the shapes apart needs their form.
    def features(split):
        images, labels = take_all(pipelines.load("shapes", split, batch_size=100)[0])
        stats = np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2))], axis=1)
        return stats, labels

    x_train, y_train = features("train[:500]")
    x_test, y_test = features("test[:300]")
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(5)])
    predicted = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y_test).mean() < 0.45
    assert np.bincount(y_train, minlength=5).min() > 70  # classes are balanced


def test_training_shuffles_reproducibly_and_differently_each_epoch():
    dataset, _ = pipelines.load("shapes", "train[:32]", batch_size=8, training=True, augment=("crop", "flip"), seed=5)
    epoch1, epoch2 = take_all(dataset)[1], take_all(dataset)[1]
    again = take_all(
        pipelines.load("shapes", "train[:32]", batch_size=8, training=True, augment=("crop", "flip"), seed=5)[0]
    )[1]
    np.testing.assert_array_equal(epoch1, again)
    assert not np.array_equal(epoch1, epoch2)
    assert sorted(epoch1) == sorted(epoch2)


@pytest.mark.parametrize(
    "source, settings",
    [
        ("shapes", dict(augment="crop,flip")),  # a whole permutation per pass, crops and flips seeded per image
        ("shapes", dict(augment="crop,flip", cache=True)),  # decoded once, shuffled through a buffer
        ("shapes", dict(augment="flip", shuffle_buffer=16)),
        ("fashion_mnist", dict(augment="flip")),  # mocked TFDS: the size unknown, passes computed
        # Keras's layers after the batch: each batch's generators set from its own words.
        ("shapes", dict(augment="flip,randaugment,erase,mixup,cutmix")),
    ],
)
def test_a_stream_started_at_a_batch_gives_the_batches_the_whole_stream_gives_from_there(source, settings):
    # 40 examples in batches of 8: five a pass; batch 7 is the third of the second pass (the mocked
    # TFDS set, 12 examples: three a pass, batch 7 the second of the third).
    args = dict(batch_size=8, image_size=16, training=True, seed=3, repeat=True, **settings)
    split = "train[:40]" if source == "shapes" else "train"
    with tfds.testing.mock_data(num_examples=12):
        whole = take_all(pipelines.load(source, split, **args)[0].take(11))
        resumed = take_all(pipelines.load(source, split, first_batch=7, **args)[0].take(4))
    np.testing.assert_array_equal(resumed[1], whole[1][7 * 8 :])
    np.testing.assert_array_equal(resumed[0], whole[0][7 * 8 :])
    assert not np.array_equal(whole[0][:8], whole[0][5 * 8 : 6 * 8])  # each pass differs


def test_a_distributed_stream_resumes_on_each_replica():
    from zoo import compat

    strategy = compat.mirrored_strategy(("/cpu:0", "/cpu:1"))
    start, info = pipelines.resumable(
        strategy, "shapes", "train[:24]", batch_size=8, training=True, seed=0, image_size=16, augment="flip"
    )
    assert info.steps_per_epoch == 3

    def replicas(dataset, batches):
        results = []
        for images, _ in dataset:  # repeated forever
            results.append([x.numpy() for x in strategy.experimental_local_results(images)])
            if len(results) == batches:
                return results

    # Three steps a pass: step 3 starts the second pass, step 4 is inside it.
    whole, resumed = replicas(start(0), 6), replicas(start(3), 1) + replicas(start(4), 2)
    for got, want in zip(resumed, whole[3:], strict=True):
        for replica, (a, b) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_array_equal(a, b, err_msg=f"replica {replica}")


def test_cache_gives_the_same_eval_data():
    plain = take_all(pipelines.load("shapes", "test[:12]", batch_size=5, image_size=32)[0])
    cached_ds, _ = pipelines.load("shapes", "test[:12]", batch_size=5, image_size=32, cache=True)
    for _ in range(2):
        np.testing.assert_allclose(take_all(cached_ds)[0], plain[0], atol=1e-4)


def test_augmented_training_batches_have_boxes_inside_the_image():
    dataset, _ = pipelines.load(
        "shapes",
        "train[:64]",
        task="localize",
        batch_size=16,
        training=True,
        augment=("crop", "flip"),
        seed=0,
        image_size=32,
    )
    batches = 0
    for images, targets in dataset:
        boxes = targets["bbox"].numpy()
        assert images.shape == (16, 32, 32, 3)
        assert (boxes >= 0).all() and (boxes <= 1).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        batches += 1
    assert batches == 4


# ----------------------------------------------------------------------------------- folders


def write_image(path, array, fmt):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = tf.constant(array, tf.uint8)
    if fmt == "jpeg":
        data = tf.io.encode_jpeg(array).numpy()
    elif fmt == "png":
        data = tf.io.encode_png(array).numpy()
    else:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.squeeze(array.numpy())).save(buffer, format=fmt.upper())
        data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data)


def make_folder(root, per_class=5, layout=None):
    rng = np.random.default_rng(0)
    formats = [
        ("a.jpg", "jpeg", 3),
        ("b.png", "png", 1),
        ("c.png", "png", 4),
        ("d.bmp", "bmp", 3),
        ("e.gif", "gif", 3),
        ("f.jpg", "jpeg", 1),
    ]
    for split in layout or [""]:
        for cls in ("cats", "dogs"):
            for i in range(per_class):
                name, fmt, channels = formats[i % len(formats)]
                size = (20 + 3 * i, 30 + i)
                write_image(os.path.join(root, split, cls, f"{i}{name}"), rng.integers(0, 255, (*size, channels)), fmt)
    return root


def test_folder_formats_and_channels(tmp_path):
    root = make_folder(str(tmp_path / "pets"), per_class=12)  # each format twice, per class
    for channels in (1, 3):
        for training in (False, True):  # training decodes JPEGs inside the crop window only
            dataset, info = pipelines.load(
                f"dir:{root}",
                "train+validation+test",
                image_size=16,
                channels=channels,
                batch_size=8,
                training=training,
                augment=("crop", "flip"),
                seed=0,
            )
            images, labels = take_all(dataset)
            assert images.shape == (24, 16, 16, channels) and info.class_names == ("cats", "dogs")
            assert sorted(labels.tolist()) == [0] * 12 + [1] * 12
            assert images.std() > 10  # real pixels, not padding


def test_all_jpeg_folders_skip_the_format_branch_and_read_the_same(tmp_path):
    from pipelines import sources

    rng = np.random.default_rng(1)
    for i in range(6):  # JPEG bytes behind any extension: the signature decides
        name = f"{i}.jpg" if i % 3 else f"{i}.png"
        write_image(str(tmp_path / "j" / f"c{i % 2}" / name), rng.integers(0, 255, (20 + i, 24, 3)), "jpeg")
    assert sources.folder_source(str(tmp_path / "j"), "train+validation+test").jpeg_only
    assert not sources.folder_source(make_folder(str(tmp_path / "mixed")), "train").jpeg_only
    for training in (False, True):
        dataset, info = pipelines.load(
            f"dir:{tmp_path / 'j'}",
            "train+validation+test",
            image_size=16,
            batch_size=3,
            training=training,
            augment="crop,flip",
            seed=0,
        )
        images, labels = take_all(dataset)
        assert images.shape == (6, 16, 16, 3) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
        assert images.std() > 10
    # A JPEG damaged in the middle still fails clearly, or is skipped on request.
    path = str(tmp_path / "j" / "c0" / "2.jpg")
    data = bytearray(open(path, "rb").read())
    data[30 : len(data) - 10] = b"\x00" * (len(data) - 40)
    open(path, "wb").write(bytes(data))
    for training in (False, True):
        dataset, _ = pipelines.load(
            f"dir:{tmp_path / 'j'}",
            "train+validation+test",
            image_size=16,
            batch_size=1,
            training=training,
            augment="crop",
            seed=0,
            skip_bad_files=True,
        )
        assert len(take_all(dataset)[1]) == 5


def test_folder_training_visits_every_file_once_per_epoch_in_a_fresh_order(tmp_path):
    for i in range(12):  # file i is a flat gray image of value 10 * i
        write_image(str(tmp_path / "x" / f"c{i % 2}" / f"{i:02d}.png"), np.full((8, 8, 1), 10 * i), "png")

    def epochs(seed, count=2):
        dataset, _ = pipelines.load(
            f"dir:{tmp_path / 'x'}",
            "train+validation+test",
            batch_size=4,
            image_size=8,
            training=True,
            seed=seed,
            channels=1,
        )
        return [np.round(take_all(dataset)[0].mean(axis=(1, 2, 3)) / 10).astype(int).tolist() for _ in range(count)]

    first, second = epochs(seed=3)
    assert sorted(first) == sorted(second) == list(range(12))  # each file exactly once
    assert first != second  # reshuffled
    assert epochs(seed=3) == [first, second]  # reproducible
    assert epochs(seed=4)[0] != first


def test_permuted_rows_shards_partition_the_rows_every_pass():
    from pipelines.core import permuted_rows

    table = (tf.range(10, dtype=tf.int64) * 100, tf.range(10))
    seen = []
    for shard in range(3):
        passes = [[int(b) for _, b in permuted_rows(table, seed=1, num_shards=3, shard=shard)] for _ in range(2)]
        assert sorted(passes[0]) == sorted(passes[1]) == list(range(shard, 10, 3))
        seen += passes[0]
    assert sorted(seen) == list(range(10))
    rows = [(int(a), int(b)) for a, b in permuted_rows(table, seed=1)]
    assert all(a == 100 * b for a, b in rows)  # columns stay together
    assert [b for _, b in rows] != list(range(10))


def test_folder_default_split_is_stratified_disjoint_and_stable(tmp_path):
    root = make_folder(str(tmp_path / "pets"), per_class=10)
    from pipelines.sources import folder_source

    files = {s: folder_source(root, s).files for s in ("train", "validation", "test")}
    assert [len(files[s]) for s in ("train", "validation", "test")] == [16, 2, 2]
    assert len(set(sum(files.values(), []))) == 20
    assert folder_source(root, "train").files == files["train"]
    assert sum("cats" in f for f in files["test"]) == 1


def test_folder_split_subfolders_and_slicing(tmp_path):
    root = make_folder(str(tmp_path / "pets"), per_class=4, layout=["train", "validation"])
    _, info = pipelines.load(f"dir:{root}", "validation", image_size=16)
    assert info.num_examples == 8
    _, info = pipelines.load(f"dir:{root}", "train[:50%]", image_size=16)
    assert info.num_examples == 4
    with pytest.raises(DataError, match=r"bad split 'test'.*accepted: train, validation"):
        pipelines.load(f"dir:{root}", "test", image_size=16)
    with pytest.raises(DataError, match=r"^split 'train\[:0\]' of image folder '.*pets' holds no images$"):
        pipelines.load(f"dir:{root}", "train[:0]", image_size=16)


def test_images_of_different_sizes_need_an_image_size(tmp_path):
    root = tmp_path / "photos"
    for name, shape in [("cats", (20, 30)), ("dogs", (24, 24))]:
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = tf.cast(tf.random.uniform([*shape, 3], 0, 256, tf.int32, seed=i), tf.uint8)
            tf.io.write_file(str(root / name / f"{i}.jpg"), tf.io.encode_jpeg(pixels))
    with pytest.raises(DataError, match=r"differ in size: pass image_size"):
        pipelines.load(f"dir:{root}", "train+validation+test")
    _, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=16)
    assert info.num_examples == 6 and info.image_shape == (16, 16, 3)


def test_folder_of_real_photos_needs_an_image_size(flowers_sample):
    with pytest.raises(DataError, match=r"differ in size: pass image_size"):
        pipelines.load(f"dir:{flowers_sample}", "train")
    dataset, info = pipelines.load(
        f"dir:{flowers_sample}", "train", image_size=64, batch_size=8, training=True, augment="crop,flip", seed=1
    )
    assert info.num_examples == 40 and info.num_classes == 5
    images, _ = take_all(dataset)
    assert images.shape == (40, 64, 64, 3) and images.std() > 10


@pytest.mark.parametrize(
    "damage, message, images_left",
    [
        (
            lambda root: open(os.path.join(root, "cats", "0a.jpg"), "r+b").truncate(200),
            r"0a.jpg' is a truncated JPEG",
            9,
        ),
        (
            lambda root: open(os.path.join(root, "dogs", "1b.png"), "r+b").truncate(100),
            r"1b.png' is a truncated PNG",
            9,
        ),
        (
            lambda root: open(os.path.join(root, "dogs", "notes.txt"), "w").write("hi"),
            r"notes.txt' has an extension",
            10,
        ),
        (
            lambda root: open(os.path.join(root, "dogs", "fake.jpg"), "w").write("not an image"),
            r"fake.jpg' is not a JPEG, PNG",
            10,
        ),
    ],
)
def test_bad_files_are_named_or_skipped(tmp_path, damage, message, images_left, caplog, monkeypatch):
    from pipelines.sources import folders

    monkeypatch.setattr(folders, "_CHECK_CHUNK", 3)  # files are checked a few at a time
    root = make_folder(str(tmp_path / "pets"))
    damage(root)
    with pytest.raises(DataError, match=message + r".*skip_bad_files"):
        pipelines.load(f"dir:{root}", "train+validation+test", image_size=16)
    with caplog.at_level(logging.WARNING):
        dataset, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=16, skip_bad_files=True)
    assert "skipped 1 bad file(s)" in caplog.text
    assert len(take_all(dataset)[1]) == info.num_examples == images_left


def corrupt_body(path):
    """Keep the file's signature and end marker, destroy what lies between."""
    data = bytearray(open(path, "rb").read())
    data[30 : len(data) - 10] = b"\x00" * (len(data) - 40)
    open(path, "wb").write(bytes(data))


def test_a_corrupt_body_is_skipped_counted_and_named(tmp_path, caplog):
    root = make_folder(str(tmp_path / "pets"))
    corrupt_body(os.path.join(root, "cats", "0a.jpg"))
    corrupt_body(os.path.join(root, "dogs", "1b.png"))
    with caplog.at_level(logging.WARNING):
        dataset, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=16, skip_bad_files=True)
    assert "skipped 2 file(s) of split 'train+validation+test'" in caplog.text and "cats/0a.jpg" in caplog.text
    assert info.num_examples == len(take_all(dataset)[1]) == 8  # every skipped file counted once
    # Without skip_bad_files the split loads (no decoding up front) and the files can be named.
    dataset, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=16)
    assert info.num_examples == 10
    bad = pipelines.undecodable(info)
    assert sorted(os.path.basename(path) for path in bad) == ["0a.jpg", "1b.png"]
    assert all(reason.startswith("cannot be decoded (") for reason in bad.values()), bad
    with pytest.raises(tf.errors.InvalidArgumentError):
        take_all(dataset)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: os.makedirs(os.path.join(root, "birds")), r"class folder\(s\) '.*birds' hold no images"),
        (lambda root: None, r"holds no images"),
    ],
)
def test_empty_folders_are_reported(tmp_path, setup, message):
    root = str(tmp_path / "pets")
    if "birds" in message:
        make_folder(root)
    else:
        os.makedirs(os.path.join(root, "cats"))
        os.makedirs(os.path.join(root, "dogs"))
    setup(root)
    with pytest.raises(DataError, match=message):
        pipelines.load(f"dir:{root}", "train", image_size=16)


def test_missing_folder_and_single_class(tmp_path):
    with pytest.raises(DataError, match=r"image folder '/no/such' does not exist"):
        pipelines.load("dir:/no/such", "train", image_size=16)
    os.makedirs(tmp_path / "only" / "cats")
    with pytest.raises(DataError, match=r"at least 2\), found \['cats'\]"):
        pipelines.load(f"dir:{tmp_path / 'only'}", "train", image_size=16)


# ----------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=4), r"image_size 4 is too small; each side must be at least 8"),
        (dict(image_size=(10, 12)), r"too small for shapes; each side must be at least 16"),
        (dict(image_size="big"), r"image_size must be an int or \(height, width\), received 'big'"),
        (dict(augment=("crop", "rotate")), r"unknown augmentation\(s\) 'rotate'; accepted: crop, flip"),
        (dict(task="segment"), r"unknown task 'segment'; accepted: classify, localize"),
        (dict(batch_size=0), r"batch_size must be a positive integer, received 0"),
        (dict(channels=2), r"channels must be 1, 3 or None, received 2"),
        (dict(split="trian"), r"bad split 'trian' \(Unknown split 'trian'.*accepted: train, validation, test"),
        (dict(split="train[abc]"), r"bad split 'train\[abc\]'"),
        (dict(first_batch=3), r"first_batch=3 starts a repeated stream part-way: pass repeat=True too"),
        (dict(first_batch=-1, repeat=True), r"first_batch must be a batch index \(an integer >= 0\), received -1"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(split="train")
    args.update(kwargs)
    with pytest.raises(DataError, match=message):
        pipelines.load("shapes", args.pop("split"), **args)


def test_folders_cannot_localize(tmp_path):
    with pytest.raises(DataError, match=r"image folders have no boxes"):
        pipelines.load(f"dir:{tmp_path}", "train", task="localize")


# ----------------------------------------------------------------------------------- TFDS


def test_tfds_fashion_mnist_through_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        dataset, info = pipelines.load("fashion_mnist", "train", batch_size=4, training=True, augment="flip", seed=0)
        images, labels = take_all(dataset)
    assert info.num_classes == 10 and info.class_names[0] == "T-shirt/top"
    assert info.image_shape == (28, 28, 1) and images.shape == (12, 28, 28, 1)
    assert labels.dtype == np.int32


def test_tfds_flowers_recipe_and_window_decoding():
    from pipelines.sources.tfds import TRAIN_ONLY_RECIPE, _tfds_split

    assert _tfds_split("tf_flowers", "test", []) == "train[:10%]"
    assert _tfds_split("tf_flowers", "validation", []) == "train[10%:25%]"
    assert _tfds_split("tf_flowers", "train", []) == TRAIN_ONLY_RECIPE["train"] == "train[25%:]"
    assert _tfds_split("tf_flowers", "train[:5%]", []) == "train[:5%]"  # explicit slices win
    assert _tfds_split("some_set", "validation", ["train"]) == "train[10%:25%]"
    assert _tfds_split("cifar10", "test", ["train", "test"]) == "test"
    with tfds.testing.mock_data(num_examples=6):
        with pytest.raises(DataError, match=r"differ in size: pass image_size"):
            pipelines.load("tf_flowers", "validation")
        dataset, info = pipelines.load(
            "tf_flowers", "train", image_size=32, batch_size=3, training=True, augment=("crop", "flip"), seed=0
        )
        images, _ = take_all(dataset)
    assert info.class_names == ("dandelion", "daisy", "tulips", "sunflowers", "roses")
    assert images.shape == (6, 32, 32, 3)


def test_tfds_boxes_map_onto_the_localize_task():
    def as_dataset(self, *args, **kwargs):
        def examples():
            rng = np.random.default_rng(0)
            for i in range(6):
                image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
                yield {
                    "image": tf.io.encode_jpeg(image).numpy(),
                    "label": i % 3,
                    "bbox": np.array([0.1, 0.2, 0.6, 0.7], np.float32),
                }

        return tf.data.Dataset.from_generator(
            examples,
            output_signature={
                "image": tf.TensorSpec([], tf.string),
                "label": tf.TensorSpec([], tf.int64),
                "bbox": tf.TensorSpec([4], tf.float32),
            },
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        dataset, info = pipelines.load("caltech_birds2011", "test", task="localize", image_size=20, batch_size=6)
        images, targets = next(iter(dataset))
    assert info.num_classes == 200 and images.shape == (6, 20, 20, 3)
    np.testing.assert_allclose(targets["bbox"], np.tile([[0.1, 0.2, 0.6, 0.7]], (6, 1)))
    np.testing.assert_array_equal(targets["class"], [0, 1, 2, 0, 1, 2])
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataError, match=r"'fashion_mnist' has no bounding boxes.*sources with boxes: 'shapes'"):
            pipelines.load("fashion_mnist", "train", task="localize")


def test_a_box_outside_the_image_or_inverted_stops_the_dataset_naming_the_record():
    def as_dataset(self, *args, **kwargs):
        def examples():
            for i, box in enumerate([[0.1, 0.2, 0.6, 0.7], [0.6, 0.2, 0.1, 0.7], [0.1, 0.2, 1.5, 0.7]]):
                yield {
                    "image": tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy(),
                    "label": 1,
                    "bbox": np.array(box, np.float32),
                    "tfds_id": f"caltech_birds2011-test.tfrecord-00000-of-00001__{i}",
                }

        signature = {
            "image": tf.TensorSpec([], tf.string),
            "label": tf.TensorSpec([], tf.int64),
            "bbox": tf.TensorSpec([4], tf.float32),
            "tfds_id": tf.TensorSpec([], tf.string),
        }
        return tf.data.Dataset.from_generator(examples, output_signature=signature)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        dataset, _ = pipelines.load("caltech_birds2011", "test", task="localize", image_size=8, batch_size=1)
        batches = iter(dataset)
        next(batches)  # a good box
        with pytest.raises(tf.errors.InvalidArgumentError) as stopped:
            next(batches)
    first_line = stopped.value.message.splitlines()[0]
    assert "bad box in record" in first_line and "tfrecord-00000-of-00001__1" in first_line, first_line
    assert "[0.6 0.2 0.1 0.7]" in first_line


def test_tfds_objects_sequences_give_the_first_objects_box_and_label():
    # VOC-style: a Sequence of objects, each with a box and a label; images without objects dropped.
    def as_dataset(self, *args, **kwargs):
        def examples():
            for i in range(4):
                count = i % 3  # 0, 1, 2, 0 objects
                yield {
                    "image": tf.io.encode_jpeg(np.full((30, 40, 3), 60 * i, np.uint8)).numpy(),
                    "objects": {
                        "bbox": np.array(
                            [[0.1 * (i + 1), 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]][:count], np.float32
                        ).reshape(count, 4),
                        "label": np.array([7 + i, 3][:count], np.int64),
                    },
                }

        return tf.data.Dataset.from_generator(
            examples,
            output_signature={
                "image": tf.TensorSpec([], tf.string),
                "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32), "label": tf.TensorSpec([None], tf.int64)},
            },
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        dataset, info = pipelines.load("voc", "test", task="localize", image_size=16, batch_size=8)
        images, targets = next(iter(dataset))
    assert info.num_classes == 20 and images.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(targets["class"], [8, 9])
    np.testing.assert_allclose(targets["bbox"], [[0.2, 0.2, 0.5, 0.6], [0.3, 0.2, 0.5, 0.6]])


def test_unknown_tfds_name():
    with pytest.raises(
        DataError, match=r"unknown dataset 'fashion_mnsit'.*accepted: 'shapes', 'synthetic', 'dir:PATH'"
    ):
        pipelines.load("fashion_mnsit", "train")


# ----------------------------------------------------------------------------------- distribution


def test_distribute_batches_per_replica_on_two_devices():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset, info = pipelines.distribute(
        strategy, "shapes", "train[:16]", batch_size=8, training=True, seed=0, image_size=16
    )
    batch = next(iter(dataset))
    per_replica = strategy.experimental_local_results(batch[0])
    assert strategy.num_replicas_in_sync == 2
    assert [tuple(x.shape) for x in per_replica] == [(4, 16, 16, 3), (4, 16, 16, 3)]
    assert info.steps_per_epoch == 2


class TinyBoxes(tfds.core.GeneratorBasedBuilder):
    """A real (prepared, on-disk) TFDS dataset with only a train split and one box per image."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["left", "right"]),
                    "bbox": tfds.features.BBoxFeature(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40)}

    def _generate_examples(self, count):
        rng = np.random.default_rng(0)
        for i in range(count):
            image = rng.integers(0, 255, (24 + i % 5, 30, 3), dtype=np.uint8)
            box = tfds.features.BBox(0.1, 0.05 + 0.5 * (i % 2), 0.9, 0.45 + 0.5 * (i % 2))
            yield i, {"image": image, "label": i % 2, "bbox": box}


def test_prepared_tfds_dataset_split_recipe_sizes_and_errors(tmp_path):
    # In four files, which TFDS reads in a fresh order each pass of a training stream.
    TinyBoxes(data_dir=str(tmp_path)).download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
    sizes = {}
    for split in ("train", "validation", "test", "train[:50%]"):
        dataset, info = pipelines.load(
            "tiny_boxes", split, task="localize", image_size=16, batch_size=64, data_dir=str(tmp_path)
        )
        images, targets = next(iter(dataset))
        assert images.shape[0] == info.num_examples
        sizes[split] = info.num_examples
    assert sizes == {"train": 30, "validation": 6, "test": 4, "train[:50%]": 20}  # 75/15/10 of 40
    assert info.class_names == ("left", "right")
    boxes, labels = targets["bbox"].numpy(), targets["class"].numpy()
    np.testing.assert_allclose(boxes[:, 1], np.where(labels == 1, 0.55, 0.05), atol=1e-6)
    # Its training stream started at a batch: three a pass, batch 3 starts the second pass, batch 4
    # is inside it (four files: TFDS's own reshuffle of them must be started at that pass too).
    args = dict(task="localize", image_size=16, batch_size=8, training=True, augment="crop,flip", seed=1, repeat=True)

    def stream(batches, first_batch=0):
        loaded, _ = pipelines.load("tiny_boxes", "train", data_dir=str(tmp_path), first_batch=first_batch, **args)
        return take_all(loaded.take(batches))[0]

    whole = stream(7)
    np.testing.assert_array_equal(stream(1, first_batch=3), whole[3 * 8 : 4 * 8])
    np.testing.assert_array_equal(stream(3, first_batch=4), whole[4 * 8 :])
    with pytest.raises(DataError, match=r"bad split 'trian' for dataset 'tiny_boxes'.*available splits: train"):
        pipelines.load("tiny_boxes", "trian", image_size=16, data_dir=str(tmp_path))
    with pytest.raises(
        DataError, match=r"^bad split 'train\[5:5\]' for dataset 'tiny_boxes': .*corresponds to no data"
    ):
        pipelines.load("tiny_boxes", "train[5:5]", image_size=16, data_dir=str(tmp_path))  # TFDS's own words
    with pytest.raises(DataError, match=r"dataset 'tiny_boxes' is not prepared in .*elsewhere and downloading is off"):
        pipelines.load("tiny_boxes", "train", image_size=16, data_dir=str(tmp_path / "elsewhere"), download=False)


class TinyObjects(tfds.core.GeneratorBasedBuilder):
    """A prepared TFDS dataset shaped like VOC and COCO: no label of the image, a Sequence of objects
    each with a box and a label. Every fourth training image and every test image has no object."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        objects = {"bbox": tfds.features.BBoxFeature(), "label": tfds.features.ClassLabel(names=["left", "right"])}
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(None, None, 3)), "objects": tfds.features.Sequence(objects)}
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(24, every=4), "test": self._generate_examples(3, every=1)}

    def _generate_examples(self, count, every):
        rng = np.random.default_rng(count)
        for i in range(count):
            box = tfds.features.BBox(0.1, 0.05 + 0.5 * (i % 2), 0.9, 0.45 + 0.5 * (i % 2))
            objects = [] if i % every == 0 else [{"bbox": box, "label": i % 2}]
            yield i, {"image": rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), "objects": objects}


def test_a_tfds_set_of_objects_leaves_out_the_images_without_and_counts_the_rest(tmp_path):
    # Before, a classify run stopped at the first image without objects (its first object's label
    # out of bounds), and the split's size counted them: a resumed stream started in the wrong place.
    TinyObjects(data_dir=str(tmp_path)).download_and_prepare()
    data = dict(data_dir=str(tmp_path), image_size=16, batch_size=64)
    for task in ("classify", "localize"):
        dataset, info = pipelines.load("tiny_objects", "train", task=task, **data)
        images, targets = next(iter(dataset))
        assert info.num_examples == images.shape[0] == 18, task  # 24 less the 6 without objects
    np.testing.assert_array_equal(np.sort(targets["class"]), [0] * 6 + [1] * 12)
    # No validation split: the holdout is carved from the 18 (per class: 2 of 6, 3 of 12).
    sizes = {}
    for split in ("train", "validation"):
        dataset, info = pipelines.load("tiny_objects", split, task="localize", validation_holdout=0.25, **data)
        sizes[split] = (info.num_examples, next(iter(dataset))[0].shape[0])
        # Told to tf.data (the filters hide it): Keras shows the total and does not warn that the
        # input ran out of data at the end of the first pass.
        assert dataset.cardinality() == 1, split
    assert sizes == {"train": (13, 13), "validation": (5, 5)}
    # A training stream started at batch 5 (the second of the second pass: four batches of 4 a pass).
    args = dict(task="localize", image_size=16, batch_size=4, training=True, augment="flip", seed=1, repeat=True)

    def stream(batches, first_batch=0):
        loaded, _ = pipelines.load("tiny_objects", "train", data_dir=str(tmp_path), first_batch=first_batch, **args)
        return take_all(loaded.take(batches))[0]

    np.testing.assert_array_equal(stream(1, first_batch=5), stream(6)[5 * 4 :])
    with pytest.raises(DataError, match=r"split 'test' of dataset 'tiny_objects' has no image with objects"):
        pipelines.load("tiny_objects", "test", **data)


def test_a_folder_loaded_again_is_not_read_again_unless_a_file_changed(tmp_path, monkeypatch):
    from pipelines.sources import folders

    root = make_folder(str(tmp_path / "pets"), per_class=10)
    reads = []
    original = folders.inspect_image_file
    monkeypatch.setattr(folders, "inspect_image_file", lambda path: reads.append(path) or original(path))
    pipelines.load(f"dir:{root}", "train", image_size=16)
    assert len(reads) == 20  # every file's signature and end, once
    pipelines.load(f"dir:{root}", "validation", image_size=16)
    assert len(reads) == 20  # nothing changed: nothing read again
    changed = os.path.join(root, "cats", "0a.jpg")
    open(changed, "r+b").truncate(200)  # now truncated: checked again, and named
    with pytest.raises(DataError, match=r"0a.jpg' is a truncated JPEG"):
        pipelines.load(f"dir:{root}", "train", image_size=16)
    assert reads[20:] == [changed]
