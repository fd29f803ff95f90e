"""Keras Applications networks, wrapped like every other zoo model (raw pixels in, own scaling)."""

from __future__ import annotations

import keras
from keras import layers

from zoo.layers import ImageNetPreprocessing
from zoo.registry import Backbone, register

IMAGENET_CLASSES = 1000


@register(
    "xception",
    min_size=71,
    channels=(3,),
    pretrained=True,
    unfreeze_points=("block12_sepconv1", "block13_sepconv1", "block14_sepconv1"),
)
def xception(input_shape, *, num_classes: int, weights=None) -> Backbone:
    """Xception base (keras.applications, no top) + global average pooling, for transfer learning.

    The base's layers sit directly in the backbone model, so a trainer can freeze all of it
    (`zoo.freeze_backbone`) and later unfreeze it whole or from a named layer on
    (`zoo.unfreeze_backbone(model, from_layer="block14_sepconv1")`).
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    # xception.preprocess_input, as a real layer: [0, 255] -> [-1, 1].
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    base = keras.applications.Xception(
        include_top=False, weights=weights, input_tensor=x, input_shape=tuple(input_shape)
    )
    features = layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    return Backbone(keras.Model(inputs, features, name="backbone"))


@register(
    "resnet50",
    min_size=32,
    channels=(3,),
    pretrained=True,
    unfreeze_points=("conv4_block1_1_conv", "conv5_block1_1_conv", "conv5_block3_1_conv"),
)
def resnet50(input_shape, *, num_classes: int, weights=None, imagenet_top="auto") -> Backbone:
    """ResNet-50 (keras.applications) for pretrained ImageNet prediction or transfer learning.

    Options:
      imagenet_top: True to keep the pretrained 1000-class classifier as the "class" head, False
        to start a fresh head, "auto" (default) keeps it when weights are given and
        num_classes == 1000. With the top, a weights file must be the Keras file *with* the top
        (``resnet50_weights_tf_dim_ordering_tf_kernels.h5``), and "imagenet" needs 224x224x3 images.
    """
    if imagenet_top not in (True, False, "auto"):
        raise ValueError(f"imagenet_top must be True, False or 'auto', received {imagenet_top!r}")
    if imagenet_top == "auto":
        imagenet_top = weights is not None and num_classes == IMAGENET_CLASSES
    if imagenet_top and num_classes != IMAGENET_CLASSES:
        raise ValueError(f"imagenet_top=True needs num_classes={IMAGENET_CLASSES}, received {num_classes}")
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = ImageNetPreprocessing("caffe", name="preprocess")(inputs)
    base = keras.applications.ResNet50(
        include_top=imagenet_top,
        weights=weights,
        input_tensor=x,
        input_shape=tuple(input_shape),
        pooling="avg",
    )
    top = None
    if imagenet_top:
        features = base.get_layer("avg_pool").output
        top = base.get_layer("predictions").get_weights()
    else:
        features = base.output
    return Backbone(keras.Model(inputs, features, name="backbone"), top=top)
