"""The built-in sets: ``shapes`` (a shape on a cluttered background, class and tight box) and
``synthetic`` (one batch of noise, repeated: speed measurements without an input pipeline)."""

from __future__ import annotations

import tensorflow as tf

from pipelines import shapes
from pipelines.errors import DataError
from pipelines.sources.base import Source, absolute_ranges

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


# ------------------------------------------------------------------------------------- synthetic

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
