"""Sources: where examples come from, before any preprocessing.

A source resolves a split into a `Source`: a `tf.data.Dataset` of dicts with ``image`` (decoded
(H, W, C) pixels, or ``encoded`` bytes for files and TFDS images, so the pipeline can decode only a
crop window), ``label`` (int32) and, where the source has one, ``bbox`` (normalized
[ymin, xmin, ymax, xmax]), plus what is known about it. Split strings use the TFDS syntax for every
source (``"train"``, ``"train[:10%]"``, ``"train[:200]+validation"``), parsed by TFDS itself.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import re
import socket
import urllib.parse
import zlib
from collections.abc import Callable, Sequence
from concurrent import futures

import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines import shapes
from pipelines.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Source:
    # Light elements (indices, paths, TFDS records), cheap to shuffle and shard, and the function
    # that turns one into a dict: image | encoded, label, [bbox].
    elements: tf.data.Dataset
    materialize: Callable
    class_names: list[str]
    num_examples: int | None
    image_shape: tuple | None  # (H, W, C) when every image has it, else None
    channels: int  # channels of the images as stored
    # The elements as rows of tensors (paths and labels, stream keys and indices), when they are
    # small enough to hold: then training visits them in a whole fresh permutation each epoch, with
    # no shuffle buffer, and `elements` is `Dataset.from_tensor_slices(table)`.
    table: tuple[tf.Tensor, ...] | None = None
    files: list[str] | None = None  # the image files, for folder sources
    # Every image is a JPEG (the folder check read each file's signature): the pipeline can call the
    # JPEG decoder directly, without a per-image branch on the format.
    jpeg_only: bool = False
    # Every batch is the same one (the synthetic source): the pipeline makes one batch, caches it
    # and repeats it, so that training measures the model and the step, not the input.
    constant: bool = False


DIR_PREFIX = "dir:"


def resolve(
    source: str,
    split: str,
    *,
    task: str,
    image_size: tuple[int, int] | None,
    channels: int | None,
    data_dir: str | None,
    training: bool,
    seed: int | None,
    skip_bad_files: bool,
    download: bool = True,
    validation_holdout: float = 0.0,
) -> Source:
    """The `Source` that ``source`` names: ``"shapes"``, ``"synthetic"``, ``"dir:PATH"`` or a TFDS name.

    ``validation_holdout`` > 0: a source with no validation split of its own gets one, that
    fraction of "train", stratified by class and deterministic; "train" is then the rest.
    """
    if not isinstance(source, str) or not source:
        raise DataError(f"source must be 'shapes', 'synthetic', 'dir:PATH' or a TFDS name, received {source!r}")
    if source == "shapes":
        return shapes_source(split, image_size=image_size, channels=channels or 3)
    if source == SYNTHETIC:
        return synthetic_source(split, image_size=image_size, channels=channels or 3)
    if source.startswith(DIR_PREFIX):
        if task == "localize":
            raise DataError(
                f"image folders have no boxes, so {source!r} cannot be used with task='localize'; sources with "
                f"boxes: 'shapes', or a TFDS dataset with a BBoxFeature (e.g. caltech_birds2011, voc)"
            )
        return folder_source(
            source[len(DIR_PREFIX) :], split, skip_bad_files=skip_bad_files, validation_holdout=validation_holdout
        )
    return tfds_source(
        source,
        split,
        data_dir=data_dir,
        task=task,
        shuffle_files=training,
        seed=seed,
        download=download,
        validation_holdout=validation_holdout,
    )


_HOLDOUT_SEED = 20241126
_announced: set = set()


def _announce_holdout(source: str, fraction: float, count: int) -> None:
    if (source, fraction) not in _announced:
        _announced.add((source, fraction))
        log.warning(
            "%s has no validation split: %d examples (%g%% of train, stratified by class, always the same) are "
            "held out for validation, and train is the rest",
            source,
            count,
            100 * fraction,
        )


def _holdout_count(size: int, fraction: float) -> int:
    """Examples of one class held out: the fraction, rounded, at least one when the class has two."""
    return min(max(round(size * fraction), 1 if size >= 2 else 0), size - 1) if size else 0


def absolute_ranges(split: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """Resolve a TFDS-syntax split against split sizes: [(split name, start, stop), ...]."""
    infos = {name: tfds.core.SplitInfo(name=name, shard_lengths=[size], num_bytes=0) for name, size in sizes.items()}
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
    except (ValueError, AssertionError) as error:
        message = str(error).splitlines()[0]
        raise DataError(
            f"bad split {split!r} ({message}); accepted: {', '.join(sizes)}, optionally sliced "
            f"as in TFDS, e.g. 'train[:80%]', 'train[100:200]', 'train+validation'"
        ) from None
    return [(i.splitname, i.from_ or 0, sizes[i.splitname] if i.to is None else i.to) for i in instructions]


# ---------------------------------------------------------------------------------------------
# shapes


# The set itself never depends on a run's seed (which drives shuffling and augmentation): a test
# split must hold the same examples whatever seed a run trains with.
SHAPES_SEED = 0


def shapes_source(split: str, *, image_size: tuple[int, int] | None, channels: int, seed: int = SHAPES_SEED) -> Source:
    """The built-in synthetic set, drawn at ``image_size`` (default 64x64)."""
    image_size = image_size or (shapes.DEFAULT_SIZE, shapes.DEFAULT_SIZE)
    if min(image_size) < shapes.MIN_SIZE:
        raise DataError(
            f"image_size {tuple(image_size)!r} is too small for shapes; each side must be at least {shapes.MIN_SIZE}"
        )
    ranges = absolute_ranges(split, shapes.SPLIT_SIZES)
    streams, indices = [], []
    for name, start, stop in ranges:
        streams += [shapes.stream_key(name, seed)] * (stop - start)
        indices += range(start, stop)
    table = (tf.constant(streams, tf.int64), tf.constant(indices, tf.int64))
    return Source(
        elements=tf.data.Dataset.from_tensor_slices(table),
        materialize=shapes.materializer(height=image_size[0], width=image_size[1], channels=channels),
        class_names=list(shapes.CLASS_NAMES),
        num_examples=sum(stop - start for _, start, stop in ranges),
        image_shape=(image_size[0], image_size[1], channels),
        channels=channels,
        table=table,
    )


# ---------------------------------------------------------------------------------------------
# synthetic: one batch of noise, repeated (speed measurements without an input pipeline)

SYNTHETIC = "synthetic"
SYNTHETIC_SPLIT_SIZES = {"train": 10_000, "validation": 1_000, "test": 1_000}
SYNTHETIC_DEFAULT_SIZE = 224
SYNTHETIC_CLASSES = 10


def synthetic_source(split: str, *, image_size: tuple[int, int] | None, channels: int) -> Source:
    """Random pixels in [0, 255], labels ``index % 10``, a random box each: the same batch every
    step (``constant``), so that a training run measures the model and its step alone. Splits
    train (10,000), validation and test (1,000 each), sliceable; images 224x224 by default."""
    height, width = image_size or (SYNTHETIC_DEFAULT_SIZE, SYNTHETIC_DEFAULT_SIZE)
    ranges = absolute_ranges(split, SYNTHETIC_SPLIT_SIZES)
    indices = tf.constant([i for _, start, stop in ranges for i in range(start, stop)], tf.int64)

    def materialize(index):
        seed = tf.stack([index, tf.constant(SYNTHETIC_CLASSES, tf.int64)])
        image = tf.random.stateless_uniform([height, width, channels], seed, maxval=255.0)
        corner = tf.random.stateless_uniform([2], seed + 1, maxval=0.5)
        box = tf.concat([corner, corner + 0.5], axis=0)
        return {"image": image, "label": tf.cast(index % SYNTHETIC_CLASSES, tf.int64), "bbox": box}

    return Source(
        elements=tf.data.Dataset.from_tensor_slices(indices),
        materialize=materialize,
        class_names=[f"class{i}" for i in range(SYNTHETIC_CLASSES)],
        num_examples=int(indices.shape[0]),
        image_shape=(height, width, channels),
        channels=channels,
        constant=True,
    )


# ---------------------------------------------------------------------------------------------
# image folders

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = ("train", "validation", "test")
# Without train/validation/test folders, each class's files are split 80/10/10 after a fixed
# shuffle: stratified, deterministic, the same on every machine.
FOLDER_SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
_FOLDER_SPLIT_SEED = 20240601


def _image_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    return None


def check_image_file(path: str) -> str | None:
    """Return why ``path`` is not a complete image file, or None if it looks whole.

    Reads the first and last bytes only: the format's signature, and its end marker (JPEG EOI,
    PNG IEND, GIF trailer) or, for BMP, the size the header declares. This catches non-image files
    and truncated downloads before training starts, at a tiny fraction of the cost of decoding.
    """
    return inspect_image_file(path)[1]


def inspect_image_file(path: str) -> tuple[str | None, str | None]:
    """``(format, problem)`` of an image file: "jpeg", "png", "gif" or "bmp" (from its signature,
    whatever its extension says) and why it is not a complete image, or None (see
    `check_image_file`)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            size = f.size()
            head = f.read(32)
            f.seek(max(size - 32, 0))
            tail = f.read(32)
    except (OSError, tf.errors.OpError) as error:
        return None, f"cannot be read ({error})"
    kind = _image_format(head)
    if kind is None:
        return None, "is not a JPEG, PNG, GIF or BMP image"
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return kind, "is a truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in tail:
        return kind, "is a truncated PNG (no IEND chunk)"
    if kind == "gif" and not tail.rstrip(b"\x00").endswith(b"\x3b"):
        return kind, "is a truncated GIF (no trailer)"
    if kind == "bmp" and len(head) >= 6 and int.from_bytes(head[2:6], "little") > size:
        return kind, "is a truncated BMP (shorter than its header says)"
    return kind, None


_CHECK_THREADS = 16  # file checks wait on I/O (network filesystems especially), not the CPU
_CHECK_CHUNK = 1024  # files in flight at once: memory stays flat however many files there are


def _file_key(path: str) -> tuple[str, int, int] | None:
    """(path, mtime, size): what a per-file answer is remembered by; None if it cannot be read."""
    try:
        stat = tf.io.gfile.stat(path)
    except tf.errors.OpError:
        return None
    return path, stat.mtime_nsec, stat.length


def _remembered(cache: dict, function: Callable):
    """``function(path)``, remembered in ``cache`` per `_file_key`: a run loads its folder several
    times (each split, the normalization, the preview, tuning trials), and a file that has not
    changed is not read again. (On a filesystem with coarse timestamps, a same-size rewrite within
    one tick would go unnoticed for the rest of the process.) Unreadable files are not cached:
    ``function`` names their problem."""

    def lookup(path: str):
        key = _file_key(path)
        if key is None:
            return function(path)
        if key not in cache:
            cache[key] = function(path)
        return cache[key]

    return lookup


def _each_file(function: Callable, paths: Sequence[str], threads: int):
    """``(path, function(path))`` for every path, ``threads`` at a time, a chunk in flight at once.

    Each thread takes a run of files, not one: a future per file cost more than a remembered
    answer (0.5 s of a 0.66 s re-listing of 20,000 files)."""

    def each(run: Sequence[str]) -> list:
        return [function(path) for path in run]

    with futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), _CHECK_CHUNK):
            chunk = paths[start : start + _CHECK_CHUNK]
            step = math.ceil(len(chunk) / (4 * threads))  # about 4 runs per thread: uneven files even out
            runs = [chunk[i : i + step] for i in range(0, len(chunk), step)]
            yield from zip(chunk, (answer for answers in pool.map(each, runs) for answer in answers))


def _check_files(paths: Sequence[str]) -> tuple[dict[str, str], set[str]]:
    """`inspect_image_file` on every path, in parallel, remembered per file.

    Returns ``({bad path: reason}, {good paths that are not JPEGs})``: the second is empty for the
    usual all-JPEG folder, so it costs nothing to keep.
    """
    bad, not_jpeg = {}, set()
    inspect = _remembered(_INSPECTED, lambda path: inspect_image_file(path))
    for path, (kind, reason) in _each_file(inspect, paths, _CHECK_THREADS):
        if reason:
            bad[path] = reason
        elif kind != "jpeg":
            not_jpeg.add(path)
    return bad, not_jpeg


_INSPECTED: dict = {}  # file key -> `inspect_image_file`'s (format, problem)
_DECODED: dict = {}  # file key -> why the file cannot be decoded, or None


def _decode_problem(path: str) -> str | None:
    try:
        tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        return None
    except tf.errors.OpError as error:
        # "{{function_node ...}} Invalid PNG data, size 12432 [Op:DecodeImage]" -> the middle
        message = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", error.message.splitlines()[0])
        if isinstance(error, tf.errors.NotFoundError):
            return f"cannot be read ({message})"
        return f"cannot be decoded ({message})"


def undecodable_files(paths: Sequence[str]) -> dict[str, str]:
    """``{path: why}`` for every file of ``paths`` that TensorFlow cannot read or decode.

    Decodes each file whole, in parallel: the check that catches what the cheap signature and end
    marker check (`check_image_file`) cannot, a file whose markers are intact but whose body is
    corrupt. Results are remembered per (path, modification time, size), so a second call on the
    same files (another split, another trial) decodes nothing again.
    """
    decode = _remembered(_DECODED, _decode_problem)
    bad = {path: problem for path, problem in _each_file(decode, paths, os.cpu_count() or 2) if problem}
    return dict(sorted(bad.items()))


def _class_folders(root: str) -> list[str]:
    return sorted(
        name
        for name in tf.io.gfile.listdir(root)
        if not name.startswith(".") and tf.io.gfile.isdir(os.path.join(root, name.rstrip("/")))
    )


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(folder: str, dataset_root: str):
    """``(folder, its real path, file names)`` of every folder under a class ``folder``, following
    each link once.

    Local folders are walked by real path: a folder reached again through a symlink (a loop) is
    skipped, and so is a link into another part of the dataset (``cat/loop -> ..``,
    ``dog/cats -> ../cat``): a file belongs to the class folder it really lies in. Links to
    folders outside the dataset are followed. Walking always ends and no file is listed twice.
    Remote filesystems (``gs://``...) have no links: `tf.io.gfile.walk`.
    """
    if "://" in folder:
        for dirpath, _, filenames in tf.io.gfile.walk(folder):
            yield dirpath, dirpath, filenames
        return
    home, root = os.path.realpath(folder), os.path.realpath(dataset_root)
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited or (_inside(real, root) and not _inside(real, home)):
            dirnames[:] = []  # do not descend again
            continue
        visited.add(real)
        dirnames.sort()
        yield dirpath, real, filenames


def _list_class_files(root: str, class_names: Sequence[str], skip_bad_files: bool, dataset_root: str | None = None):
    """All image files per class, checked.

    Returns (files per class, list of skipped reasons, the good files that are not JPEGs).
    """
    per_class, problems = {}, []
    candidates = []
    seen_files: set[str] = set()  # real paths: a file reached twice through links counts once
    for name in class_names:
        folder = os.path.join(root, name)
        files = []
        for dirpath, real_dirpath, filenames in _walk(folder, dataset_root or root):
            for filename in sorted(filenames):
                if filename.startswith("."):  # .DS_Store and friends
                    continue
                path = os.path.join(dirpath, filename)
                # The folder's real path is known: only a linked file needs resolving on its own.
                real = os.path.join(real_dirpath, filename)
                if "://" not in path and os.path.islink(path):
                    real = os.path.realpath(path)
                if real in seen_files:
                    continue
                seen_files.add(real)
                if not filename.lower().endswith(IMAGE_EXTENSIONS):
                    problems.append((path, f"has an extension that is not one of {', '.join(IMAGE_EXTENSIONS)}"))
                    continue
                files.append(path)
        per_class[name] = sorted(files)
        candidates.extend(files)
    reasons, not_jpeg = _check_files(candidates)
    bad = set(reasons)
    problems.extend((path, reasons[path]) for path in sorted(bad))
    if problems and not skip_bad_files:
        path, reason = problems[0]
        more = f" (and {len(problems) - 1} more bad files)" if len(problems) > 1 else ""
        raise DataError(
            f"image file {path!r} {reason}{more}; fix or remove it, or pass skip_bad_files=True "
            f"to skip bad files with a warning"
        )
    per_class = {name: [f for f in files if f not in bad] for name, files in per_class.items()}
    return per_class, problems, not_jpeg


def folder_source(
    root: str,
    split: str,
    *,
    skip_bad_files: bool = False,
    class_names: Sequence[str] | None = None,
    validation_holdout: float = 0.0,
) -> Source:
    """``dir:ROOT``: one subfolder per class, optionally under train/, validation/, test/."""
    if not tf.io.gfile.isdir(root):
        raise DataError(f"image folder {root!r} does not exist or is not a folder")
    split_dirs = [name for name in SPLIT_FOLDERS if tf.io.gfile.isdir(os.path.join(root, name))]
    if split_dirs:
        class_roots = {name: os.path.join(root, name) for name in split_dirs}
        found = sorted({c for r in class_roots.values() for c in _class_folders(r)})
    else:
        found = _class_folders(root)
    class_names = list(class_names or found)
    if len(class_names) < 2:
        raise DataError(
            f"image folder {root!r} must hold one subfolder per class (at least 2), found {class_names or 'none'}"
        )

    files_by_split: dict[str, list[tuple[str, int]]] = {}
    problems, not_jpeg = [], set()
    if split_dirs:
        for split_name, split_root in class_roots.items():
            present = [c for c in class_names if tf.io.gfile.isdir(os.path.join(split_root, c))]
            per_class, skipped, others = _list_class_files(split_root, present, skip_bad_files, dataset_root=root)
            problems += skipped
            not_jpeg |= others
            _require_images(split_root, per_class)
            files_by_split[split_name] = [(path, class_names.index(c)) for c in present for path in per_class[c]]
        if validation_holdout and "validation" not in files_by_split and "train" in files_by_split:
            files_by_split["train"], files_by_split["validation"] = _hold_out(
                files_by_split["train"], validation_holdout
            )
            _announce_holdout(f"image folder {root!r}", validation_holdout, len(files_by_split["validation"]))
    else:
        per_class, problems, not_jpeg = _list_class_files(root, class_names, skip_bad_files)
        _require_images(root, per_class)
        files_by_split = {name: [] for name in FOLDER_SPLIT_FRACTIONS}
        for label, name in enumerate(class_names):
            files = list(per_class[name])
            random.Random(_FOLDER_SPLIT_SEED).shuffle(files)
            n_train = round(len(files) * FOLDER_SPLIT_FRACTIONS["train"])
            n_val = round(len(files) * FOLDER_SPLIT_FRACTIONS["validation"])
            cuts = {
                "train": files[:n_train],
                "validation": files[n_train : n_train + n_val],
                "test": files[n_train + n_val :],
            }
            for split_name, chunk in cuts.items():
                files_by_split[split_name] += [(path, label) for path in chunk]
    if problems:
        log.warning("skipped %d bad file(s) under %s, e.g. %s %s", len(problems), root, *problems[0])

    sizes = {name: len(items) for name, items in files_by_split.items()}
    selected = []
    for name, start, stop in absolute_ranges(split, sizes):
        selected += files_by_split[name][start:stop]
    if not selected:
        raise DataError(f"split {split!r} of image folder {root!r} holds no images")
    if skip_bad_files:
        # Decode the split's files once, so a file whose body is corrupt is skipped here, counted,
        # and num_examples is the number of examples the dataset really yields.
        undecodable = undecodable_files([path for path, _ in selected])
        if undecodable:
            first = min(undecodable.items())
            log.warning(
                "skipped %d file(s) of split %r under %s that cannot be decoded, e.g. %s %s",
                len(undecodable),
                split,
                root,
                *first,
            )
            selected = [(path, label) for path, label in selected if path not in undecodable]
            if not selected:
                raise DataError(f"split {split!r} of image folder {root!r} holds no image that can be decoded")
    paths = [path for path, _ in selected]
    labels = [label for _, label in selected]
    table = (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))
    return Source(
        elements=tf.data.Dataset.from_tensor_slices(table),
        materialize=lambda path, label: {"encoded": tf.io.read_file(path), "label": label},
        class_names=class_names,
        num_examples=len(selected),
        image_shape=None,
        channels=3,
        table=table,
        files=paths,
        jpeg_only=not_jpeg.isdisjoint(paths),
    )


def _hold_out(items: list[tuple[str, int]], fraction: float):
    """(kept, held out): per class, a fixed shuffle's first ``fraction`` of ``items`` is held out."""
    kept, held = [], []
    for label in sorted({label for _, label in items}):
        members = [item for item in items if item[1] == label]
        random.Random(_HOLDOUT_SEED).shuffle(members)
        count = _holdout_count(len(members), fraction)
        held += members[:count]
        kept += members[count:]
    order = {item: index for index, item in enumerate(items)}
    return sorted(kept, key=order.__getitem__), sorted(held, key=order.__getitem__)


def _require_images(root, per_class):
    empty = [name for name, files in per_class.items() if not files]
    if len(empty) == len(per_class):
        raise DataError(f"image folder {root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(repr(os.path.join(root, e)) for e in empty)} hold no "
            f"images; remove them or add images"
        )


# ---------------------------------------------------------------------------------------------
# TFDS

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


_HELD_OUT: dict[tuple, frozenset] = {}


def _held_out_ids(builder, name, data_dir, fraction, decoders, to_example) -> frozenset:
    """The ``tfds_id`` of the train records held out for validation: per class, the ``fraction``
    whose ids hash lowest. Exactly stratified and the same on every machine and every run (the id
    names the record, whatever order the files are read in); one pass over the labels, cached."""
    key = (name, data_dir, fraction)
    if key not in _HELD_OUT:
        records = builder.as_dataset(
            split="train",
            decoders=decoders,
            shuffle_files=False,
            read_config=tfds.ReadConfig(add_tfds_id=True, try_autocache=False),
        )
        labels = records.map(lambda ex: (ex["tfds_id"], to_example(ex)["label"]), num_parallel_calls=tf.data.AUTOTUNE)
        by_class: dict[int, list[tuple[int, bytes]]] = {}
        for record_id, label in labels.as_numpy_iterator():
            by_class.setdefault(int(label), []).append((zlib.crc32(record_id + str(_HOLDOUT_SEED).encode()), record_id))
        held = set()
        for members in by_class.values():
            members.sort()
            held.update(record_id for _, record_id in members[: _holdout_count(len(members), fraction)])
        _HELD_OUT[key] = frozenset(held)
    return _HELD_OUT[key]


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
    if not type(builder).download_and_prepare.__module__.startswith("tensorflow_datasets.core"):
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
    root = data_dir or tfds.core.constants.DATA_DIR
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
        first = str(error).strip().splitlines()[0]
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
                f"bad split {split!r} for dataset {name!r} ({str(error).splitlines()[0]}); "
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
    if objects_key is not None and box_key is None:
        object_features = features[objects_key].feature
        object_label = next((k for k, f in object_features.items() if isinstance(f, tfds.features.ClassLabel)), None)
        object_box = next(k for k, f in object_features.items() if isinstance(f, tfds.features.BBoxFeature))
        if label_key is None:
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
        dataset = builder.as_dataset(
            split=resolved, decoders=decoders, shuffle_files=shuffle_files, read_config=read_config
        )
    except AssertionError as error:
        raise DataError(
            f"dataset {name!r} is not available offline ({str(error).splitlines()[0]}); download it "
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

    if holdout:
        held_out = _held_out_ids(builder, name, data_dir, validation_holdout, decoders, to_example)
        if not held_out:
            raise DataError(f"dataset {name!r} has too few training examples to hold some out for validation")
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
        _announce_holdout(f"dataset {name!r}", validation_holdout, len(held_out))
    if task == "localize" and objects_key is not None and box_key is None:
        # Images without any object have no first box to learn from.
        dataset = dataset.filter(lambda ex: tf.shape(ex[objects_key][object_box])[0] > 0)
    shape = tuple(image_feature.shape)
    return Source(
        elements=dataset,
        materialize=to_example,
        class_names=list(class_feature.names),
        num_examples=num_examples,
        image_shape=shape if None not in shape else None,
        channels=shape[-1] or 3,
    )
