"""Transposed convolution spelled out: spread the pixels apart, then an ordinary VALID convolution.

This is what `keras.layers.Conv2DTranspose(padding="valid")` computes; the test suite checks the
two agree for strides 1-3 and kernel sizes 2-5.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from zoo.common import positive_int


def insert_zeros(images, strides: int) -> tf.Tensor:
    """Put ``strides - 1`` zero rows/columns between neighbouring pixels: (H, W) -> (s(H-1)+1, ...)."""
    positive_int("strides", strides)
    images = tf.convert_to_tensor(images, tf.float32)
    if strides == 1:
        return images
    batch, height, width, channels = tf.unstack(tf.shape(images))
    # Each pixel becomes the top-left corner of a strides x strides block of zeros...
    blocks = tf.pad(
        images[:, :, None, :, None, :],
        [[0, 0], [0, 0], [0, strides - 1], [0, 0], [0, strides - 1], [0, 0]],
    )
    spread = tf.reshape(blocks, [batch, height * strides, width * strides, channels])
    # ...and the zeros after the last pixel are not part of the result.
    return spread[:, : (height - 1) * strides + 1, : (width - 1) * strides + 1, :]


def transposed_conv2d(images, kernel, strides: int = 1, bias=None) -> tf.Tensor:
    """Transposed convolution with 'valid' padding, built from `tf.nn.conv2d`.

    ``kernel`` is laid out as `Conv2DTranspose` stores it: (kh, kw, out_channels, in_channels);
    ``bias`` (out_channels,), when given, is added as the layer adds it. So
    ``transposed_conv2d(x, layer.kernel, layer.strides[0], layer.bias)`` is ``layer(x)``.
    Output size: (H - 1) * strides + max(kh, strides), as Keras defines it: when the kernel is
    smaller than the stride, the rows no kernel reaches are kept as zeros.
    """
    kernel = tf.convert_to_tensor(kernel, tf.float32)
    kh, kw = kernel.shape[0], kernel.shape[1]
    spread = insert_zeros(images, strides)
    # Pad by kernel-1 so every kernel position that touches an input pixel produces an output,
    # plus the unreached trailing rows/columns when the stride exceeds the kernel.
    extra_h, extra_w = max(strides - kh, 0), max(strides - kw, 0)
    padded = tf.pad(spread, [[0, 0], [kh - 1, kh - 1 + extra_h], [kw - 1, kw - 1 + extra_w], [0, 0]])
    # Scattering the kernel from each input pixel equals gathering with the kernel flipped in space,
    # and gathering maps out->in channels, so the channel axes swap.
    gather_kernel = tf.transpose(tf.reverse(kernel, axis=[0, 1]), [0, 1, 3, 2])
    output = tf.nn.conv2d(padded, gather_kernel, strides=1, padding="VALID")
    return output if bias is None else output + tf.convert_to_tensor(bias, tf.float32)


def transposed_conv_example(images, seed: int = 42, filters: int = 5, kernel_size: int = 3, strides: int = 2):
    """The chapter's transposed convolution on ``images`` (N, H, W, C) in [0, 1]: with the seed
    set (`keras.utils.set_random_seed`, which includes ``tf.random.set_seed``), a
    ``Conv2DTranspose(filters, kernel_size, strides, padding="valid")``, and the same computed by
    hand with `transposed_conv2d`. Returns ``(layer, layer output, by hand)`` as NumPy arrays."""
    keras.utils.set_random_seed(seed)
    layer = keras.layers.Conv2DTranspose(filters=filters, kernel_size=kernel_size, strides=strides, padding="valid")
    output = np.asarray(layer(images))
    manual = np.asarray(transposed_conv2d(images, layer.kernel, strides, layer.bias))
    return layer, output, manual
