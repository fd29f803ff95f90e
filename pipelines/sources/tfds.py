"""TFDS datasets by name (``fashion_mnist``, ``tf_flowers``, ...): prepared on first use, split
names mapped for train-only sets, labels and boxes found in the features, records kept encoded."""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines.errors import DataError
from pipelines.sources.base import Source, announce_holdout, hold_out, log
from zoo import compat
from zoo.common import error_line

# Datasets published with only a train split: the seed's tf_flowers recipe (test 10%, validation
# 15%, train the remaining 75%). Any explicit slice overrides it ("train[:5%]").
TRAIN_ONLY_RECIPE = {"train": "train[25%:]", "validation": "train[10%:25%]", "test": "train[:10%]"}
KNOWN_TRAIN_ONLY = ("tf_flowers",)


def _tfds_split(name: str, split: str, available: Sequence[str]) -> str:
    """Map split names a train-only dataset lacks to the default recipe."""
    train_only = name in KNOWN_TRAIN_ONLY or (available and set(available) == {"train"})
    if train_only and split in TRAIN_ONLY_RECIPE:
        return TRAIN_ONLY_RECIPE[split]
    return split


_HELD_OUT: dict[tuple, tuple[frozenset, int]] = {}


def _held_out_ids(builder, name, data_dir, fraction, decoders, to_example, keep=None) -> tuple[frozenset, int]:
    """The ``tfds_id`` of the train records held out for validation (the shared rule,
    `base.hold_out`, keyed by record id), and the train records it chose from: those ``keep``
    accepts (all without it). One pass over the labels, cached per dataset."""
    key = (name, data_dir, fraction, keep is not None)
    if key not in _HELD_OUT:
        with compat.tfds_reading_quietly():  # its record ids: TFDS's deprecation warning
            records = builder.as_dataset(
                split="train",
                decoders=decoders,
                shuffle_files=False,
                read_config=tfds.ReadConfig(add_tfds_id=True, try_autocache=False),
            )
        if keep is not None:
            records = records.filter(keep)
        labels = records.map(lambda ex: (ex["tfds_id"], to_example(ex)["label"]), num_parallel_calls=tf.data.AUTOTUNE)
        rows = list(labels.as_numpy_iterator())
        _HELD_OUT[key] = (hold_out(rows, fraction), len(rows))
    return _HELD_OUT[key]


_KEPT: dict[tuple, int] = {}


def _count_kept(builder, name, data_dir, split, decoders, keep) -> int:
    """Records of ``split`` that ``keep`` accepts: one pass over the records (images left
    encoded), cached per dataset and split."""
    key = (name, data_dir, split)
    if key not in _KEPT:
        records = builder.as_dataset(
            split=split, decoders=decoders, shuffle_files=False, read_config=tfds.ReadConfig(try_autocache=False)
        )
        ones = records.map(lambda ex: tf.stack([1, tf.cast(keep(ex), tf.int64)]), num_parallel_calls=tf.data.AUTOTUNE)
        total, kept = ones.reduce(tf.zeros(2, tf.int64), lambda sums, one: sums + one).numpy().tolist()
        log.info("dataset %s %s: %d of its %d images have objects; the others are left out", name, split, kept, total)
        _KEPT[key] = kept
    return _KEPT[key]


def _checked_box(box, record_id):
    """``box``, after checking it is a normalized [ymin, xmin, ymax, xmax] box; otherwise the
    dataset stops with an error naming the record (its TFDS id) and the box."""
    valid = tf.logical_and(
        tf.reduce_all(tf.logical_and(box >= 0.0, box <= 1.0)),
        tf.logical_and(box[0] <= box[2], box[1] <= box[3]),
    )
    check = tf.debugging.Assert(
        valid,
        ["bad box in record", record_id, "(normalized [ymin, xmin, ymax, xmax] in [0, 1] expected):", box],
        summarize=4,
    )
    with tf.control_dependencies([check]):
        return tf.identity(box)


def _find_features(features):
    """(label key, box key, objects key) of a TFDS FeaturesDict, for the localize task."""
    label_key = box_key = objects_key = None
    for key, feature in features.items():
        if isinstance(feature, tfds.features.ClassLabel) and label_key is None:
            label_key = key
        elif isinstance(feature, tfds.features.BBoxFeature) and box_key is None:
            box_key = key
        elif isinstance(feature, tfds.features.Sequence) and objects_key is None:
            inner = feature.feature
            if isinstance(inner, tfds.features.FeaturesDict) and any(
                isinstance(f, tfds.features.BBoxFeature) for f in inner.values()
            ):
                objects_key = key
    return label_key, box_key, objects_key


PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


def _unresolved_hosts(builder) -> list[str]:
    """The hosts of ``builder``'s download URLs (from its checksums file) that do not resolve.

    Offline, TFDS retries each URL ten times with a growing wait, about 3.5 minutes, before it
    fails; a name lookup fails at once. Nothing is checked behind a proxy (it resolves the names),
    when the URLs are unknown (no checksums file: a dataset that downloads by hand), or when
    ``download_and_prepare`` is not TFDS's own (a builder's override, or mocked in tests).
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return []
    if not compat.tfds_downloads_itself(builder):
        return []  # not TFDS's own download (tfds.testing.mock_data makes it a no-op): nothing to look up
    try:
        urls = builder.url_infos or {}
    except Exception:  # a checksums file that does not parse: leave it to TFDS
        return []
    unresolved = []
    for host in sorted({urllib.parse.urlsplit(url).hostname for url in urls} - {None}):
        try:
            socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):  # no such name, or no resolver reachable
            unresolved.append(host)
    return unresolved


def _prepare(builder, name: str, data_dir: str | None, download: bool) -> None:
    """Download and prepare ``builder``'s data on first use, as `tfds.load` does; DataError naming
    the dataset, the folder and the command that prepares it by hand when that cannot happen."""
    if builder.is_prepared():
        return
    root = data_dir or compat.tfds_data_dir()
    by_hand = f"tfds build {name} --data_dir={root}"
    if not download:
        raise DataError(
            f"dataset {name!r} is not prepared in {root} and downloading is off; prepare it with "
            f"`{by_hand}` (needs network access), or allow downloading"
        )
    log.warning("dataset %s is not in %s yet: downloading and preparing it (first use only)", name, root)
    unresolved = _unresolved_hosts(builder)
    if unresolved:  # TFDS would retry each URL for about 3.5 minutes before failing
        raise DataError(
            f"dataset {name!r} could not be downloaded and prepared into {root} (cannot resolve "
            f"{', '.join(unresolved)}: no network access?); with network access run `{by_hand}`, then rerun"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # no network, a checksum mismatch, a full disk, a gated dataset...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise DataError(
            f"dataset {name!r} could not be downloaded and prepared into {root} ({type(error).__name__}: {first}); "
            f"with network access run `{by_hand}`, then rerun"
        ) from None


def tfds_source(
    name: str,
    split: str,
    *,
    data_dir: str | None,
    task: str,
    shuffle_files: bool,
    seed: int | None,
    download: bool = True,
    validation_holdout: float = 0.0,
) -> Source:
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and friends
        first = error_line(error)
        raise DataError(
            f"unknown dataset {name!r} ({first}); accepted: 'shapes', 'synthetic', 'dir:PATH' or a TFDS name "
            f"such as fashion_mnist, tf_flowers, cifar10, caltech_birds2011"
        ) from None
    _prepare(builder, name, data_dir, download)
    info = builder.info
    available = list(info.splits.keys()) if info.splits else []
    holdout = (
        validation_holdout > 0
        and split in ("train", "validation")
        and "train" in available
        and "validation" not in available
        and name not in KNOWN_TRAIN_ONLY
    )
    resolved = "train" if holdout else _tfds_split(name, split, available)
    num_examples = None
    if available:
        try:
            num_examples = info.splits[resolved].num_examples
        except (KeyError, ValueError, AssertionError) as error:
            raise DataError(
                f"bad split {split!r} for dataset {name!r} ({error_line(error)}); "
                f"available splits: {', '.join(available)}, sliceable as in 'train[:10%]'"
            ) from None

    features = info.features
    image_key = "image"
    if image_key not in features:
        raise DataError(f"dataset {name!r} has no 'image' feature; its features: {list(features)}")
    image_feature = features[image_key]
    label_key, box_key, objects_key = _find_features(features)
    if task == "localize" and box_key is None and objects_key is None:
        raise DataError(
            f"dataset {name!r} has no bounding boxes, so it cannot be used with task='localize'; "
            f"sources with boxes: 'shapes', or a TFDS dataset with a BBoxFeature (e.g. caltech_birds2011, voc)"
        )
    if objects_key is not None:
        object_features = features[objects_key].feature
        object_label = next((k for k, f in object_features.items() if isinstance(f, tfds.features.ClassLabel)), None)
        object_box = next(k for k, f in object_features.items() if isinstance(f, tfds.features.BBoxFeature))
        if label_key is None and object_label is not None:
            label_key = f"{objects_key}/{object_label}"
    if label_key is None:
        raise DataError(f"dataset {name!r} has no class label feature; its features: {list(features)}")
    class_feature = (
        features[label_key] if "/" not in label_key else features[objects_key].feature[label_key.split("/", 1)[1]]
    )

    # Keep the image encoded: the pipeline decodes it, only inside the crop window where it can.
    decoders = {image_key: tfds.decode.SkipDecoding()}
    # Record ids name the examples: in the holdout, and in a bad box's error.
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False, add_tfds_id=holdout or task == "localize")
    try:
        with compat.tfds_reading_quietly():  # record ids: TFDS's deprecation warning
            dataset = builder.as_dataset(
                split=resolved, decoders=decoders, shuffle_files=shuffle_files, read_config=read_config
            )
    except AssertionError as error:
        raise DataError(
            f"dataset {name!r} is not available offline ({error_line(error)}); download it "
            f"first (tfds build {name}) or point data_dir at a folder that holds it"
        ) from None
    except ValueError as error:
        raise DataError(f"bad split {split!r} for dataset {name!r}: {str(error).splitlines()[0]}") from None

    def to_example(example):
        out = {"encoded": example[image_key]}
        if "/" in label_key:
            objects_key_, inner = label_key.split("/", 1)
            out["label"] = tf.cast(example[objects_key_][inner][0], tf.int32)
        else:
            out["label"] = tf.cast(example[label_key], tf.int32)
        if task == "localize":
            if box_key is not None:
                box = tf.cast(example[box_key], tf.float32)
            else:  # the first object's box
                box = tf.cast(example[objects_key][object_box][0], tf.float32)
            out["bbox"] = _checked_box(box, example.get("tfds_id", tf.constant(name)))
        return out

    # The label or the box of the first object (VOC, COCO): an image without any object has neither
    # and is left out, of the training and holdout passes and of the count.
    from_objects = objects_key is not None and ("/" in label_key or (task == "localize" and box_key is None))

    def has_objects(example):
        return tf.shape(example[objects_key][object_box])[0] > 0

    keep = has_objects if from_objects else None
    if from_objects:
        dataset = dataset.filter(has_objects)
    if holdout:
        held_out, kept = _held_out_ids(builder, name, data_dir, validation_holdout, decoders, to_example, keep)
        if not held_out:
            raise DataError(f"dataset {name!r} has too few training examples to hold some out for validation")
        if from_objects:
            num_examples = kept
        keys = tf.constant(sorted(held_out), tf.string)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.ones(len(held_out), tf.int32)), default_value=0
        )
        wanted = 1 if split == "validation" else 0
        dataset = dataset.filter(lambda ex: tf.equal(table.lookup(ex["tfds_id"]), wanted))
        if split == "validation":
            num_examples = len(held_out)
        elif num_examples is not None:
            num_examples -= len(held_out)
        announce_holdout(f"dataset {name!r}", validation_holdout, len(held_out))
    elif from_objects:
        num_examples = _count_kept(builder, name, data_dir, resolved, decoders, keep)
    if from_objects:
        if not num_examples:
            raise DataError(f"split {split!r} of dataset {name!r} has no image with objects ({objects_key!r} empty)")
    shape = tuple(image_feature.shape)
    return Source(
        elements=dataset,
        materialize=to_example,
        class_names=list(class_feature.names),
        num_examples=num_examples,
        image_shape=shape if None not in shape else None,
        channels=shape[-1] or 3,
    )
