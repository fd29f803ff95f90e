"""Hand-made convolution filters and pooling, the way chapter 14 opens: plain `tf.nn` ops."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.common import is_int, positive_int

PADDINGS = ("SAME", "VALID")
# The window of the chapter's photos that its figures zoom on and pool: rows 150-219, columns
# 130-249 (``images[:, 150:220, 130:250]``), a 70x120 piece of each 427x640 photo.
CHAPTER_WINDOW = (slice(150, 220), slice(130, 250))


def line_filters(size: int = 7, channels: int = 3) -> np.ndarray:
    """Two filters of shape (size, size, channels, 2): a vertical line, then a horizontal line.

    Each is ones along its central column (vertical) or row (horizontal) and zeros elsewhere, so a
    convolution with it highlights vertical or horizontal white lines and blurs the rest.
    """
    if not is_int(size) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, received {size!r}")
    positive_int("channels", channels)
    filters = np.zeros((size, size, channels, 2), dtype=np.float32)
    filters[:, size // 2, :, 0] = 1  # vertical line
    filters[size // 2, :, :, 1] = 1  # horizontal line
    return filters


def apply_filters(images, filters, strides: int = 1, padding: str = "SAME") -> tf.Tensor:
    """Convolve a batch of images (batch, H, W, C) with filters (kh, kw, C, N) via `tf.nn.conv2d`."""
    padding = str(padding).upper()
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, received {padding!r}")
    positive_int("strides", strides)
    images = tf.convert_to_tensor(images, tf.float32)
    filters = tf.convert_to_tensor(filters, tf.float32)
    if images.shape.rank != 4 or filters.shape.rank != 4 or images.shape[-1] != filters.shape[2]:
        raise ValueError(
            f"images must be (batch, H, W, C) and filters (kh, kw, C, N) with the same C, "
            f"received images {tuple(images.shape)} and filters {tuple(filters.shape)}"
        )
    return tf.nn.conv2d(images, filters, strides=strides, padding=padding)


def window_of(height: int, width: int) -> tuple[slice, slice]:
    """The window to zoom on in an image of ``height`` x ``width``: the chapter's (`CHAPTER_WINDOW`)
    where the image holds it, else the middle third each way."""
    rows, columns = CHAPTER_WINDOW
    if height >= rows.stop and width >= columns.stop:
        return CHAPTER_WINDOW
    return slice(height // 3, max(2 * height // 3, height // 3 + 1)), slice(
        width // 3, max(2 * width // 3, width // 3 + 1)
    )


def depthwise_max_pool(images, pool_size: int) -> tf.Tensor:
    """Max over groups of ``pool_size`` consecutive channels (the book's depthwise pooling; its
    notebook does not draw it).

    Keras has no layer for it; the channel count must be a multiple of ``pool_size``.
    """
    images = tf.convert_to_tensor(images)
    channels = images.shape[-1]
    if not is_int(pool_size) or pool_size < 1 or channels % pool_size:
        raise ValueError(
            f"pool_size must be a positive divisor of the channel count {channels}, received {pool_size!r}"
        )
    groups = tf.reshape(images, tf.concat([tf.shape(images)[:-1], [channels // pool_size, pool_size]], 0))
    return tf.reduce_max(groups, axis=-1)
