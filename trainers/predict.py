"""Predict classes (and boxes) for image files.

    python -m trainers.predict --model_path=runs/shapes [--top_k=3] IMAGE...
    python -m trainers.predict --model=resnet50 --weights=imagenet IMAGE...
    python -m trainers.predict --model=resnet50 --weights=imagenet --chapter_photos
    python -m trainers.predict --model_path=runs/shapes/deploy/model-int8.tflite IMAGE...

For each image, prints the top-K classes with their probabilities, the way the chapter prints
`decode_predictions`, and the box ([ymin, xmin, ymax, xmax], normalized) for localize models.
Images are decoded, central-cropped or not, and resized to the model's input size; the model does
its own pixel scaling. The crop (--central_crop) defaults to what `trainers.evaluate` does with the
same model: for a run directory, the run's test-time crop (on if it trained on random crops); for a
bare .keras file, the trainer's default (off).

--model_path may also be an artifact of `trainers.export` (a SavedModel folder, a .tflite or an
.onnx file, with its .json beside it): each image is given to it whole, at its own size, and it
preprocesses itself; the output is the same, boxes included (on the whole image, as they are for
a run directory, whose boxes predicted on a crop are put back on the whole image).

--model=resnet50 or xception predicts with the pretrained ImageNet classifier as the chapter does:
the whole photo resized to the network's size (224 or 299; no crop unless --central_crop), JPEGs
decoded as Pillow decodes them, then the application's own `preprocess_input` inside the model.
--weights is "imagenet" (Keras downloads the file once) or a file you have: the `.h5` that
`keras.applications.ResNet50(weights="imagenet")` leaves in ~/.keras/models, or the
`save_weights` of a plain `keras.applications.ResNet50()` / `Xception()`.
"""

from __future__ import annotations

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


def model_inputs(model, paths, central_crop: bool, pretrained: bool, windows: list | None = None):
    """The batch ``model`` is given for the image files ``paths``: decoded, central-cropped when
    asked, resized to the model's input size, raw pixels in [0, 255] (the model scales them
    itself). A ``pretrained`` ImageNet classifier sees JPEGs as Pillow decodes them, as in the
    chapter; a trained model sees them as its input pipeline did."""
    import pipelines

    height, width, channels = model.input_shape[1:]
    try:
        return pipelines.load_images(paths, (height, width), channels, central_crop, pretrained, windows)
    except pipelines.DataError as error:
        raise UserError(str(error)) from None


def main(argv):
    import numpy as np

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

    if FLAGS.model_path and deploy.is_artifact(FLAGS.model_path):
        probabilities, boxes, names = predict_with_artifact(FLAGS.model_path, paths)
        print_predictions(paths, probabilities, boxes, names)
        return 0
    central_crop = FLAGS.central_crop
    names = None
    if FLAGS.model_path:
        saved = cli.open_saved(FLAGS.model_path)
        model = saved.model
        if saved.weights_note:
            print(saved.weights_note)
        if central_crop is None:  # as evaluate measured the model: the same images give the same answers
            central_crop = saved.central_crop
        try:
            names = saved.class_names(FLAGS.class_names)
        except ValueError as error:
            raise UserError(f"--class_names={FLAGS.class_names or ''}: {error}") from None
    else:
        model = build_pretrained(FLAGS.model, FLAGS.weights, FLAGS.image_size)
        central_crop = bool(central_crop)  # the chapter resizes the whole photo
        if FLAGS.class_names:
            try:
                names = read_class_names(FLAGS.class_names, IMAGENET_CLASSES)
            except ValueError as error:
                raise UserError(f"--class_names={FLAGS.class_names}: {error}") from None
    windows = []
    images = model_inputs(model, paths, central_crop, pretrained=bool(FLAGS.model), windows=windows)
    outputs = model.predict(images, verbose=0)
    probabilities = outputs["class"] if isinstance(outputs, dict) else outputs
    boxes = None
    if isinstance(outputs, dict):  # predicted on the crop: put back on the whole image, as an export does
        from pipelines import ops

        boxes = np.stack([ops.uncrop_box(box, *window).numpy() for box, window in zip(outputs["bbox"], windows)])
    print_predictions(paths, probabilities, boxes, names, imagenet=bool(FLAGS.model))
    return 0


def predict_with_artifact(path: str, paths):
    """Probabilities, boxes (or None) and class names of an exported model (`trainers.export`) for
    the image files ``paths``, each given whole at its own size: the artifact preprocesses itself."""
    import numpy as np

    import pipelines
    from trainers.saved import read_class_names

    if FLAGS.central_crop is not None:
        raise UserError(
            f"--central_crop: {path} is an exported model, which crops (or not) as its run did; drop the flag"
        )
    try:
        artifact = deploy.Artifact.open(path)
    except deploy.ExportError as error:
        raise UserError(f"--model_path={path}: {error}") from None
    try:
        outputs = [artifact(pipelines.load_images([p], None, artifact.channels, central_crop=False)) for p in paths]
    except pipelines.DataError as error:
        raise UserError(str(error)) from None
    names = artifact.class_names
    if FLAGS.class_names:
        count = (outputs[0]["class"] if isinstance(outputs[0], dict) else outputs[0]).shape[-1]
        try:
            names = read_class_names(FLAGS.class_names, count)
        except ValueError as error:
            raise UserError(f"--class_names={FLAGS.class_names}: {error}") from None
    if artifact.head == "classify":
        return np.concatenate(outputs), None, names
    return np.concatenate([o["class"] for o in outputs]), np.concatenate([o["bbox"] for o in outputs]), names


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
