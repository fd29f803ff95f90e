"""Hand-made filters, depthwise pooling and the transposed-convolution construction."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.filters import apply_filters, depthwise_max_pool, line_filters
from zoo.transposed_conv import insert_zeros, transposed_conv2d


def reference_conv(images, filters, strides, padding):
    """Cross-correlation by loops, as tf.nn.conv2d defines it (TF's SAME padding rule)."""
    n, h, w, c = images.shape
    kh, kw, _, out = filters.shape
    if padding == "SAME":
        oh, ow = -(-h // strides), -(-w // strides)
        pad_h = max((oh - 1) * strides + kh - h, 0)
        pad_w = max((ow - 1) * strides + kw - w, 0)
        images = np.pad(images, [(0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)])
    else:
        oh, ow = (h - kh) // strides + 1, (w - kw) // strides + 1
    result = np.zeros((n, oh, ow, out))
    for i in range(oh):
        for j in range(ow):
            patch = images[:, i * strides : i * strides + kh, j * strides : j * strides + kw, :]
            result[:, i, j, :] = np.tensordot(patch, filters, axes=([1, 2, 3], [0, 1, 2]))
    return result


def test_line_filters_are_a_vertical_and_a_horizontal_line():
    filters = line_filters(5, channels=1)
    assert filters.shape == (5, 5, 1, 2)
    np.testing.assert_array_equal(filters[:, :, 0, 0], np.eye(5)[2][None, :].repeat(5, 0))
    np.testing.assert_array_equal(filters[:, :, 0, 1], np.eye(5)[2][:, None].repeat(5, 1))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, 2, 3])
def test_apply_filters_matches_a_loop_convolution(padding, strides):
    images = np.random.default_rng(strides).uniform(0, 1, (2, 13, 11, 3)).astype("float32")
    filters = line_filters(7, channels=3)
    got = apply_filters(images, filters, strides=strides, padding=padding).numpy()
    np.testing.assert_allclose(got, reference_conv(images, filters, strides, padding), rtol=1e-5, atol=1e-5)


def test_vertical_filter_lights_up_a_vertical_line():
    image = np.zeros((1, 9, 9, 1), "float32")
    image[0, :, 4, 0] = 1.0
    response = apply_filters(image, line_filters(7, 1)).numpy()[0]
    vertical, horizontal = response[..., 0], response[..., 1]
    assert vertical[4, 4] == 7 and vertical.max() == 7
    assert horizontal.max() == 1


def test_filter_errors_name_the_value():
    with pytest.raises(ValueError, match=r"padding must be one of SAME, VALID, received 'FULL'"):
        apply_filters(np.zeros((1, 8, 8, 3)), line_filters(), padding="full")
    with pytest.raises(ValueError, match=r"same C.*\(1, 8, 8, 1\)"):
        apply_filters(np.zeros((1, 8, 8, 1)), line_filters(channels=3))
    with pytest.raises(ValueError, match=r"positive odd integer, received 4"):
        line_filters(4)


def test_depthwise_max_pool_takes_the_max_of_channel_groups():
    images = np.random.default_rng(0).normal(size=(2, 4, 4, 6)).astype("float32")
    got = depthwise_max_pool(images, 3).numpy()
    np.testing.assert_array_equal(got, images.reshape(2, 4, 4, 2, 3).max(axis=-1))
    with pytest.raises(ValueError, match=r"divisor of the channel count 6, received 4"):
        depthwise_max_pool(images, 4)


def test_insert_zeros_spreads_pixels():
    images = np.arange(1, 5, dtype="float32").reshape(1, 2, 2, 1)
    got = insert_zeros(images, 3).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(got, [[1, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]])


@pytest.mark.parametrize("strides", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [2, 3, 4, 5])
def test_transposed_conv_equals_keras_conv2d_transpose(strides, kernel_size):
    images = np.random.default_rng(kernel_size).normal(size=(2, 5, 4, 3)).astype("float32")
    layer = keras.layers.Conv2DTranspose(2, kernel_size, strides=strides, padding="valid", use_bias=False)
    expected = keras.ops.convert_to_numpy(layer(images))
    got = transposed_conv2d(images, layer.kernel, strides=strides).numpy()
    assert (
        got.shape
        == expected.shape
        == (2, (5 - 1) * strides + max(kernel_size, strides), (4 - 1) * strides + max(kernel_size, strides), 2)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_ops_work_inside_tf_data_map():
    images = np.random.default_rng(0).uniform(size=(4, 6, 6, 3)).astype("float32")
    kernel = np.random.default_rng(1).normal(size=(3, 3, 2, 3)).astype("float32")
    filters = line_filters(3, channels=3)
    dataset = (
        tf.data.Dataset.from_tensor_slices(images)
        .batch(2)
        .map(lambda x: (apply_filters(x, filters, strides=2), transposed_conv2d(x, kernel, strides=2)))
    )
    filtered, transposed = next(iter(dataset))
    np.testing.assert_allclose(filtered, apply_filters(images[:2], filters, strides=2), rtol=1e-6)
    np.testing.assert_allclose(transposed, transposed_conv2d(images[:2], kernel, strides=2), rtol=1e-5, atol=1e-6)
