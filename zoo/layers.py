"""Custom layers of the zoo, registered so `.keras` files load in safe mode."""

from __future__ import annotations

import keras
from keras import layers

from zoo.common import positive_int

PACKAGE = "zoo"


# Keras's default momentum of BatchNormalization's moving statistics.
BN_MOMENTUM = 0.99


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualUnit(layers.Layer):
    """The ResNet basic block: two 3x3 conv + BN with a shortcut, ReLU after the sum.

    The shortcut is the identity, or a 1x1 conv + BN projection when the unit changes the stride or
    the width (option B of the ResNet paper, which the published ResNet-18/34 use). Convolutions
    have no bias: the BatchNormalization that follows each one has its own offset.

    ``drop_rate``: stochastic depth (Huang et al., 2016; timm's ``drop_path``): in training, each
    example skips the unit's residual branch with this probability (the branch scaled up by
    1 / (1 - rate) otherwise), a `Dropout` whose mask is one number per example.

    ``bn_momentum``: the momentum of its BatchNormalization layers' moving statistics (Keras's
    0.99); the config saves the one they hold (`zoo.set_batchnorm_momentum` sets them after building).
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        activation: str = "relu",
        drop_rate: float = 0.0,
        bn_momentum: float = BN_MOMENTUM,
        **kwargs,
    ):
        super().__init__(**kwargs)
        positive_int("filters", filters)
        if strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2, received {strides!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), received {drop_rate!r}")
        if not 0.0 <= float(bn_momentum) < 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1), received {bn_momentum!r}")
        self.filters = filters
        self.strides = strides
        self.drop_rate = float(drop_rate)
        # One keep-or-drop draw per example, for the whole residual branch.
        self.drop_path = (
            layers.Dropout(self.drop_rate, noise_shape=(None, 1, 1, 1), name="drop_path", dtype=self.dtype_policy)
            if self.drop_rate
            else None
        )
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        # The unit's own dtype policy, not the global one: a unit reloaded from a mixed-precision
        # model in a float32 process must compute its main path and shortcut in the same dtype.
        conv = dict(kernel_size=3, padding="same", use_bias=False, dtype=self.dtype_policy)
        self.conv1 = layers.Conv2D(filters, strides=strides, name="conv1", **conv)
        norm = dict(momentum=float(bn_momentum), dtype=self.dtype_policy)
        self.bn1 = layers.BatchNormalization(name="bn1", **norm)
        self.conv2 = layers.Conv2D(filters, strides=1, name="conv2", **conv)
        self.bn2 = layers.BatchNormalization(name="bn2", **norm)
        self.projection = None
        self.projection_bn = None

    def build(self, input_shape):
        in_filters = input_shape[-1]
        if self.strides != 1 or in_filters != self.filters:
            self.projection = layers.Conv2D(
                self.filters, 1, strides=self.strides, use_bias=False, name="projection", dtype=self.dtype_policy
            )
            self.projection_bn = layers.BatchNormalization(
                name="projection_bn", momentum=self.bn1.momentum, dtype=self.dtype_policy
            )
            self.projection.build(input_shape)
            self.projection_bn.build(self.projection.compute_output_shape(input_shape))
        self.conv1.build(input_shape)
        mid_shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(mid_shape)
        self.conv2.build(mid_shape)
        self.bn2.build(mid_shape)

    def call(self, inputs, training=None):
        x = self.activation(self.bn1(self.conv1(inputs), training=training))
        x = self.bn2(self.conv2(x), training=training)
        if self.drop_path is not None:
            x = self.drop_path(x, training=training)
        shortcut = inputs
        if self.projection is not None:
            shortcut = self.projection_bn(self.projection(inputs), training=training)
        return self.activation(x + shortcut)

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)[:-1] + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides, activation=self._activation_name)
        if self.drop_rate:
            config.update(drop_rate=self.drop_rate)
        # The momentum its layers hold (`zoo.set_batchnorm_momentum` sets them after building); Keras's
        # default left out, so that a unit saved before the option reads the same.
        if self.bn1.momentum != BN_MOMENTUM:
            config.update(bn_momentum=self.bn1.momentum)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageNetPreprocessing(layers.Layer):
    """`keras.applications.imagenet_utils.preprocess_input` as a layer.

    The Keras Applications expect their own input scaling; as a layer (rather than a `Lambda`) it
    is saved with the model, reloads in safe mode, and the model predicts on raw [0, 255] pixels.
    ``mode``: "caffe" (RGB->BGR, subtract the ImageNet mean; ResNet50/VGG), "tf" (scale to [-1, 1])
    or "torch" (scale to [0, 1], standardize by the ImageNet mean and std).
    """

    MODES = ("caffe", "tf", "torch")

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}, received {mode!r}")
        self.mode = mode

    def call(self, inputs):
        inputs = keras.ops.cast(inputs, self.compute_dtype)
        return keras.applications.imagenet_utils.preprocess_input(inputs, data_format="channels_last", mode=self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config
