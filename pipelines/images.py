"""Image files given one by one (`trainers.predict`, `trainers.show`): checked, then decoded and
resized as evaluation does, with the same errors as a folder's files."""

from __future__ import annotations

import os
from collections.abc import Sequence

from pipelines.errors import DataError, op_error_text
from zoo.common import MAX_IMAGE_PIXELS


def check_image_paths(paths: Sequence[str], max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """DataError naming the first path that is missing, a folder, not a whole image file, or one
    whose header declares more than ``max_pixels`` (a look at its first and last bytes: cheap
    enough to run before a model is loaded, and before anything is decoded)."""
    from pipelines.sources import check_image_file

    for path in paths:
        if os.path.isdir(path):
            problem = "is a directory; give image files (e.g. DIR/*.jpg)"
        else:
            problem = check_image_file(path, max_pixels) if os.path.isfile(path) else "does not exist"
        if problem:
            raise DataError(f"image {path!r} {problem}")


def load_images(
    paths: Sequence[str], size: tuple[int, int], channels: int, central_crop: bool, exact_jpeg: bool = False
):
    """The images at ``paths`` as one float32 batch in [0, 255] of ``size`` (height, width) and
    ``channels``, central-cropped first when asked; DataError naming a file that does not decode.
    ``size=None`` keeps each image's own size (then give one path, or paths of one size).

    ``exact_jpeg`` decodes JPEGs with libjpeg's accurate integer DCT, as Pillow (and so
    `keras.utils.load_img` and scikit-learn's sample images) does: the pixels the chapter and Keras
    Applications' own figures start from. By default JPEGs are decoded as the input pipelines
    decode them (TensorFlow's default, the fast DCT; up to ~18 levels apart on a photo), so that a
    trained model sees what `trainers.evaluate` showed it.
    """
    import tensorflow as tf

    from pipelines import ops

    images = []
    for path in paths:
        try:
            encoded = tf.io.read_file(path)
            if exact_jpeg and tf.io.is_jpeg(encoded):
                image = tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE")
            else:
                image = ops.decode(encoded, channels)
        except tf.errors.OpError as error:
            raise DataError(f"image {path!r} cannot be decoded ({op_error_text(error)})") from None
        if central_crop:
            image, _ = ops.central_crop(image)
        if size is None:
            image = tf.cast(image, tf.float32)
        else:
            image, _ = ops.resize(image, size=size)
        images.append(image)
    return tf.stack(images)


# The two photos chapter 14 works on: scikit-learn ships them (`sklearn.datasets.load_sample_image`).
SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")


def sample_photo_paths() -> list[str]:
    """The files of the chapter's two photos (427x640 JPEGs shipped with scikit-learn); DataError
    saying what to install when scikit-learn is missing."""
    try:
        import sklearn.datasets
    except ImportError:
        raise DataError(
            "the chapter's photos (china.jpg, flower.jpg) come with scikit-learn: pip install scikit-learn "
            "(make install installs it), or give your own image files"
        ) from None
    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    paths = [os.path.join(folder, name) for name in SAMPLE_PHOTOS]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise DataError(f"scikit-learn's sample photo {missing[0]!r} is missing; reinstall scikit-learn")
    return paths


def sample_photos():
    """The chapter's photos as it loads them: ``load_sample_images()["images"] / 255``, a float32
    array (2, 427, 640, 3) in [0, 1], china.jpg then flower.jpg (decoded by Pillow, as there)."""
    import numpy as np
    from sklearn.datasets import load_sample_image

    sample_photo_paths()  # the one-line error when scikit-learn or a photo is missing
    return np.stack([load_sample_image(name) for name in SAMPLE_PHOTOS]).astype(np.float32) / 255
