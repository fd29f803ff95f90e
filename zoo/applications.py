"""Keras Applications networks, wrapped like every other zoo model (raw pixels in, own scaling)."""

from __future__ import annotations

import warnings

import keras
from keras import layers

from zoo.common import error_line
from zoo.layers import ImageNetPreprocessing
from zoo.registry import ZOO_WEIGHTS_SUFFIX, Backbone, register

IMAGENET_CLASSES = 1000


def _keeps_top(imagenet_top, weights, num_classes: int) -> bool:
    if imagenet_top not in (True, False, "auto"):
        raise ValueError(f"imagenet_top must be True, False or 'auto', received {imagenet_top!r}")
    if imagenet_top == "auto":
        return weights is not None and num_classes == IMAGENET_CLASSES
    if imagenet_top and num_classes != IMAGENET_CLASSES:
        raise ValueError(f"imagenet_top=True needs num_classes={IMAGENET_CLASSES}, received {num_classes}")
    return imagenet_top


def _application(application, x, input_shape, *, weights, include_top: bool, pooling=None):
    """``application`` (a `keras.applications` constructor) on the tensor ``x``, its weights from
    ``weights``: None, "imagenet", the legacy ``.h5`` that Keras downloads (Keras loads those), or
    the ``.weights.h5`` of a plain application model (`_load_plain_weights`)."""
    native = isinstance(weights, str) and weights.endswith(ZOO_WEIGHTS_SUFFIX)
    base = application(
        include_top=include_top,
        weights=None if native else weights,
        input_tensor=x,
        input_shape=tuple(input_shape),
        pooling=pooling,
    )
    if native:
        _load_plain_weights(base, application, weights, include_top)
    return base


def _load_plain_weights(base, application, path: str, include_top: bool) -> None:
    """Copy into ``base``, layer by layer (their names are the application's), the weights of
    ``path``, a Keras 3 file saved by a plain ``application(...)`` model with or without its top.

    Keras 3 reads such a file only into a model of the same structure, and the zoo's base has a
    scaling layer in front of it, so the file is read into a plain model first. ValueError in one
    line when the file fits neither, or has no top where the 1000-class prediction needs one.
    """
    problems = []
    for with_top in (True, False):
        plain = application(include_top=with_top, weights=None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras warns per layer before it raises
                plain.load_weights(path)
        except Exception as error:  # Keras raises several types for a mismatched file
            problems.append(error_line(error)[:200])
            continue
        if include_top and not with_top:
            raise ValueError(
                f"weights file {path!r} is a plain {application.__name__} without its top; the "
                f"{IMAGENET_CLASSES}-class ImageNet classifier needs the file saved with include_top=True"
            )
        names = {layer.name for layer in base.layers}
        for layer in plain.layers:
            if layer.weights and layer.name in names:
                base.get_layer(layer.name).set_weights(layer.get_weights())
        return
    raise ValueError(
        f"weights file {path!r} was not saved by a plain keras.applications.{application.__name__} "
        f"(with or without its top), nor by this zoo model: {problems[-1]}"
    )


def _backbone(inputs, base, include_top: bool) -> Backbone:
    if include_top:  # the pretrained classifier becomes the "class" head
        return Backbone(
            keras.Model(inputs, base.get_layer("avg_pool").output, name="backbone"),
            top=base.get_layer("predictions").get_weights(),
        )
    return Backbone(keras.Model(inputs, base.output, name="backbone"))


@register(
    "xception",
    min_size=71,
    channels=(3,),
    pretrained=True,
    unfreeze_points=("block12_sepconv1", "block13_sepconv1", "block14_sepconv1"),
)
def xception(input_shape, *, num_classes: int, weights=None, imagenet_top="auto") -> Backbone:
    """Xception (keras.applications) + global average pooling, for transfer learning and for
    pretrained ImageNet prediction.

    The base's layers sit directly in the backbone model, so a trainer can freeze all of it
    (`zoo.freeze_backbone`) and later unfreeze it whole or from a named layer on
    (`zoo.unfreeze_backbone(model, from_layer="block14_sepconv1")`).

    Options:
      imagenet_top: as for resnet50: keep the pretrained 1000-class classifier as the "class"
        head (True; "auto", the default, keeps it when weights are given and num_classes ==
        1000); "imagenet" with the top needs 299x299x3 images.
    """
    include_top = _keeps_top(imagenet_top, weights, num_classes)
    inputs = keras.Input(shape=input_shape, name="pixels")
    # xception.preprocess_input, as a real layer: [0, 255] -> [-1, 1].
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    base = _application(keras.applications.Xception, x, input_shape, weights=weights, include_top=include_top)
    if include_top:
        return _backbone(inputs, base, include_top=True)
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
        num_classes == 1000. With the top, a weights file must hold the top
        (``resnet50_weights_tf_dim_ordering_tf_kernels.h5``, or ``save_weights`` of a plain
        ``ResNet50()``), and "imagenet" needs 224x224x3 images.
    """
    include_top = _keeps_top(imagenet_top, weights, num_classes)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = ImageNetPreprocessing("caffe", name="preprocess")(inputs)
    base = _application(
        keras.applications.ResNet50, x, input_shape, weights=weights, include_top=include_top, pooling="avg"
    )
    return _backbone(inputs, base, include_top)
