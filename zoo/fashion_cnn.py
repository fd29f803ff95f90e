"""The Fashion-MNIST CNN of Hands-On ML chapter 14, as a functional model."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from zoo.common import MIN_IMAGE_SIZE, positive_ints
from zoo.registry import Backbone, register


def search_space(hp) -> dict:
    """Filter widths (the stem's, doubled at each block), dense sizes (halved at the second layer)
    and the dropout rate."""
    width = hp.Choice("filters", [16, 32, 64], default=64)
    units = hp.Choice("dense_units", [32, 64, 128], default=128)
    return {
        "filters": (width, 2 * width, 4 * width),
        "dense_units": (units, units // 2),
        "dropout": round(hp.Float("dropout", 0.0, 0.6, step=0.1, default=0.5), 2),
    }


@register("fashion_cnn", min_size=MIN_IMAGE_SIZE, search_space=search_space)
def fashion_cnn(
    input_shape,
    *,
    num_classes: int,
    weights=None,
    filters: Sequence[int] = (64, 128, 256),
    dense_units: Sequence[int] = (128, 64),
    dropout: float = 0.5,
) -> Backbone:
    """Small CNN: 7x7 conv, then blocks of two 3x3 convs, each followed by 2x2 max pooling.

    Pixels are standardized per position by a `Normalization` layer that starts as plain [0, 1]
    scaling and is meant to be adapted on training images (`zoo.adapt_normalization`), the seed's
    ``(X - X_train.mean(axis=0)) / X_train.std(axis=0)`` carried inside the model.

    Options:
      filters: width of the 7x7 stem, then of each block of two 3x3 convs (one pooling each).
      dense_units: widths of the ReLU dense layers after flattening, each followed by dropout.
      dropout: dropout rate after each dense layer, in [0, 1).
    """
    filters = positive_ints("filters", filters)
    dense_units = positive_ints("dense_units", dense_units, allow_empty=True)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), received {dropout!r}")
    min_size = 2 ** len(filters)
    if min(input_shape[:2]) < min_size:
        raise ValueError(
            f"fashion_cnn with {len(filters)} pooling stages needs images of at least "
            f"{min_size}x{min_size} pixels, received input_shape={tuple(input_shape)}"
        )

    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    # float32 whatever the precision policy: dividing by a small std, and Keras's `adapt` cannot sum
    # bfloat16 batch statistics into its float32 ones (it fails under mixed_bfloat16).
    x = layers.Normalization(axis=(1, 2, 3), name="standardize", dtype="float32")(x)
    conv = dict(padding="same", activation="relu")
    x = layers.Conv2D(filters[0], 7, name="stem_conv", **conv)(x)
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for block, width in enumerate(filters[1:], start=1):
        x = layers.Conv2D(width, 3, name=f"block{block}_conv1", **conv)(x)
        x = layers.Conv2D(width, 3, name=f"block{block}_conv2", **conv)(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    return Backbone(keras.Model(inputs, x, name="backbone"))
