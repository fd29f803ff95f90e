"""Predict classes (and boxes) for image files.

    python -m trainers.predict --model_path=runs/shapes [--top_k=3] IMAGE...
    python -m trainers.predict --model=resnet50 --weights=imagenet IMAGE...

For each image, prints the top-K classes with their probabilities, the way the seed prints
`decode_predictions`, and the box ([ymin, xmin, ymax, xmax], normalized) for localize models.
Images are decoded, central-cropped or not, and resized to the model's input size; the model does
its own pixel scaling. The crop (--central_crop) defaults to what `trainers.evaluate` does with the
same model: for a run directory, the run's test-time crop (on if it trained on random crops); for a
bare .keras file, the trainer's default (off); for --model=resnet50, on, as the seed predicts.
"""

from __future__ import annotations

import json
import os

from absl import flags

from trainers import cli, task
from trainers.cli import UserError
from trainers.config import ConfigError

FLAGS = flags.FLAGS
IMAGENET_CLASSES = 1000


def define_flags() -> None:
    flags.DEFINE_string("model_path", None, "A .keras file, or a run directory holding model.keras.")
    cli.define_config_flags(
        names=("model", "weights", "image_size"),
        defaults={"model": None, "image_size": 224},
        helps={
            "model": "Instead of --model_path: a zoo model built here (resnet50 with --weights=imagenet).",
            "weights": "With --model: 'imagenet' or a weights file.",
            "image_size": "With --model: input size.",
        },
    )
    flags.DEFINE_integer("top_k", 3, "Classes to print per image.", lower_bound=1)
    flags.DEFINE_string("class_names", None, "JSON list of class names (default: class_names.json beside the model).")
    flags.DEFINE_boolean(
        "central_crop",
        None,
        "Central-crop towards a square before resizing (default: as evaluate does with the model: a run's "
        "test-time crop, off for a bare .keras file; on for --model=resnet50).",
    )


def build_pretrained():
    import zoo

    if FLAGS.model != "resnet50":
        raise UserError(
            f"--model={FLAGS.model} has no pretrained ImageNet classifier to predict with; "
            f"accepted: --model=resnet50 (or a trained model via --model_path)"
        )
    if not FLAGS.weights:
        raise UserError("--model=resnet50 needs --weights=imagenet or a Keras weights file with the top")

    try:
        return zoo.build(
            FLAGS.model,
            num_classes=IMAGENET_CLASSES,
            input_shape=(FLAGS.image_size, FLAGS.image_size, 3),
            weights=FLAGS.weights,
        )
    except ValueError as error:
        raise UserError(f"--model={FLAGS.model}: {error}") from None
    except Exception as error:  # the download of ImageNet weights fails without a network
        raise UserError(
            f"--model={FLAGS.model} --weights={FLAGS.weights}: could not get the weights "
            f"({str(error).splitlines()[0]}); pass a local Keras weights file with --weights=PATH"
        ) from None


def check_image_paths(paths) -> None:
    """UserError naming the first path that is missing, a folder, or not a whole image file."""
    from pipelines.sources import check_image_file

    for path in paths:
        if os.path.isdir(path):
            problem = "is a directory; give image files (e.g. DIR/*.jpg)"
        else:
            problem = check_image_file(path) if os.path.isfile(path) else "does not exist"
        if problem:
            raise UserError(f"image {path!r} {problem}")


def central_crop_for(model_path: str, model) -> bool:
    """The test-time crop `trainers.evaluate` applies to this model: its run's (flags.txt), or the
    trainer's default for a bare .keras file. Raises ConfigError for a flags.txt that does not parse."""
    from trainers.evaluate import run_config

    return task.test_time_preprocessing(run_config(model_path, model))["central_crop"]


def load_images(paths, size, channels, central_crop: bool):
    import tensorflow as tf

    from pipelines import ops

    images = []
    for path in paths:
        try:
            image = ops.decode(tf.io.read_file(path), channels)
        except tf.errors.OpError as error:
            raise UserError(f"image {path!r} cannot be decoded ({error.message.splitlines()[0]})") from None
        if central_crop:
            image, _ = ops.central_crop(image)
        image, _ = ops.resize(image, size=size)
        images.append(image)
    return tf.stack(images)


def class_names_for(model_path, num_classes):
    path = FLAGS.class_names or (os.path.join(os.path.dirname(model_path), "class_names.json") if model_path else None)
    if path and os.path.exists(path):
        with open(path) as f:
            names = json.load(f)
        if len(names) == num_classes:
            return names
        raise UserError(f"--class_names={path} lists {len(names)} names for a model of {num_classes} classes")
    return None


def main(argv):
    paths = argv[1:]
    if not paths:
        raise UserError("give one or more image files after the flags")
    if bool(FLAGS.model_path) == bool(FLAGS.model):
        raise UserError("give either --model_path=RUN_DIR_OR_FILE or --model=NAME (with --weights)")
    check_image_paths(paths)  # before any model is loaded or downloaded
    import numpy as np

    central_crop = FLAGS.central_crop
    if FLAGS.model_path:
        model_path, model = cli.open_model(FLAGS.model_path)
        if central_crop is None:  # as evaluate measured the model: the same images give the same answers
            try:
                central_crop = central_crop_for(model_path, model)
            except ConfigError as error:
                raise UserError(error.flag_message()) from None
    else:
        model_path = None
        model = build_pretrained()
        central_crop = True if central_crop is None else central_crop  # the seed's ImageNet prediction
    height, width, channels = model.input_shape[1:]
    images = load_images(paths, (height, width), channels, central_crop)
    outputs = model.predict(images, verbose=0)
    probabilities = outputs["class"] if isinstance(outputs, dict) else outputs
    boxes = outputs.get("bbox") if isinstance(outputs, dict) else None
    num_classes = probabilities.shape[-1]
    names = class_names_for(model_path, num_classes)
    top_k = min(FLAGS.top_k, num_classes)

    decoded = None
    if names is None and FLAGS.model and num_classes == IMAGENET_CLASSES:
        import keras

        try:
            decoded = keras.applications.resnet50.decode_predictions(probabilities, top=top_k)
        except Exception as error:  # the class index is downloaded on first use
            print(f"warning: ImageNet class names unavailable ({str(error).splitlines()[0]}); printing class ids")
    for index, path in enumerate(paths):
        print(f"{path}")
        if decoded is not None:
            rows = [(class_id, name, p) for class_id, name, p in decoded[index]]
        else:
            order = np.argsort(probabilities[index])[::-1][:top_k]
            rows = [(int(k), names[k] if names else f"class_{k}", float(probabilities[index][k])) for k in order]
        for class_id, name, probability in rows:
            print(f"  {class_id!s:<10} - {name:<12s} {probability * 100:.2f}%")
        if boxes is not None:
            print("  box [ymin, xmin, ymax, xmax] = [" + ", ".join(f"{v:.3f}" for v in boxes[index]) + "]")
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
