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


def load_images(paths: Sequence[str], size: tuple[int, int], channels: int, central_crop: bool):
    """The images at ``paths`` as one float32 batch in [0, 255] of ``size`` (height, width) and
    ``channels``, central-cropped first when asked; DataError naming a file that does not decode."""
    import tensorflow as tf

    from pipelines import ops

    images = []
    for path in paths:
        try:
            image = ops.decode(tf.io.read_file(path), channels)
        except tf.errors.OpError as error:
            raise DataError(f"image {path!r} cannot be decoded ({op_error_text(error)})") from None
        if central_crop:
            image, _ = ops.central_crop(image)
        image, _ = ops.resize(image, size=size)
        images.append(image)
    return tf.stack(images)
