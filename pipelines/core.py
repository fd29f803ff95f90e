"""`load`: a source and a split -> a batched, preprocessed, augmented `tf.data.Dataset`.

Order of work, chosen so the accelerator is fed and memory stays flat:

    light elements (indices / paths / records) -> [shard per input pipeline] -> [shuffle:
      a whole fresh permutation per epoch for folders and shapes, a bounded buffer for TFDS]
      -> parallel map: read, decode (only the crop window of a JPEG), crop, resize, flip
      -> batch (per replica) -> [the policies: RandAugment, erasing, MixUp, CutMix] -> prefetch

With ``cache=True`` the decoded, deterministically preprocessed images are cached in memory and
only the random ops run again each epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import tensorflow as tf

from pipelines import ops, sources
from pipelines.errors import DataError
from pipelines.ops import decode, decode_random_crop
from zoo import compat
from zoo.common import (
    AUGMENT_STRENGTHS,
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIZE,
    box_augmentation_error,
    is_int,
    positive_int,
)
from zoo.common import HEADS as TASKS  # one vocabulary: a pipeline's task is the model's head

DEFAULT_SHUFFLE_BUFFER = 2048  # encoded records: bounded, whatever the dataset's size


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a trainer needs to know about a loaded split."""

    source: str
    split: str
    task: str
    num_classes: int
    class_names: tuple[str, ...]
    num_examples: int | None  # examples in the split (None when the source cannot tell)
    image_shape: tuple[int, int, int]  # (H, W, C) of the images the dataset yields
    batch_size: int  # global batch size
    # The image files the split reads, for file sources (folders); None for the others.
    files: tuple[str, ...] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def steps_per_epoch(self) -> int | None:
        """Full batches per epoch of a training dataset (drop_remainder), or None if unknown."""
        if self.num_examples is None:
            return None
        return max(self.num_examples // self.batch_size, 0)


@dataclasses.dataclass
class _Plan:
    """A resolved load request: everything but the per-input-pipeline dataset."""

    source: sources.Source
    info: DatasetInfo
    training: bool
    augment: tuple[ops.Augmentation, ...]
    strengths: dict[str, float]
    seed: int | None
    cache: bool
    central_crop: bool
    skip_bad_files: bool
    shuffle_buffer: int | None
    resize_to: tuple[int, int] | None
    repeat: bool = False
    autotune: bool = False
    first_batch: int = 0


def load(
    source: str,
    split: str,
    *,
    task: str = "classify",
    image_size: int | Sequence[int] | None = None,
    batch_size: int = 32,
    training: bool = False,
    augment: Sequence[str] | str = (),
    augment_strength: Mapping[str, float] | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    channels: int | None = None,
    cache: bool = False,
    central_crop: bool = False,
    skip_bad_files: bool = False,
    shuffle_buffer: int | None = None,
    repeat: bool = False,
    download: bool = True,
    validation_holdout: float = 0.0,
    autotune: bool = False,
    follow_links: bool = False,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    first_batch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Load ``split`` of ``source`` as batches of ``(image, label)`` or ``(image, {"class", "bbox"})``.

    Args:
      source: ``"shapes"`` (built-in synthetic set), ``"synthetic"`` (one batch of noise, repeated:
        for speed measurements), ``"dir:PATH"`` (class subfolders, optionally
        under train/ validation/ test/) or a TFDS name (``"fashion_mnist"``, ``"tf_flowers"``, ...).
      split: TFDS split syntax for every source: ``"train"``, ``"test"``, ``"train[:10%]"``, ...
        Train-only datasets (tf_flowers) map ``validation``/``test`` to the seed's recipe.
      task: ``"classify"`` or ``"localize"`` (needs boxes: shapes, or a TFDS set with boxes).
      image_size: output (height, width) or one int for square; None keeps the source's size
        (shapes: 64). For sources whose images differ in size, None is an error, except for
        evaluation one image per batch (``batch_size=1``, not ``training``): each image then
        keeps its own size (``info.image_shape`` is ``(None, None, channels)``).
      batch_size: the global batch size (split across replicas under ``input_context``).
      training: shuffle, drop the last partial batch, and apply ``augment``.
      augment: names from `zoo.common.AUGMENTATIONS`, as a sequence or comma-separated: crop and
        flip (per image, from the element's seed), then the policies randaugment, erase, mixup
        and cutmix (Keras's layers, on batches: `pipelines.ops.policy_batches`). A localize task
        accepts only the ops that keep its box right: crop and flip (they move the box with the
        pixels) and erase (it moves none). With mixup or cutmix the training labels are class
        probabilities.
      augment_strength: a policy's strength by its name, each defaulting to
        `zoo.common.AUGMENT_STRENGTHS`: randaugment's magnitude and erase's probability in
        [0, 1], mixup's and cutmix's Beta alpha (> 0).
      seed: seeds shuffling and augmentation; None for a random run. (The shapes set is the
        same whatever the seed.)
      data_dir: TFDS data directory (pre-downloaded data).
      channels: 1 or 3 to convert images; None keeps the source's channels.
      cache: keep decoded images in memory after the first epoch.
      central_crop: apply the seed's central crop before resizing when not training.
      skip_bad_files: skip unreadable image files instead of failing. A folder's files are then
        decoded once when the split is loaded (cached per file), the skipped ones counted in a
        warning, and ``info.num_examples`` counts the files kept.
      shuffle_buffer: shuffle through a buffer of this many elements. By default folders and
        shapes are visited in a whole fresh permutation each epoch (no buffer, flat memory), and
        TFDS records and cached images through a buffer of min(split size, 2048).
      repeat: repeat forever (reshuffled, re-augmented each pass); for a fixed steps_per_epoch.
      first_batch: with ``repeat``, start at this batch of the repeated stream (a resumed run:
        its epoch times its steps per epoch): the batches from there are those the stream from 0
        gives, in the same order with the same crops, flips and policies, and the passes before
        are not computed.
      download: download and prepare a TFDS dataset that is not prepared yet (as `tfds.load`);
        False: prepared data only (DataError naming the command that prepares it).
      validation_holdout: for a source without a validation split of its own (an image folder
        with train/ and test/ only, a TFDS set with train and test): split ``"validation"`` is
        this fraction of ``"train"``, stratified by class and deterministic, and ``"train"`` is
        the rest. 0 (default): no holdout.
      autotune: tf.data's model-based autotuning (``options.autotune.enabled``). Off by default:
        its tuner thread can hold the end of an iterator (of a `fit`, an evaluation) for seconds,
        and turning it off cost the pipeline nothing measurable (BUILD.md, "Training speed").
        Off, ``AUTOTUNE`` parallelism is min(16, CPU cores) and prefetch buffers still grow as
        needed.
      follow_links: read an image folder's links that lead outside the dataset's folder (refused
        by default, in one line naming the link: a class folder linked to / would walk the disk).
      max_image_pixels: refuse (or, with skip_bad_files, skip) an image file whose header declares
        more pixels than this, before decoding it: a small PNG can declare 23000x23000 pixels and
        take gigabytes to decode. The default is Pillow's decompression-bomb limit (89,478,485).
      input_context: from `tf.distribute`: shard per input pipeline, batch per replica.
    """
    plan = _resolve(
        source,
        split,
        task=task,
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        augment=augment,
        augment_strength=augment_strength,
        seed=seed,
        data_dir=data_dir,
        channels=channels,
        cache=cache,
        central_crop=central_crop,
        skip_bad_files=skip_bad_files,
        shuffle_buffer=shuffle_buffer,
        repeat=repeat,
        download=download,
        validation_holdout=validation_holdout,
        autotune=autotune,
        follow_links=follow_links,
        max_image_pixels=max_image_pixels,
        first_batch=first_batch,
    )
    return _build(plan, input_context), plan.info


def distribute(strategy: tf.distribute.Strategy, source: str, split: str, **kwargs):
    """`load` for a strategy: one pipeline per input worker, per-replica batches.

    Returns ``(distributed dataset, info)``; ``kwargs`` are `load`'s, ``batch_size`` global.
    """
    plan = _resolve(source, split, **kwargs)
    dataset = strategy.distribute_datasets_from_function(lambda context: _build(plan, context))
    return dataset, plan.info


def resumable(strategy: tf.distribute.Strategy, source: str, split: str, **kwargs):
    """`distribute` for a training stream that a run may resume: the source is resolved once,
    here, and each phase of the run starts the stream where it stands.

    Returns ``(start, info)``: ``start(first_batch=0)`` is the distributed dataset, repeated
    forever, from batch ``first_batch`` on (`load`'s ``first_batch``: a resumed run sees the
    batches the uninterrupted one saw). ``kwargs`` are `load`'s, ``repeat`` aside.
    """
    plan = _resolve(source, split, repeat=True, **kwargs)

    def start(first_batch: int = 0):
        _check_first_batch(first_batch, repeat=True)
        positioned = dataclasses.replace(plan, first_batch=first_batch)
        return strategy.distribute_datasets_from_function(lambda context: _build(positioned, context))

    return start, plan.info


def _image_size(image_size):
    if image_size is None:
        return None
    size = (image_size, image_size) if is_int(image_size) else image_size
    try:
        size = tuple(size)
    except TypeError:
        size = None
    if size is None or len(size) != 2 or not all(is_int(v) for v in size):
        raise DataError(f"image_size must be an int or (height, width), received {image_size!r}")
    if min(size) < MIN_IMAGE_SIZE:
        raise DataError(f"image_size {image_size!r} is too small; each side must be at least {MIN_IMAGE_SIZE}")
    return size


def _augmentations(augment) -> tuple[ops.Augmentation, ...]:
    if isinstance(augment, str):
        augment = [a.strip() for a in augment.split(",") if a.strip()]
    names = tuple(augment)
    unknown = [a for a in names if a not in ops.AUGMENTATIONS]
    if unknown:
        raise DataError(
            f"unknown augmentation(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(ops.AUGMENTATIONS)}"
        )
    return tuple(ops.AUGMENTATIONS[name] for name in dict.fromkeys(names))


def _strengths(augment_strength) -> dict[str, float]:
    given = dict(augment_strength or {})
    unknown = [name for name in given if name not in AUGMENT_STRENGTHS]
    if unknown:
        raise DataError(
            f"augment_strength names {', '.join(map(repr, unknown))}; accepted: {', '.join(AUGMENT_STRENGTHS)}"
        )
    strengths = {}
    for name, (option, default, (low, high)) in AUGMENT_STRENGTHS.items():
        value = given.get(name, default)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < low or (high is not None and value > high):
            accepted = f"in [{low}, {high}]" if high is not None else f"above {low}"
            raise DataError(f"{option} must be a number {accepted}, received {value!r}")
        if high is None and value <= low:
            raise DataError(f"{option} must be a number above {low}, received {value!r}")
        strengths[name] = float(value)
    return strengths


def _resolve(
    source,
    split,
    *,
    task="classify",
    image_size=None,
    batch_size=32,
    training=False,
    augment=(),
    augment_strength=None,
    seed=None,
    data_dir=None,
    channels=None,
    cache=False,
    central_crop=False,
    skip_bad_files=False,
    shuffle_buffer=None,
    repeat=False,
    download=True,
    validation_holdout=0.0,
    autotune=False,
    follow_links=False,
    max_image_pixels=None,
    first_batch=0,
) -> _Plan:
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; accepted: {', '.join(TASKS)}")
    positive_int("batch_size", batch_size, error=DataError)
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1, 3 or None, received {channels!r}")
    if seed is not None and not is_int(seed):
        raise DataError(f"seed must be an integer or None, received {seed!r}")
    _check_first_batch(first_batch, repeat)
    if not isinstance(split, str) or not split:
        raise DataError(f"split must be a non-empty string such as 'train', received {split!r}")
    size = _image_size(image_size)
    augment = _augmentations(augment)
    if task == "localize" and any(not op.boxes for op in augment):
        accepted = [name for name, op in ops.AUGMENTATIONS.items() if op.boxes]
        raise DataError(box_augmentation_error([op.name for op in augment], accepted))
    strengths = _strengths(augment_strength)
    if not (isinstance(validation_holdout, (int, float)) and 0 <= validation_holdout < 1):
        raise DataError(f"validation_holdout must be a fraction in [0, 1), received {validation_holdout!r}")
    resolved = sources.resolve(
        source,
        split,
        task=task,
        image_size=size,
        channels=channels,
        data_dir=data_dir,
        training=training,
        seed=seed,
        skip_bad_files=skip_bad_files,
        download=download,
        validation_holdout=validation_holdout,
        follow_links=follow_links,
        max_image_pixels=MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels,
    )
    if resolved.num_examples == 0:  # e.g. 'test[:0]': nothing to train on, validate or evaluate
        raise DataError(f"split {split!r} of {source!r} holds no examples; give a split or slice that has some")

    if size is None:
        if resolved.image_shape is not None:
            size = tuple(resolved.image_shape[:2])
        elif training or batch_size != 1:
            raise DataError(f"the images of {source!r} differ in size: pass image_size (e.g. 224) to resize them")
        else:  # one image per batch: each keeps its own size
            size = (None, None)
    native = resolved.image_shape[:2] if resolved.image_shape else None
    crops = (training and any(a.window for a in augment)) or (not training and central_crop)
    resize_to = None if None in size or (tuple(size) == native and not crops) else tuple(size)
    info = DatasetInfo(
        source=source,
        split=split,
        task=task,
        num_classes=len(resolved.class_names),
        class_names=tuple(resolved.class_names),
        num_examples=resolved.num_examples,
        image_shape=(size[0], size[1], channels or resolved.channels),
        batch_size=batch_size,
        files=tuple(resolved.files) if resolved.files is not None else None,
    )
    return _Plan(
        source=resolved,
        info=info,
        training=training,
        augment=augment,
        strengths=strengths,
        seed=seed,
        cache=cache,
        central_crop=central_crop,
        skip_bad_files=skip_bad_files,
        shuffle_buffer=shuffle_buffer,
        resize_to=resize_to,
        repeat=repeat,
        autotune=bool(autotune),
        first_batch=first_batch,
    )


def _check_first_batch(first_batch, repeat: bool) -> None:
    if not is_int(first_batch) or first_batch < 0:
        raise DataError(f"first_batch must be a batch index (an integer >= 0), received {first_batch!r}")
    if first_batch and not repeat:
        raise DataError(f"first_batch={first_batch} starts a repeated stream part-way: pass repeat=True too")


def undecodable(info: DatasetInfo) -> dict[str, str]:
    """``{file: why}`` for the files of a loaded split that cannot be decoded (empty for sources
    without files). For naming the file after a decode error stopped a dataset mid-epoch."""
    return sources.undecodable_files(info.files) if info.files else {}


def _shuffle_buffer(plan: _Plan) -> int:
    if plan.shuffle_buffer:
        return plan.shuffle_buffer
    known = plan.info.num_examples or DEFAULT_SHUFFLE_BUFFER
    return max(min(known, DEFAULT_SHUFFLE_BUFFER), 1)


def _derived_seed(seed: int | None, stream: int) -> int | None:
    """Another reproducible seed from ``seed``, so two random streams never coincide."""
    return None if seed is None else (int(seed) * 7919 + stream) % 2**31


def permuted_rows(
    table: tuple[tf.Tensor, ...], seed: int | None, num_shards: int = 1, shard: int = 0, first_pass: int = 0
) -> tf.data.Dataset:
    """Rows ``shard, shard + num_shards, ...`` of ``table``, in a fresh random order each pass.

    A whole permutation per pass, without a shuffle buffer: `tf.random.experimental.index_shuffle`
    gives a seeded permutation of the positions, and the table is gathered in that order once per
    pass, so the cost is one copy of the (small) table, not a tf.data buffer entry per row.
    Reproducible for a given ``seed``; each new iteration (epoch) draws a new permutation, the
    first one being pass ``first_pass``'s of the sequence (`zoo.compat.skip_iterations`).
    """
    rows = int(table[0].shape[0])
    count = len(range(shard, rows, num_shards))

    def one_pass(pass_seed):
        # Vectorized, once per pass: the permuted copy of the table is all it holds.
        positions = tf.range(count, dtype=tf.int64)
        order = tf.random.experimental.index_shuffle(positions, pass_seed, max(count - 1, 0))
        rows = shard + num_shards * order
        return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(c, rows) for c in table))

    pass_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    compat.skip_iterations(pass_seeds, first_pass)
    return pass_seeds.batch(2, drop_remainder=True).take(1).flat_map(one_pass)


def dataset_options(autotune: bool = False) -> tf.data.Options:
    """The `tf.data.Options` every pipeline of `load` gets (see its ``autotune``)."""
    options = tf.data.Options()
    options.autotune.enabled = autotune
    return options


def _build(plan: _Plan, input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
    return _batches(plan, input_context).with_options(dataset_options(plan.autotune))


def _batches(plan: _Plan, input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
    info, source = plan.info, plan.source
    channels = info.image_shape[-1]
    batch_size = info.batch_size
    localize = info.task == "localize"
    autotune = tf.data.AUTOTUNE
    # The registry's ops, by what they need from the pipeline: a crop picks its window before
    # decoding (a JPEG decodes only the window), a flip rides in the resize's pass, the rest run
    # on the resized float32 image. Evaluation runs none of them.
    augment = plan.augment if plan.training else ()
    window_op = next((op for op in augment if op.window is not None), None)
    mirror_op = next((op for op in augment if op.mirror is not None), None)
    pixel_ops = [op for op in augment if op.apply is not None and op is not window_op and op is not mirror_op]
    policies = [op for op in augment if op.layer is not None]

    def through_policies(batches, first_batch=0, shard=0):
        if not policies:
            return batches
        return ops.policy_batches(
            batches, policies, plan.strengths, plan.seed, info.num_classes, first_batch=first_batch, shard=shard
        )

    num_shards, shard, first_batch = 1, 0, plan.first_batch
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(info.batch_size)
        num_shards, shard = input_context.num_input_pipelines, input_context.input_pipeline_id
        # A step takes one batch of this pipeline for each of its replicas.
        first_batch *= input_context.num_replicas_in_sync // num_shards
    permute = plan.training and not plan.cache and not plan.shuffle_buffer and source.table is not None
    elements = source.elements
    if num_shards > 1 and not permute:
        elements = elements.shard(num_shards, shard)

    def materialize(element):
        example = source.materialize(*element) if isinstance(element, tuple) else source.materialize(element)
        return example, (example["bbox"] if localize else None)

    def decoded(example, box, seed=None):
        """Decode; with an element seed and a crop op, crop too (a JPEG only inside the window)."""
        if "encoded" in example:
            if seed is not None and window_op is not None:
                return decode_random_crop(
                    example["encoded"], box, window_op.seed(seed), channels, source.jpeg_only, window_op.window
                )
            image = decode(example["encoded"], channels, source.jpeg_only)
        else:
            image = example["image"]
            if seed is not None and window_op is not None:
                return window_op.apply(image, box, seed=window_op.seed(seed))
        if not plan.training and plan.central_crop:
            image, box = ops.central_crop(image, box)
        return image, box

    def finish(image, box, label, seed, resize):
        mirror = None if mirror_op is None else mirror_op.mirror(mirror_op.seed(seed))
        if resize and plan.resize_to is not None:
            # Mirroring commutes with resizing, so the resize does it in the same pass (one pass
            # over the pixels with the fused kernel).
            image, box = ops.resize(image, box, size=plan.resize_to, flip=mirror)
        else:
            image = tf.cast(image, tf.float32)
            if mirror is not None:
                image, box = ops.mirror_image(image, mirror), ops.mirror_box(box, mirror)
        for op in pixel_ops:
            image, box = op.apply(image, box, seed=op.seed(seed))
        image = tf.ensure_shape(image, info.image_shape)
        if localize:
            return image, {"class": label, "bbox": tf.ensure_shape(box, [4])}
        return image, label

    def random_seeds():
        # Per-element stateless seeds: reproducible for a given seed, fresh every epoch.
        return tf.data.Dataset.random(seed=plan.seed, rerandomize_each_iteration=True).batch(2)

    def full_example(element, seed):
        example, box = materialize(element)
        image, box = decoded(example, box, seed)
        return finish(image, box, example["label"], seed, resize=True)

    if source.constant:
        # One batch, made once (augmented once, if asked), cached and repeated: an epoch is
        # num_examples // batch_size copies of it.
        one = tf.data.Dataset.zip((source.elements.take(batch_size), random_seeds())).map(full_example)
        dataset = through_policies(one.batch(batch_size, drop_remainder=plan.training)).cache()
        dataset = dataset.repeat() if plan.repeat else dataset.repeat(max(info.num_examples // info.batch_size, 1))
        return dataset.skip(first_batch).prefetch(autotune)
    if plan.cache:
        # Cache what is the same every epoch: decoded images, resized unless a random crop
        # must first see the whole image. One cache, whichever pass fills it.
        def to_cache(*element):
            example, box = materialize(element if len(element) > 1 else element[0])
            image, box = decoded(example, box)
            if window_op is None and plan.resize_to is not None:
                image, box = ops.resize(image, box, size=plan.resize_to)
            return image, (box if localize else tf.zeros([4])), example["label"]

        cached = elements.map(to_cache, num_parallel_calls=autotune).cache()

        def from_cache(cached, seed):
            image, box, label = cached
            box = box if localize else None
            if window_op is not None:
                image, box = window_op.apply(image, box, seed=window_op.seed(seed))
            return finish(image, box, label, seed, resize=window_op is not None)

    def one_pass(skip: int = 0, first_pass: int = 0) -> tf.data.Dataset:
        """One pass over the split in batches, from its ``skip``-th element. Its order and
        element seeds are drawn anew at each iteration, by random ops made anew at each call and
        started at pass ``first_pass``'s draws: each small random dataset alone goes through
        `zoo.compat.skip_iterations` (an iterator of the whole pipeline costs ~0.1 s to create)."""
        if permute:
            ordered = permuted_rows(source.table, _derived_seed(plan.seed, 1), num_shards, shard, first_pass)
        else:
            ordered = cached if plan.cache else elements
            if plan.training:
                # (A shuffle makes its input's iterator when first read, not when it is made.)
                ordered = ordered.shuffle(_shuffle_buffer(plan), seed=plan.seed, reshuffle_each_iteration=True)
                compat.skip_iterations(ordered, first_pass)
        seeds = random_seeds()
        compat.skip_iterations(seeds, first_pass)
        seeded = tf.data.Dataset.zip((ordered, seeds)).skip(skip)
        dataset = seeded.map(from_cache if plan.cache else full_example, num_parallel_calls=autotune)
        if plan.skip_bad_files:
            # Folders were checked file by file when listed (each skipped file counted once): what
            # is skipped here, with a warning each, is a file deleted or damaged since, or an
            # undecodable record of another source.
            dataset = dataset.ignore_errors(log_warning=True)
        return dataset.batch(batch_size, drop_remainder=plan.training)

    examples = source.num_examples
    here = None if examples is None else len(range(shard, examples, num_shards))  # this pipeline's
    if not plan.repeat:
        dataset = one_pass()
        if here is not None and not plan.skip_bad_files:
            # Its batches, told to tf.data where a filter hid them (a holdout, images without
            # objects): Keras shows the total and does not warn that the input "ran out of data"
            # at the end of every first pass (keras-team/keras#23360); a wrong count fails loudly.
            batches = here // batch_size if plan.training else -(-here // batch_size)
            dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    else:
        per_pass = None if here is None else here // batch_size
        # Read once a pass by every pass (a TFDS set's own shuffle of its files, per iteration).
        shared = (elements,) if plan.training and not permute and not plan.cache else ()
        dataset = _repeated(one_pass, first_batch, per_pass, batch_size, shared)
    return through_policies(dataset, first_batch, shard).prefetch(autotune)


def _repeated(one_pass, first_batch: int, per_pass: int | None, batch_size: int, shared=()) -> tf.data.Dataset:
    """``one_pass()`` repeated forever, from its batch ``first_batch`` on: the batches an
    uninterrupted stream gives from there, each pass in the order and with the element seeds it
    would have (a resumed run's data), without computing the passes before it.
    ``one_pass(skip, first_pass)`` is pass ``first_pass`` from its element ``skip``;
    ``per_pass``: batches in a pass (None: unknown, and the batches before ``first_batch`` are
    computed and dropped). ``shared``: datasets that every pass ``one_pass`` makes reads once,
    started at the first pass here."""
    if not first_batch:
        return one_pass().repeat()
    if not per_pass:
        return one_pass().repeat().skip(first_batch)
    passes, within = divmod(first_batch, per_pass)
    for dataset in shared:
        compat.skip_iterations(dataset, passes)
    if not within:  # an epoch that ends with a pass: the stream from pass `passes` on
        return one_pass(first_pass=passes).repeat()
    # The rest of pass `passes`, from its element (a skip before the decode), then the passes after.
    current = one_pass(skip=within * batch_size, first_pass=passes)
    return current.concatenate(one_pass(first_pass=passes + 1).repeat())
