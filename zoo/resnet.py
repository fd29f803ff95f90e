"""ResNet-18 and ResNet-34 built from `ResidualUnit`s (He et al., 2015)."""

from __future__ import annotations

import keras
from keras import layers

from zoo.common import positive_ints
from zoo.layers import ResidualUnit
from zoo.registry import Backbone, register

STAGE_WIDTHS = (64, 128, 256, 512)


def search_space(hp) -> dict:
    """Depth (ResNet-18 or ResNet-34) and the width of the first stage (doubled at each stage)."""
    width = hp.Choice("base_width", [16, 32, 64], default=64)
    return {"model": f"resnet{hp.Choice('depth', [18, 34])}", "widths": tuple(width * 2**i for i in range(4))}


def _resnet(input_shape, units_per_stage, widths, name, drop_path: float = 0.0) -> Backbone:
    widths = positive_ints("widths", widths)
    if len(widths) != len(units_per_stage):
        raise ValueError(f"widths must give one width per stage ({len(units_per_stage)}), received {widths!r}")
    if isinstance(drop_path, bool) or not isinstance(drop_path, (int, float)) or not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be a number in [0, 1), received {drop_path!r}")
    # Stochastic depth grows linearly with depth, to drop_path at the last unit (timm's rule).
    total = sum(units_per_stage)
    rates = [drop_path * index / max(total - 1, 1) for index in range(total)]
    inputs = keras.Input(shape=input_shape, name="pixels")
    # BatchNormalization right after the stem makes a finer input standardization unnecessary.
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = layers.Conv2D(widths[0], 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (units, width) in enumerate(zip(units_per_stage, widths), start=1):
        for unit in range(1, units + 1):
            strides = 2 if unit == 1 and stage > 1 else 1
            x = ResidualUnit(width, strides=strides, drop_rate=rates.pop(0), name=f"stage{stage}_unit{unit}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return Backbone(keras.Model(inputs, x, name="backbone"))


@register("resnet18", min_size=32, search_space=search_space)
def resnet18(input_shape, *, num_classes: int, weights=None, widths=STAGE_WIDTHS, drop_path=0.0) -> Backbone:
    """ResNet-18: 7x7/2 stem, max pool, residual units 2-2-2-2, global average pooling.

    Options:
      widths: filters of the four stages (the stem uses the first).
      drop_path: stochastic depth, the rate at the last residual unit (0 at the first, linear in
        between); 0 (default) for none.
    """
    return _resnet(input_shape, (2, 2, 2, 2), widths, "resnet18", drop_path)


@register("resnet34", min_size=32, search_space=search_space)
def resnet34(input_shape, *, num_classes: int, weights=None, widths=STAGE_WIDTHS, drop_path=0.0) -> Backbone:
    """ResNet-34: 7x7/2 stem, max pool, residual units 3-4-6-3, global average pooling.

    Options:
      widths: filters of the four stages (the stem uses the first).
      drop_path: stochastic depth, the rate at the last residual unit (0 at the first, linear in
        between); 0 (default) for none.
    """
    return _resnet(input_shape, (3, 4, 6, 3), widths, "resnet34", drop_path)
