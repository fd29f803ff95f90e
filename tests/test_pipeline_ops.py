"""Preprocessing ops: eager == inside tf.data.map, and boxes follow the pixels exactly."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines import ops, shapes
from pipelines.ops import decode, decode_random_crop


def example_with_mask(index, size=48):
    ex = shapes.render(index, height=size, width=size, channels=3, seed=7)
    # The mask rides along as a 4th channel, so every op moves it exactly like the pixels.
    mask = tf.cast(ex["mask"], tf.float32)[..., None] * 255.0
    return tf.concat([ex["image"], mask], axis=-1), ex["bbox"]


def seed_of(i):
    return tf.stack([tf.cast(i, tf.int64), tf.constant(99, tf.int64)])


OPS = {
    "random_crop": lambda image, box, i: ops.random_crop(image, box, seed=seed_of(i)),
    "random_flip": lambda image, box, i: ops.random_flip(image, box, seed=seed_of(i)),
    "central_crop": lambda image, box, i: ops.central_crop(image, box),
    "resize": lambda image, box, i: ops.resize(image, box, size=(20, 30)),
    "resize_and_flip": lambda image, box, i: ops.resize(image, box, size=(20, 30), flip=ops.flip_decision(seed_of(i))),
    "resize_and_flip_uint8": lambda image, box, i: ops.resize(
        tf.cast(image, tf.uint8), box, size=(20, 30), flip=ops.flip_decision(seed_of(i))
    ),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_eager_equals_tf_data_map(name):
    op = OPS[name]
    images = [example_with_mask(i)[0][:, : 40 + i] for i in range(4)]  # non-square too
    boxes = [example_with_mask(i)[1] for i in range(4)]
    eager = [op(img, box, i) for i, (img, box) in enumerate(zip(images, boxes))]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((img, box, i) for i, (img, box) in enumerate(zip(images, boxes))),
        output_signature=(
            tf.TensorSpec([48, None, 4], tf.float32),
            tf.TensorSpec([4], tf.float32),
            tf.TensorSpec([], tf.int64),
        ),
    ).map(lambda img, box, i: op(img, box, i))
    for (want_image, want_box), (got_image, got_box) in zip(eager, dataset):
        np.testing.assert_allclose(got_image, want_image, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(got_box, want_box, rtol=1e-6)


@pytest.mark.parametrize("index", range(40))
def test_crop_and_flip_keep_the_box_tight_around_the_shape(index):
    image, box = example_with_mask(index)
    np.testing.assert_allclose(ops.tight_box(image[..., 3]), box)  # the label box is tight
    image, box = ops.random_crop(image, box, seed=seed_of(index))
    image, box = ops.random_flip(image, box, seed=seed_of(index + 1000))
    assert image.shape[:2] == (43, 43)  # 90% of 48
    mask = image[..., 3] > 127
    assert tf.reduce_any(mask), "the crop cut the object out"
    np.testing.assert_allclose(box, ops.tight_box(mask), atol=1e-6)


def test_flip_mirrors_the_box():
    image = tf.zeros([10, 10, 1])
    box = tf.constant([0.1, 0.2, 0.5, 0.3])
    flipped = [ops.random_flip(image, box, seed=seed_of(i))[1].numpy() for i in range(20)]
    assert any(np.allclose(b, [0.1, 0.7, 0.5, 0.8]) for b in flipped)
    assert any(np.allclose(b, box) for b in flipped)


def test_random_crop_is_the_seed_recipe_without_a_box():
    image = tf.random.uniform([50, 80, 3])
    crops = {tuple(ops.random_crop(image, seed=seed_of(i))[0].shape) for i in range(5)}
    assert crops == {(45, 45, 3)}  # a square of 90% of the shorter side
    cropped, _ = ops.central_crop(image)
    assert cropped.shape == (50, 66, 3)  # 30 // 4 = 7 of the 30-pixel excess off each side


def test_a_box_larger_than_the_window_stays_in_view():
    image = tf.zeros([40, 40, 1])
    box = tf.constant([0.0, 0.0, 1.0, 1.0])
    for i in range(10):
        _, cropped = ops.random_crop(image, box, seed=seed_of(i))
        np.testing.assert_allclose(cropped, [0, 0, 1, 1])


def test_jpeg_window_decoding_equals_decode_then_crop():
    ex = shapes.render(3, height=120, width=90, channels=3)
    encoded = tf.io.encode_jpeg(tf.cast(ex["image"], tf.uint8), quality=95)
    png = tf.io.encode_png(tf.cast(ex["image"], tf.uint8))
    for i in range(5):
        want_image, want_box = ops.random_crop(decode(encoded, 3), ex["bbox"], seed=seed_of(i))
        got_image, got_box = decode_random_crop(encoded, ex["bbox"], seed_of(i), 3)
        assert got_image.shape == want_image.shape
        # Same pixels, but for JPEG chroma upsampling along the window's border.
        diff = np.abs(got_image.numpy().astype(int) - want_image.numpy().astype(int))
        assert (diff == 0).mean() > 0.98 and diff.mean() < 0.1
        np.testing.assert_allclose(got_box, want_box)
        png_image, png_box = decode_random_crop(png, ex["bbox"], seed_of(i), 3)
        assert png_image.shape == got_image.shape
        np.testing.assert_allclose(png_box, want_box)
        # Known-JPEG sources skip the format branch; nothing else changes.
        jpeg_image, jpeg_box = decode_random_crop(encoded, ex["bbox"], seed_of(i), 3, jpeg=True)
        np.testing.assert_array_equal(jpeg_image, got_image)
        np.testing.assert_array_equal(jpeg_box, got_box)


def test_jpeg_decoding_without_the_format_branch_gives_the_same_pixels():
    rgb = tf.cast(tf.random.uniform([30, 20, 3], 0, 256, tf.int32, seed=2), tf.uint8)
    for image in (rgb, rgb[..., :1]):
        encoded = tf.io.encode_jpeg(image)
        for channels in (1, 3):
            got = decode(encoded, channels, jpeg=True)
            assert got.shape == (30, 20, channels)
            if channels == image.shape[-1]:
                np.testing.assert_array_equal(got, decode(encoded, channels))


def test_resize_gives_uint8_images_the_same_pixels_as_tf_image_resize(monkeypatch):
    # ops.resize sends uint8 images through pipelines.fused: the fused kernel when it is built (the
    # same values but for float rounding), else a cast to float32 first (TF's faster kernel) and
    # then exactly the same values.
    image = tf.cast(tf.random.uniform([61, 47, 3], 0, 256, tf.int32, seed=1), tf.uint8)
    for size in [(20, 30), (224, 224)]:
        got, _ = ops.resize(image, size=size)
        assert got.dtype == tf.float32
        np.testing.assert_allclose(got, tf.image.resize(image, size), rtol=0, atol=1e-4)
    monkeypatch.setenv("ZOO_FUSED_OPS", "0")
    for size in [(20, 30), (224, 224)]:
        np.testing.assert_array_equal(ops.resize(image, size=size)[0], tf.image.resize(image, size))


def test_resize_with_a_flip_is_resize_then_random_flip():
    image, box = example_with_mask(3)
    for i in range(6):  # both outcomes of the coin
        want_image, want_box = ops.random_flip(*ops.resize(image, box, size=(24, 40)), seed=seed_of(i))
        got_image, got_box = ops.resize(image, box, size=(24, 40), flip=ops.flip_decision(seed_of(i)))
        np.testing.assert_array_equal(got_image, want_image)
        np.testing.assert_array_equal(got_box, want_box)


def test_each_registered_augmentation_is_run_from_the_registry_and_keeps_its_stream(monkeypatch):
    # An op's random stream is fixed by its name: registering another op never changes what the
    # existing ops draw for a seeded run.
    import pipelines

    def batches(augment):
        dataset, _ = pipelines.load(
            "shapes", "train[:8]", task="localize", image_size=32, batch_size=8, training=True, augment=augment, seed=3
        )
        images, targets = next(iter(dataset))
        return images.numpy(), targets["bbox"].numpy()

    before = batches(("crop", "flip"))
    darken = ops.Augmentation("darken", lambda image, box, *, seed: (image * 0.5, box))
    registry = {"darken": darken, **ops.AUGMENTATIONS}  # first in the registry, to be sure
    monkeypatch.setattr(ops, "AUGMENTATIONS", registry)
    after = batches(("crop", "flip"))
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    # The new op runs through the same registry, after the crop and flip.
    darkened = batches(("crop", "flip", "darken"))
    np.testing.assert_allclose(darkened[0], before[0] * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(darkened[1], before[1])
    assert len({op.stream for op in registry.values()}) == len(registry)


def test_evaluation_central_crops_exactly_when_training_crops():
    assert ops.crops_at_evaluation(("crop", "flip")) and ops.crops_at_evaluation(["crop"])
    assert not ops.crops_at_evaluation(("flip",)) and not ops.crops_at_evaluation(())
