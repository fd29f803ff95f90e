"""Predict classes (and boxes) for image files.

    python -m trainers.predict --model_path=runs/shapes [--top_k=3] IMAGE...
    python -m trainers.predict --model=resnet50 --weights=imagenet IMAGE...
    python -m trainers.predict --model=resnet50 --weights=imagenet --chapter_photos
    python -m trainers.predict --model_path=runs/shapes/deploy/model-int8.tflite IMAGE...

For each image, prints the top-K classes with their probabilities, the way the chapter prints
`decode_predictions`, and the box ([ymin, xmin, ymax, xmax], normalized) for localize models.
Each image is decoded and given whole, at its own size, to the model behind the same test-time
preprocessing an export puts in front of it (`trainers.deploy.deployable`): the central crop or
not, the resize to the model's input size, and a predicted box put back on the whole image; the
model does its own pixel scaling. The crop (--central_crop) defaults to what `trainers.evaluate`
does with the same model: for a run directory, the run's test-time crop (on if it trained on
random crops); for a bare .keras file, the trainer's default (off).

--model_path may also be an artifact of `trainers.export` (a SavedModel folder, a .tflite or an
.onnx file, with its .json beside it), which has that preprocessing inside: the same output.

--model=resnet50 or xception predicts with the pretrained ImageNet classifier as the chapter does:
the whole photo resized to the network's size (224 or 299; no crop unless --central_crop), JPEGs
decoded as Pillow decodes them, then the application's own `preprocess_input` inside the model.
--weights is "imagenet" (Keras downloads the file once) or a file you have: the `.h5` that
`keras.applications.ResNet50(weights="imagenet")` leaves in ~/.keras/models, or the
`save_weights` of a plain `keras.applications.ResNet50()` / `Xception()`.
"""

from __future__ import annotations

import os

from absl import flags

from trainers import cli, config, deploy
from trainers.cli import UserError
from zoo.common import error_line

FLAGS = flags.FLAGS
IMAGENET_CLASSES = 1000
# The pretrained ImageNet classifiers --model can predict with, and their input sizes.
IMAGENET_SIZES = {"resnet50": 224, "xception": 299}


def define_flags() -> None:
    flags.DEFINE_string("model_path", None, "A .keras file, or a run directory holding model.keras.")
    config.define_flags(
        names=("model", "weights", "image_size", "max_image_pixels"),
        defaults={"model": None, "image_size": None},
        helps={
            "model": "Instead of --model_path: a pretrained ImageNet classifier (resnet50, xception; with --weights).",
            "weights": "With --model: 'imagenet' (downloaded once) or a Keras weights file with the top.",
            "image_size": "With --model: input size (default: the network's own, 224 for resnet50, 299 for xception).",
        },
    )
    flags.DEFINE_boolean(
        "chapter_photos",
        False,
        "Predict the chapter's two photos (scikit-learn's china.jpg and flower.jpg) as well as any IMAGE given.",
    )
    flags.DEFINE_integer("top_k", 3, "Classes to print per image.", lower_bound=1)
    flags.DEFINE_string("class_names", None, "JSON list of class names (default: class_names.json beside the model).")
    flags.DEFINE_boolean(
        "central_crop",
        None,
        "Central-crop towards a square before resizing (default: as evaluate does with the model: a run's "
        "test-time crop, off for a bare .keras file; off for --model, which resizes the whole photo as the "
        "chapter does).",
    )


def build_pretrained(model: str, weights: str | None, image_size: int | None):
    """``model`` with its ImageNet classifier (``weights``: "imagenet" or a weights file);
    UserError naming the flag when it cannot be had."""
    import zoo

    if model not in IMAGENET_SIZES:
        raise UserError(
            f"--model={model} has no pretrained ImageNet classifier to predict with; "
            f"accepted: {', '.join(f'--model={name}' for name in IMAGENET_SIZES)} (or a trained model via --model_path)"
        )
    if not weights:
        raise UserError(f"--model={model} needs --weights=imagenet or a Keras weights file with the top")
    size = image_size or IMAGENET_SIZES[model]
    try:
        return zoo.build(
            model, num_classes=IMAGENET_CLASSES, input_shape=(size, size, 3), weights=weights, imagenet_top=True
        )
    except ValueError as error:
        raise UserError(f"--model={model} --weights={weights}: {error}") from None
    except Exception as error:  # the download of ImageNet weights fails without a network
        raise UserError(
            f"--model={model} --weights={weights}: could not get the weights "
            f"({error_line(error)}); "
            f"pass a local Keras weights file with --weights=PATH"
        ) from None


def model_inputs(model, paths, central_crop: bool, pretrained: bool):
    """The batch ``model`` is given for the image files ``paths``: decoded, central-cropped when
    asked, resized to the model's input size, raw pixels in [0, 255] (the model scales them
    itself). A ``pretrained`` ImageNet classifier sees JPEGs as Pillow decodes them, as in the
    chapter; a trained model sees them as its input pipeline did."""
    import pipelines

    height, width, channels = model.input_shape[1:]
    try:
        return pipelines.load_images(paths, (height, width), channels, central_crop, exact_jpeg=pretrained)
    except pipelines.DataError as error:
        raise UserError(str(error)) from None


def main(argv):
    import pipelines
    from trainers.saved import read_class_names

    paths = argv[1:]
    if bool(FLAGS.model_path) == bool(FLAGS.model):
        raise UserError("give either --model_path=RUN_DIR_OR_FILE or --model=NAME (with --weights)")
    try:
        if FLAGS.chapter_photos:
            paths = pipelines.sample_photo_paths() + paths
        if not paths:
            raise UserError("give one or more image files after the flags (or --chapter_photos)")
        pipelines.check_image_paths(paths, FLAGS.max_image_pixels)  # before any model is loaded or downloaded
    except pipelines.DataError as error:
        raise UserError(str(error)) from None

    if FLAGS.model_path:
        predictor, channels, names = open_predictor(FLAGS.model_path)
        probabilities, boxes = predict_whole_images(predictor, paths, channels)
        print_predictions(paths, probabilities, boxes, names)
        return 0
    model = build_pretrained(FLAGS.model, FLAGS.weights, FLAGS.image_size)
    names = None
    if FLAGS.class_names:
        try:
            names = read_class_names(FLAGS.class_names, IMAGENET_CLASSES)
        except ValueError as error:
            raise UserError(f"--class_names={FLAGS.class_names}: {error}") from None
    # The chapter resizes the whole photo (--central_crop crops).
    images = model_inputs(model, paths, bool(FLAGS.central_crop), pretrained=True)
    print_predictions(paths, model.predict(images, verbose=0), None, names, imagenet=True)
    return 0


def open_predictor(path: str):
    """``(predictor, channels, class names or None)`` for ``--model_path``: an exported artifact
    (`trainers.deploy.Artifact`), or a run's model behind the same test-time preprocessing an export
    puts in front of it (`trainers.deploy.deployable`: the run's crop, or --central_crop, then the
    resize; a box put back on the whole image), so that a run and its artifacts answer alike."""
    from trainers import saved as saved_models
    from trainers.saved import read_class_names

    exported, artifact = saved_models.exported_kind(path), deploy.is_artifact(path)
    if exported and not artifact:  # the run's export/, or another program's artifact
        raise UserError(
            f"--model_path={path}: {path} is {exported} without the {os.path.basename(deploy.sidecar(path))} that "
            f"trainers.export writes beside its artifacts; accepted: a run directory, a .keras file or an artifact "
            f"of trainers.export{saved_models.run_hint(path)}"
        )
    if artifact:
        if FLAGS.central_crop is not None:
            raise UserError(f"--central_crop: {path} is an exported model, which crops as its run did; drop the flag")
        try:
            artifact = deploy.Artifact.open(path)
        except deploy.ExportError as error:
            raise UserError(f"--model_path={path}: {error}") from None
        names = artifact.class_names
        if FLAGS.class_names:
            try:
                names = read_class_names(FLAGS.class_names, artifact.num_classes)
            except ValueError as error:
                raise UserError(f"--class_names={FLAGS.class_names}: {error}") from None
        return artifact, artifact.channels, names
    saved = cli.open_saved(path)
    if saved.weights_note:
        print(saved.weights_note)
    try:
        names = saved.class_names(FLAGS.class_names)
    except ValueError as error:
        raise UserError(f"--class_names={FLAGS.class_names or ''}: {error}") from None
    # As evaluate measured the model (the run's test-time crop) unless --central_crop says otherwise.
    central_crop = saved.central_crop if FLAGS.central_crop is None else FLAGS.central_crop
    outputs = ("class", "bbox") if saved.head == "localize" else ("class",)
    predictor = deploy.deployable(saved.model, central_crop=central_crop, outputs=outputs)
    return predictor, saved.model.input_shape[-1], names


def predict_whole_images(predictor, paths, channels: int):
    """Probabilities and boxes (None for a classifier) of ``predictor`` for the image files
    ``paths``, each given whole at its own size: the predictor preprocesses itself."""
    import numpy as np

    import pipelines

    probabilities, boxes = [], []
    for path in paths:
        try:
            image = pipelines.load_images([path], None, channels, central_crop=False)
        except pipelines.DataError as error:
            raise UserError(str(error)) from None
        out = predictor(image)
        out = out if isinstance(out, dict) else {"class": out}
        probabilities.append(np.asarray(out["class"]))
        if "bbox" in out:
            boxes.append(np.asarray(out["bbox"]))
    return np.concatenate(probabilities), (np.concatenate(boxes) if boxes else None)


def print_predictions(paths, probabilities, boxes, names, imagenet: bool = False) -> None:
    """Each image's top-K classes (ImageNet's names by `decode_predictions` for a pretrained
    classifier without --class_names) and its box."""
    import numpy as np

    num_classes = probabilities.shape[-1]
    top_k = min(FLAGS.top_k, num_classes)

    decoded = None
    if names is None and imagenet and num_classes == IMAGENET_CLASSES:
        import keras

        try:
            decoded = keras.applications.imagenet_utils.decode_predictions(probabilities, top=top_k)
        except Exception as error:  # the class index is downloaded on first use
            print(f"warning: ImageNet class names unavailable ({error_line(error)}); printing class ids")
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


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
