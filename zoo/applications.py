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
    native_size=299,
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
    native_size=224,
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


# ---------------------------------------------------------------------------------------------
# every other image classifier of keras.applications, by its class name in lower case

# (class name in keras.applications, the input scaling it expects: an `ImageNetPreprocessing` mode,
# or None where the network scales [0, 255] pixels itself (EfficientNet, EfficientNetV2,
# ConvNeXt, MobileNetV3); its native input side; the smallest side it takes; the parameters of
# its base without the top (global average pooling, any input size); and the layers fine-tuning
# may start from, about 1/2, 3/4 and 9/10 of the way through its convolutions (named layers only:
# Inception's convolutions have counter names, so its "mixed" blocks are used)). Measured by
# building each (`tests/test_zoo_applications.py` checks every row against Keras).
APPLICATIONS = (
    (
        "ConvNeXtBase",
        None,
        224,
        32,
        87_566_464,
        (
            "convnext_base_stage_2_block_12_depthwise_conv",
            "convnext_base_stage_2_block_21_depthwise_conv",
            "convnext_base_stage_2_block_26_depthwise_conv",
        ),
    ),
    (
        "ConvNeXtLarge",
        None,
        224,
        32,
        196_230_336,
        (
            "convnext_large_stage_2_block_12_depthwise_conv",
            "convnext_large_stage_2_block_21_depthwise_conv",
            "convnext_large_stage_2_block_26_depthwise_conv",
        ),
    ),
    (
        "ConvNeXtSmall",
        None,
        224,
        32,
        49_454_688,
        (
            "convnext_small_stage_2_block_12_depthwise_conv",
            "convnext_small_stage_2_block_21_depthwise_conv",
            "convnext_small_stage_2_block_26_depthwise_conv",
        ),
    ),
    (
        "ConvNeXtTiny",
        None,
        224,
        32,
        27_820_128,
        (
            "convnext_tiny_stage_2_block_3_depthwise_conv",
            "convnext_tiny_stage_2_block_7_depthwise_conv",
            "convnext_tiny_stage_3_block_1_depthwise_conv",
        ),
    ),
    (
        "ConvNeXtXLarge",
        None,
        224,
        32,
        348_147_968,
        (
            "convnext_xlarge_stage_2_block_12_depthwise_conv",
            "convnext_xlarge_stage_2_block_21_depthwise_conv",
            "convnext_xlarge_stage_2_block_26_depthwise_conv",
        ),
    ),
    (
        "DenseNet121",
        "torch",
        224,
        32,
        7_037_504,
        ("conv4_block11_2_conv", "conv5_block2_1_conv", "conv5_block11_1_conv"),
    ),
    (
        "DenseNet169",
        "torch",
        224,
        32,
        12_642_880,
        ("conv4_block23_2_conv", "conv5_block12_1_conv", "conv5_block24_2_conv"),
    ),
    (
        "DenseNet201",
        "torch",
        224,
        32,
        18_321_984,
        ("conv4_block31_2_conv", "conv5_block8_1_conv", "conv5_block23_1_conv"),
    ),
    ("EfficientNetB0", None, 224, 32, 4_049_571, ("block5a_expand_conv", "block6b_expand_conv", "block6d_se_reduce")),
    ("EfficientNetB1", None, 240, 32, 6_575_239, ("block4d_se_expand", "block6b_se_reduce", "block6e_project_conv")),
    ("EfficientNetB2", None, 260, 32, 7_768_569, ("block4d_se_expand", "block6b_se_reduce", "block6e_project_conv")),
    ("EfficientNetB3", None, 300, 32, 10_783_535, ("block5a_dwconv", "block6b_se_expand", "block6f_se_expand")),
    ("EfficientNetB4", None, 380, 32, 17_673_823, ("block5a_dwconv", "block6c_dwconv", "block6h_expand_conv")),
    ("EfficientNetB5", None, 456, 32, 28_513_527, ("block4g_project_conv", "block6c_se_reduce", "block6i_dwconv")),
    ("EfficientNetB6", None, 528, 32, 40_960_143, ("block4h_project_conv", "block6d_expand_conv", "block6j_se_expand")),
    ("EfficientNetB7", None, 600, 32, 64_097_687, ("block4j_project_conv", "block6d_se_reduce", "block6l_se_expand")),
    ("EfficientNetV2B0", None, 224, 32, 5_919_312, ("block5e_expand_conv", "block6d_se_expand", "block6g_dwconv2")),
    (
        "EfficientNetV2B1",
        None,
        240,
        32,
        6_931_124,
        ("block5e_expand_conv", "block6d_se_expand", "block6g_project_conv"),
    ),
    ("EfficientNetV2B2", None, 260, 32, 8_769_374, ("block5e_se_expand", "block6e_se_reduce", "block6h_project_conv")),
    ("EfficientNetV2B3", None, 300, 32, 12_930_622, ("block5f_se_expand", "block6f_se_reduce", "block6j_se_reduce")),
    ("EfficientNetV2L", None, 480, 32, 117_746_848, ("block5r_dwconv2", "block6p_dwconv2", "block7a_se_reduce")),
    ("EfficientNetV2M", None, 480, 32, 53_150_388, ("block5m_se_expand", "block6k_project_conv", "block7a_dwconv2")),
    ("EfficientNetV2S", None, 384, 32, 20_331_360, ("block5h_dwconv2", "block6g_se_expand", "block6l_project_conv")),
    ("InceptionResNetV2", "tf", 299, 75, 54_336_736, ("mixed_6a", "block17_10_mixed", "mixed_7a")),
    ("InceptionV3", "tf", 299, 75, 21_802_784, ("mixed5", "mixed7", "mixed9")),
    ("MobileNet", "tf", 224, 32, 3_228_864, ("conv_dw_7", "conv_pw_10", "conv_pw_12")),
    ("MobileNetV2", "tf", 224, 32, 2_257_984, ("block_8_project", "block_13_expand", "block_15_depthwise")),
    (
        "MobileNetV3Large",
        None,
        224,
        32,
        2_996_352,
        ("expanded_conv_8_depthwise", "expanded_conv_12_expand", "expanded_conv_13_project"),
    ),
    (
        "MobileNetV3Small",
        None,
        224,
        32,
        939_120,
        ("expanded_conv_6_expand", "expanded_conv_8_squeeze_excite_conv_1", "expanded_conv_10_expand"),
    ),
    ("NASNetLarge", "tf", 331, 32, 84_916_818, ("normal_conv_1_8", "adjust_conv_2_13", "normal_conv_1_16")),
    ("NASNetMobile", "tf", 224, 32, 4_269_716, ("normal_conv_1_5", "adjust_conv_1_9", "adjust_conv_projection_11")),
    (
        "ResNet101",
        "caffe",
        224,
        32,
        42_658_176,
        ("conv4_block10_1_conv", "conv4_block18_3_conv", "conv4_block23_3_conv"),
    ),
    (
        "ResNet101V2",
        "tf",
        224,
        32,
        42_626_560,
        ("conv4_block10_1_conv", "conv4_block18_3_conv", "conv4_block23_3_conv"),
    ),
    (
        "ResNet152",
        "caffe",
        224,
        32,
        58_370_944,
        ("conv4_block14_2_conv", "conv4_block27_2_conv", "conv4_block35_1_conv"),
    ),
    (
        "ResNet152V2",
        "tf",
        224,
        32,
        58_331_648,
        ("conv4_block14_2_conv", "conv4_block27_2_conv", "conv4_block35_1_conv"),
    ),
    ("ResNet50V2", "tf", 224, 32, 23_564_800, ("conv4_block1_0_conv", "conv4_block5_3_conv", "conv5_block2_1_conv")),
    ("VGG16", "caffe", 224, 32, 14_714_688, ("block3_conv3", "block4_conv3", "block5_conv2")),
    ("VGG19", "caffe", 224, 32, 20_024_384, ("block4_conv1", "block5_conv1", "block5_conv3")),
)


def table_names() -> tuple[str, ...]:
    """The zoo names of `APPLICATIONS`' rows (the rest have builders of their own)."""
    return tuple(class_name.lower() for class_name, *_ in APPLICATIONS)


def _application_builder(class_name: str, preprocessing: str | None):
    def builder(input_shape, *, num_classes: int, weights=None) -> Backbone:
        del num_classes  # the head is the registry's
        inputs = keras.Input(shape=input_shape, name="pixels")
        x = ImageNetPreprocessing(preprocessing, name="preprocess")(inputs) if preprocessing else inputs
        application = getattr(keras.applications, class_name)
        base = _application(application, x, input_shape, weights=weights, include_top=False, pooling="avg")
        return Backbone(keras.Model(inputs, base.output, name="backbone"))

    scaling = f"input scaled as {preprocessing!r}" if preprocessing else "its own input scaling"
    builder.__doc__ = f"{class_name} (keras.applications, {scaling}) + global average pooling."
    builder.__name__ = builder.__qualname__ = class_name.lower()
    return builder


for _class_name, _preprocessing, _native, _smallest, _parameters, _points in APPLICATIONS:
    register(
        _class_name.lower(),
        min_size=_smallest,
        channels=(3,),
        pretrained=True,
        unfreeze_points=_points,
        native_size=_native,
        parameters=_parameters,
    )(_application_builder(_class_name, _preprocessing))
