"""Preprocessing ops: small pure functions on one image and its box, usable eagerly and in tf.data.

Every op takes and returns ``(image, box)``: ``image`` is (H, W, C) of any dtype, ``box`` a float32
``[ymin, xmin, ymax, xmax]`` normalized to [0, 1] (the TFDS / `tf.image.draw_bounding_boxes`
convention) or ``None`` for classification. Random ops take a stateless ``seed`` (a shape-(2,) int
tensor), so a given seed always gives the same result, eagerly or inside `Dataset.map`.

Boxes follow the pixels: a flip mirrors the box, a crop shifts, rescales and clips it, and a random
crop is placed so that it never cuts the object out entirely.

Decoding (`decode`, `decode_random_crop`) lives here too: bytes in, ``(image, box)`` out.

`AUGMENTATIONS` is the registry of the random training ops, by the names accepted by
``pipelines.load(augment=...)``; the pipeline iterates it and knows no op by name.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import tensorflow as tf

from pipelines import fused
from zoo import common, compat

RANDOM_CROP_FRACTION = 0.9  # the seed's random_crop keeps 90% of the shorter side


def tight_box(mask) -> tf.Tensor:
    """The smallest normalized box holding every nonzero pixel of a (H, W) or (H, W, 1) mask."""
    mask = tf.convert_to_tensor(mask)
    if mask.shape.rank == 3:
        mask = mask[..., 0]
    mask = tf.cast(mask, tf.bool)
    height = tf.shape(mask)[0]
    width = tf.shape(mask)[1]
    rows = tf.reduce_any(mask, axis=1)
    cols = tf.reduce_any(mask, axis=0)
    ymin = tf.argmax(tf.cast(rows, tf.int32), output_type=tf.int32)
    ymax = height - tf.argmax(tf.cast(tf.reverse(rows, [0]), tf.int32), output_type=tf.int32)
    xmin = tf.argmax(tf.cast(cols, tf.int32), output_type=tf.int32)
    xmax = width - tf.argmax(tf.cast(tf.reverse(cols, [0]), tf.int32), output_type=tf.int32)
    size = tf.cast(tf.stack([height, width, height, width]), tf.float32)
    return tf.cast(tf.stack([ymin, xmin, ymax, xmax]), tf.float32) / size


def crop_box(box, offset_y, offset_x, crop_height, crop_width, height, width):
    """Express ``box`` (normalized to the full image) in a crop window's coordinates, clipped."""
    if box is None:
        return None
    to_float = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    scale = tf.stack([to_float(height), to_float(width), to_float(height), to_float(width)])
    offset = tf.stack([to_float(offset_y), to_float(offset_x), to_float(offset_y), to_float(offset_x)])
    window = tf.stack([to_float(crop_height), to_float(crop_width), to_float(crop_height), to_float(crop_width)])
    return tf.clip_by_value((box * scale - offset) / window, 0.0, 1.0)


def uncrop_box(box, offset_y, offset_x, crop_height, crop_width, height, width):
    """`crop_box` undone: ``box`` (normalized to a crop window) in the full image's coordinates.
    Boxes of any leading shape, e.g. a batch ``(batch, 4)``."""
    to_float = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    scale = tf.stack([to_float(height), to_float(width), to_float(height), to_float(width)])
    offset = tf.stack([to_float(offset_y), to_float(offset_x), to_float(offset_y), to_float(offset_x)])
    window = tf.stack([to_float(crop_height), to_float(crop_width), to_float(crop_height), to_float(crop_width)])
    return (tf.cast(box, tf.float32) * window + offset) / scale


def central_crop_window(height, width):
    """The seed's `central_crop` window: trim a quarter of the excess of the longer side each way.

    Returns ``(offset_y, offset_x, crop_height, crop_width)``.
    """
    min_dim = tf.minimum(height, width)
    top = (height - min_dim) // 4
    left = (width - min_dim) // 4
    return top, left, height - 2 * top, width - 2 * left


def central_crop(image, box=None):
    """The seed's eval-time crop: towards a square, keeping the middle of the image."""
    shape = tf.shape(image)
    oy, ox, ch, cw = central_crop_window(shape[0], shape[1])
    image = tf.image.crop_to_bounding_box(image, oy, ox, ch, cw)
    return image, crop_box(box, oy, ox, ch, cw, shape[0], shape[1])


def _offset_range(size, crop, box_min, box_max):
    """Offsets in [0, size - crop] for a window of ``crop`` pixels along one axis.

    With a box: offsets whose window holds the whole box when it fits; when the box is longer than
    the window, offsets whose window lies inside the box. Either way the object stays in view.
    """
    lo = tf.zeros_like(size)
    hi = size - crop
    if box_min is None:
        return lo, hi
    fits = box_max - box_min <= crop
    keep_lo = tf.where(fits, tf.maximum(lo, box_max - crop), tf.maximum(lo, box_min))
    keep_hi = tf.where(fits, tf.minimum(hi, box_min), tf.minimum(hi, box_max - crop))
    keep_hi = tf.maximum(keep_hi, keep_lo)
    return keep_lo, keep_hi


def random_crop_window(height, width, seed, box=None, fraction: float = RANDOM_CROP_FRACTION):
    """A square window of ``fraction`` of the shorter side, at a random offset (see `random_crop`).

    Works from the image size alone, so a JPEG can be decoded only inside the window.
    Returns ``(offset_y, offset_x, crop_height, crop_width)`` as int32 scalars.
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    crop = tf.maximum(tf.minimum(height, width) * int(round(fraction * 100)) // 100, 1)
    if box is None:
        y_range = _offset_range(height, crop, None, None)
        x_range = _offset_range(width, crop, None, None)
    else:
        # Pixel extent of the object: floor/ceil so the window covers every pixel it touches.
        ymin = tf.cast(tf.floor(box[0] * tf.cast(height, tf.float32)), tf.int32)
        xmin = tf.cast(tf.floor(box[1] * tf.cast(width, tf.float32)), tf.int32)
        ymax = tf.cast(tf.math.ceil(box[2] * tf.cast(height, tf.float32)), tf.int32)
        xmax = tf.cast(tf.math.ceil(box[3] * tf.cast(width, tf.float32)), tf.int32)
        y_range = _offset_range(height, crop, ymin, ymax)
        x_range = _offset_range(width, crop, xmin, xmax)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    offset_y = tf.random.stateless_uniform([], seeds[0], minval=y_range[0], maxval=y_range[1] + 1, dtype=tf.int32)
    offset_x = tf.random.stateless_uniform([], seeds[1], minval=x_range[0], maxval=x_range[1] + 1, dtype=tf.int32)
    return offset_y, offset_x, crop, crop


def random_crop(image, box=None, *, seed, fraction: float = RANDOM_CROP_FRACTION):
    """The seed's training crop: a square of 90% of the shorter side at a random position.

    With a box, the window is placed so the object stays in view (whole, when it fits).
    """
    shape = tf.shape(image)
    oy, ox, ch, cw = random_crop_window(shape[0], shape[1], seed, box, fraction)
    image = tf.image.crop_to_bounding_box(image, oy, ox, ch, cw)
    return image, crop_box(box, oy, ox, ch, cw, shape[0], shape[1])


def flip_decision(seed) -> tf.Tensor:
    """The coin `random_flip` tosses for ``seed``: a bool scalar, True for half the seeds."""
    return tf.random.stateless_uniform([], tf.cast(seed, tf.int64)) < 0.5


def mirror_box(box, flip):
    """``box`` mirrored left-right where ``flip`` (a bool tensor); None stays None."""
    if box is None:
        return None
    mirrored = tf.stack([box[0], 1.0 - box[3], box[2], 1.0 - box[1]])
    return tf.where(flip, mirrored, box)


def mirror_image(image, flip):
    """``image`` mirrored left-right where ``flip`` (a bool tensor)."""
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def random_flip(image, box=None, *, seed):
    """Mirror left-right with probability 1/2; the box is mirrored with the pixels."""
    flip = flip_decision(seed)
    return mirror_image(image, flip), mirror_box(box, flip)


def resize(image, box=None, *, size, flip=None):
    """Resize to ``size`` = (height, width), float32 out; mirror too where ``flip`` (bool tensor).

    Normalized boxes are unchanged by the resize and mirrored with the pixels. A uint8 image goes
    through `pipelines.fused.resize_flip` (one pass when the fused kernel is built); others
    through `tf.image.resize` (then `tf.reverse`).
    """
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        image = fused.resize_flip(image, size, False if flip is None else flip)
    else:
        image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=False)
        if flip is not None:
            image = mirror_image(image, flip)
    return image, (box if flip is None else mirror_box(box, flip))


# ---------------------------------------------------------------------------------------------
# decoding


def decode(encoded, channels: int, jpeg: bool = False) -> tf.Tensor:
    """Decode JPEG/PNG/GIF/BMP bytes (first frame of a GIF) to uint8 (H, W, channels).

    ``jpeg=True`` promises JPEG bytes: the JPEG decoder is called directly (libjpeg converts
    gray/RGB/CMYK to ``channels`` itself), with no branch on the format.
    """
    if jpeg:
        return tf.ensure_shape(tf.io.decode_jpeg(encoded, channels=channels), [None, None, channels])
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False, dtype=tf.uint8)
    return to_channels(image, channels)


def to_channels(image, channels: int) -> tf.Tensor:
    """Gray, gray+alpha, RGB or RGBA -> ``channels`` (1 or 3), alpha dropped."""
    have = tf.shape(image)[-1]
    image = tf.cond(tf.logical_or(tf.equal(have, 2), tf.equal(have, 4)), lambda: image[..., :-1], lambda: image)
    have = tf.shape(image)[-1]
    if channels == 3:
        image = tf.cond(tf.equal(have, 1), lambda: tf.image.grayscale_to_rgb(image), lambda: image)
    else:
        image = tf.cond(tf.equal(have, 3), lambda: tf.image.rgb_to_grayscale(image), lambda: image)
    return tf.ensure_shape(image, [None, None, channels])


def decode_random_crop(encoded, box, seed, channels: int, jpeg: bool = False, window=None):
    """Decode and random-crop in one step: a JPEG is decoded only inside the crop window.

    ``window`` is a crop op's window function (default: `random_crop_window`). Returns
    ``(image, box)`` as ``random_crop(decode(encoded), box)`` would: the same window and box, and
    the same pixels but for JPEG chroma upsampling along the window's border. ``jpeg=True``
    promises JPEG bytes and skips the per-image format branch.
    """
    window = window or random_crop_window

    def jpeg_window():
        shape = tf.image.extract_jpeg_shape(encoded)
        offsets = window(shape[0], shape[1], seed, box)
        # libjpeg converts gray/RGB/CMYK to the requested channels itself.
        image = tf.image.decode_and_crop_jpeg(encoded, tf.stack(offsets), channels=channels)
        return tf.ensure_shape(image, [None, None, channels]), tf.stack(offsets), shape[:2]

    def other():
        image = decode(encoded, channels)
        shape = tf.shape(image)
        offsets = window(shape[0], shape[1], seed, box)
        image = tf.image.crop_to_bounding_box(image, *offsets)
        return image, tf.stack(offsets), shape[:2]

    if jpeg:
        image, offsets, shape = jpeg_window()
    else:
        image, offsets, shape = tf.cond(tf.io.is_jpeg(encoded), jpeg_window, other)
    return image, crop_box(box, offsets[0], offsets[1], offsets[2], offsets[3], shape[0], shape[1])


# ---------------------------------------------------------------------------------------------
# the augmentation registry


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """A random training op, registered in `AUGMENTATIONS` under its name.

    apply: ``(image, box, *, seed) -> (image, box)``, the op itself.
    window: for crops, ``(height, width, seed, box) -> (offset_y, offset_x, height, width)``: the
      pipeline then decodes only that window of a JPEG, and evaluation takes the central crop
      (`crops_at_evaluation`).
    mirror: for flips, ``seed -> bool tensor``: the pipeline mirrors in the resize's own pass.
    Ops with neither run after the resize, on float32 pixels, in the order they are given.
    layer: for the policies, ``(strength, seed, dtype) -> Keras preprocessing layer``, and then ``apply``
      is None: `policy_batches` runs them on whole batches, after the per-image ops (see there).
    mixes_labels: the op mixes two examples (mixup, cutmix), so labels become class probabilities.
    boxes: the op keeps a box right (moves it with the pixels, or moves no pixels): a localize
      task accepts only such ops.
    """

    name: str
    apply: Callable | None
    window: Callable | None = None
    mirror: Callable | None = None
    layer: Callable | None = None
    mixes_labels: bool = False
    boxes: bool = True

    @property
    def stream(self) -> int:
        """The op's random stream, fixed by its name alone: registering another op (or reordering
        the registry) never changes what an existing op draws for a seeded run."""
        return zlib.crc32(self.name.encode()) & 0x7FFFFFFF

    def seed(self, element_seed) -> tf.Tensor:
        """This op's stateless seed for an element's seed."""
        return tf.random.experimental.stateless_fold_in(tf.cast(element_seed, tf.int64), self.stream)


def _randaugment(magnitude: float, seed, dtype):
    import keras

    return keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=magnitude, seed=seed, dtype=dtype)


def _erase(probability: float, seed, dtype):
    import keras

    # A (p, p) factor erases with probability p exactly (a single float would draw it from [0, p]);
    # the erased patch gets Gaussian noise, as timm's default "pixel" mode.
    return keras.layers.RandomErasing(factor=(probability, probability), value_range=(0, 255), seed=seed, dtype=dtype)


def _mixup(alpha: float, seed, dtype):
    import keras

    return keras.layers.MixUp(alpha=alpha, seed=seed, dtype=dtype)


def _cutmix(alpha: float, seed, dtype):
    import keras

    return keras.layers.CutMix(factor=alpha, seed=seed, dtype=dtype)


AUGMENTATIONS: dict[str, Augmentation] = {
    op.name: op
    for op in (
        Augmentation("crop", random_crop, window=random_crop_window),
        Augmentation("flip", random_flip, mirror=flip_decision),
        Augmentation("randaugment", None, layer=_randaugment, boxes=False),
        Augmentation("erase", None, layer=_erase),
        Augmentation("mixup", None, layer=_mixup, mixes_labels=True, boxes=False),
        Augmentation("cutmix", None, layer=_cutmix, mixes_labels=True, boxes=False),
    )
}
# The names are the shared vocabulary's (flags and configs check against it without TensorFlow).
if tuple(AUGMENTATIONS) != common.AUGMENTATIONS:
    raise ImportError(f"pipelines.ops registers {tuple(AUGMENTATIONS)}, zoo.common names {common.AUGMENTATIONS}")


if tuple(n for n, op in AUGMENTATIONS.items() if op.mixes_labels) != common.MIXING_AUGMENTATIONS:
    raise ImportError(f"pipelines.ops mixes labels in other ops than zoo.common's {common.MIXING_AUGMENTATIONS}")
if tuple(n for n, op in AUGMENTATIONS.items() if op.boxes) != common.BOX_AUGMENTATIONS:
    raise ImportError(f"pipelines.ops keeps boxes in other ops than zoo.common's {common.BOX_AUGMENTATIONS}")


def policy_batches(
    dataset: tf.data.Dataset,
    policies,
    strengths: dict[str, float],
    seed: int | None,
    num_classes: int,
    *,
    first_batch: int = 0,
    shard: int = 0,
) -> tf.data.Dataset:
    """``dataset``'s batches of ``(image, label)`` through the policies (Keras's layers); a
    localize batch's ``{"class", "bbox"}`` labels pass through (no policy for it moves pixels).

    RandAugment runs per image (Keras's layer would give a whole batch the same two ops), computing
    only the two ops it drew (`zoo.compat.randaugment_image`: the layer's own pixels, 10x faster at
    224 px, BUILD.md); random erasing per batch (its layer draws per image). MixUp and CutMix mix
    within a batch; with both, each batch gets one of them, at even odds (timm's
    ``--mixup-switch-prob`` 0.5). Mixing turns the labels into class probabilities (float32,
    ``num_classes`` wide), which the class loss and accuracy of `trainers.metrics` accept beside
    class ids.

    Keras's layers draw from their own generators, not from the per-element stateless seeds that
    crop and flip use (their ``get_random_transformation`` accepts no tensor seed:
    `zoo.compat.KERAS_LAYER_SEEDS`). So each batch first sets every generator of the layers
    (`zoo.compat.seed_generator_states`) from words drawn for that batch: batch ``i`` of a pass
    draws the same policies whatever ran before it in the process, and a stream started at
    ``first_batch`` (a resumed run) draws what the whole stream drew there. The words come from a
    ``Dataset.random`` that draws anew each time the dataset is read (a stream read once a pass
    gets other policies each pass), skipped to ``first_batch``; ``shard`` (the input pipeline)
    gives each pipeline its own.
    """

    def stream(op):
        return None if seed is None else (int(seed) * 7919 + op.stream + 104729 * shard) % 2**31

    # float32 pixels and label probabilities, whatever the model computes in: under the global mixed
    # precision policy (the trainer sets mixed_bfloat16 on CPUs with bfloat16 instructions before it
    # builds the pipeline) the layers would cast their inputs to bfloat16, and MixUp failed mixing
    # them with its float32 weights.
    layers = {op.name: op.layer(strengths[op.name], stream(op), dtype="float32") for op in policies}
    mixers = [op.name for op in policies if op.mixes_labels]
    states = [state for layer in layers.values() for state in compat.seed_generator_states(layer)]

    def apply(images, labels, words):
        # Each batch starts every generator afresh from its word (before the layers draw: the map's
        # function orders the ops on a variable as written).
        for index, state in enumerate(states):
            compat.reset_seed_generator(state, words[index])
        if "randaugment" in layers:
            randaugment = layers["randaugment"]
            images = tf.map_fn(lambda image: compat.randaugment_image(randaugment, image), images)
        if "erase" in layers:
            images = tf.clip_by_value(layers["erase"](images, training=True), 0.0, 255.0)
        if not mixers or isinstance(labels, dict):
            return images, labels
        soft = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes, dtype=tf.float32)

        def mix(name):
            mixed = layers[name]({"images": images, "labels": soft}, training=True)
            return tf.cast(mixed["images"], tf.float32), tf.cast(mixed["labels"], tf.float32)

        if len(mixers) == 1:
            return mix(mixers[0])
        coin = tf.random.stateless_uniform([], words[-2:]) < 0.5  # a stateless coin per batch
        return tf.cond(coin, lambda: mix(mixers[0]), lambda: mix(mixers[1]))

    words = tf.data.Dataset.random(seed=stream(AUGMENTATIONS["cutmix"]), rerandomize_each_iteration=True)
    words = words.batch(len(states) + 2).skip(first_batch)
    return tf.data.Dataset.zip((dataset, words)).map(lambda batch, drawn: apply(*batch, drawn))


def crops_at_evaluation(augment) -> bool:
    """Whether evaluation central-crops for a model trained with ``augment``: the seed's recipe,
    where training's random crops are matched by a central crop at test time."""
    return any(AUGMENTATIONS[name].window is not None for name in augment if name in AUGMENTATIONS)
