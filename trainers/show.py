"""See it: the seed's figures as a command, and the pictures people debug with.

    python -m trainers.show KIND --out=DIR [flags] [INPUT ...]

    filters      the chapter's hand-made 7x7 line filters, their feature maps whole and zoomed on
                 the window [150:220, 130:250], and the kernels
    pooling      2x2 max and average pooling of that window (and depthwise max pooling, the book's
                 addition); global average pooling's values printed as the chapter prints them
    transpose    Conv2DTranspose(5, 3, strides=2) on the images at 224x224, the zeros the stride
                 inserts, and the same computed by hand, with their largest difference printed
    dataset      one batch of --dataset/--split, raw or augmented (--augment) as training sees it,
                 with class names and, for --head=localize, boxes
    predictions  a saved model's top class (and predicted vs true boxes) on a grid; mistakes in red
    pr           a localize model's precision/recall curves with the interpolated (max) precisions
                 and the mAP, from its own detections on a split; or, with --precisions=P0,...,P10,
                 the chapter's hand-made example (precisions at recall 0, 0.1, ..., 1)
    confusion    a saved model's confusion matrix on a split (default: its run's test split), counts
                 in the cells, colored by the share of each true class; the class report printed
    history      loss and accuracy of the INPUT run directories (from their TensorBoard logs), both
                 phases of a transfer run on one epoch axis

filters, pooling and transpose take the chapter's two photos (scikit-learn's china.jpg and
flower.jpg) when no INPUT image is given; a user's images are used at their own size.

Writes PNG files into --out and prints their paths. Needs matplotlib (`pip install .[figures]`;
`make install` installs it).
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
from absl import flags

from pipelines import durable
from trainers import cli
from trainers.cli import UserError

FLAGS = flags.FLAGS
DPI = 100
# Every figure's size in inches, (width, height per row of images): the PNG is
# (rows * height * DPI, width * DPI) pixels.
SIZES = {
    "filters": (9.0, 2.6),
    "filters_zoom": (9.0, 2.6),
    "filters_kernels": (5.0, 2.8),
    "pooling": (12.0, 2.6),
    "transpose": (12.0, 3.4),
    "dataset": (9.0, 9.0),
    "predictions": (9.0, 9.0),
    "pr": (8.0, 6.0),
    "confusion": (8.0, 7.0),
    "history": (12.0, 5.0),
}


@dataclasses.dataclass(frozen=True)
class Options:
    """What the kinds of figure take besides their inputs (the flags of the same names)."""

    model_path: str | None = None
    dataset: str | None = None
    split: str | None = None
    data_dir: str | None = None
    image_size: int | None = None
    augment: tuple[str, ...] = ()
    head: str = "classify"
    count: int = 9
    seed: int = 0
    precisions: tuple[str, ...] = ()

    @classmethod
    def from_flags(cls, flag_values) -> Options:
        values = {field.name: flag_values[field.name].value for field in dataclasses.fields(cls)}
        return cls(
            **{**values, "augment": tuple(values["augment"] or ()), "precisions": tuple(values["precisions"] or ())}
        )


def define_flags() -> None:
    flags.DEFINE_string("out", None, "Folder to write the PNG files into (created).")
    flags.DEFINE_string("model_path", None, "predictions, pr: a .keras file or a run directory.")
    flags.DEFINE_string("dataset", None, "dataset, predictions, pr: the source (default: the run's, else shapes).")
    flags.DEFINE_string("split", None, "dataset: default train; predictions, pr: default the run's test split.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    from zoo.common import HEADS, MIN_IMAGE_SIZE

    flags.DEFINE_integer(
        "image_size", None, "dataset: image size (default: the source's own).", lower_bound=MIN_IMAGE_SIZE
    )
    flags.DEFINE_list("augment", [], "dataset: augmentations to apply as training does (default: none, raw).")
    flags.DEFINE_enum("head", "classify", list(HEADS), "dataset: localize draws the boxes.")
    flags.DEFINE_integer("count", 9, "Images in a grid.", lower_bound=1, upper_bound=64)
    flags.DEFINE_integer("seed", 0, "Seed of the augmentation.")
    flags.DEFINE_list(
        "precisions",
        [],
        "pr: instead of a model, 11 precisions at recall 0, 0.1, ..., 1 (the chapter's example: "
        "0.91,0.94,0.96,0.94,0.95,0.92,0.80,0.60,0.45,0.20,0.10).",
    )
    flags.mark_flag_as_required("out")


# ------------------------------------------------------------------------------------- helpers


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("figures need matplotlib: pip install '.[figures]' (make install installs it)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_size(kind: str, rows: int = 1) -> tuple[int, int]:
    """(height, width) in pixels of the PNG of ``kind`` with ``rows`` rows of images."""
    width, height = SIZES[kind]
    return round(rows * height * DPI), round(width * DPI)


def _figure(kind: str, rows: int = 1):
    plt = _pyplot()
    width, height = SIZES[kind]
    return plt.figure(figsize=(width, rows * height), dpi=DPI)


def _save(figure, out: str, name: str) -> str:
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.png")
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _grid_shape(count: int) -> tuple[int, int]:
    columns = int(np.ceil(np.sqrt(count)))
    return int(np.ceil(count / columns)), columns


def read_photos(paths) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB float32 image in [0, 1] at its own size)`` for each path, checked first
    (UserError naming a bad file); JPEGs decoded as Pillow decodes them. Without paths, the
    chapter's two photos (scikit-learn's china.jpg and flower.jpg, 427x640)."""
    import pipelines
    from pipelines.images import SAMPLE_PHOTOS

    try:
        if not paths:
            return list(zip(SAMPLE_PHOTOS, pipelines.sample_photos()))
        pipelines.check_image_paths(paths)
        return [
            (
                os.path.basename(path),
                pipelines.load_images([path], None, channels=3, central_crop=False, exact_jpeg=True)[0].numpy() / 255,
            )
            for path in paths
        ]
    except pipelines.DataError as error:
        raise UserError(str(error)) from None


def _window_title(window) -> str:
    rows, columns = window
    return f"[{rows.start}:{rows.stop}, {columns.start}:{columns.stop}]"


def _show(axis, image, title=None, color="black", cmap=None):
    axis.imshow(np.clip(image, 0, 1), cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=9, color=color)


def _box(axis, box, height, width, color):
    """Draw a normalized [ymin, xmin, ymax, xmax] box on an image of (height, width) pixels."""
    import matplotlib.patches as patches

    ymin, xmin, ymax, xmax = (float(v) for v in box)
    axis.add_patch(
        patches.Rectangle(
            (xmin * width - 0.5, ymin * height - 0.5),
            (xmax - xmin) * width,
            (ymax - ymin) * height,
            fill=False,
            edgecolor=color,
            linewidth=1.5,
        )
    )


def _normalized(maps: np.ndarray) -> np.ndarray:
    low, high = maps.min(), maps.max()
    return (maps - low) / (high - low) if high > low else np.zeros_like(maps)


# ------------------------------------------------------------------------------------- the kinds


def show_filters(out: str, inputs, options: Options) -> list[str]:
    """The chapter's hand-made 7x7 filters (a vertical and a horizontal white line), `tf.nn.conv2d`
    with stride 1 and SAME padding on each whole image; the feature maps whole, zoomed on the
    chapter's window, and the two kernels."""
    from zoo.filters import apply_filters, line_filters, window_of

    photos = read_photos(inputs)
    filters = line_filters(7, 3)
    paths = []
    for name, zoom in (("filters", False), ("filters_zoom", True)):
        figure = _figure(name, rows=len(photos))
        axes = figure.subplots(len(photos), 3, squeeze=False)
        for row, (title, image) in enumerate(photos):
            maps = apply_filters(image[None], filters)[0].numpy()
            if zoom:
                window = window_of(*image.shape[:2])
                image, maps = image[window], maps[window]
                title = f"{title} {_window_title(window)}"
            _show(axes[row, 0], image, title)
            _show(axes[row, 1], _normalized(maps[..., 0]), "vertical line filter", cmap="gray")
            _show(axes[row, 2], _normalized(maps[..., 1]), "horizontal line filter", cmap="gray")
        figure.suptitle("hand-made 7x7 filters, stride 1, SAME padding" + (", zoomed" if zoom else ""))
        paths.append(_save(figure, out, name))
    figure = _figure("filters_kernels")
    axes = figure.subplots(1, 2)
    for axis, index, title in ((axes[0], 0, "vertical line"), (axes[1], 1, "horizontal line")):
        _show(axis, filters[:, :, 0, index], f"{title} kernel (7x7, every channel)", cmap="gray")
    paths.append(_save(figure, out, "filters_kernels"))
    return paths


def show_pooling(out: str, inputs, options: Options) -> list[str]:
    """The chapter's pooling: 2x2 max and average pooling of each image's window, drawn beside it,
    then global average pooling of the windows (printed, as the chapter prints it). Depthwise max
    pooling over the 3 channels is the book's addition."""
    import keras

    from zoo.filters import depthwise_max_pool, window_of

    photos = read_photos(inputs)
    figure = _figure("pooling", rows=len(photos))
    axes = figure.subplots(len(photos), 4, squeeze=False)
    lines = []
    for row, (name, image) in enumerate(photos):
        window = window_of(*image.shape[:2])
        crop = image[window][None].astype("float32")
        max_pooled = keras.layers.MaxPool2D(pool_size=2)(crop)[0].numpy()
        average_pooled = keras.layers.AvgPool2D(pool_size=2)(crop)[0].numpy()
        depthwise = np.asarray(depthwise_max_pool(crop, 3))[0, ..., 0]
        average = keras.layers.GlobalAvgPool2D()(crop)[0].numpy()
        lines.append(f"  {name:<16} {_window_title(window):<16} [" + ", ".join(f"{v:.4f}" for v in average) + "]")
        _show(axes[row, 0], crop[0], f"{name} {_window_title(window)}\n{crop.shape[1]}x{crop.shape[2]}")
        _show(axes[row, 1], max_pooled, f"max pool 2x2\n{max_pooled.shape[0]}x{max_pooled.shape[1]}")
        _show(axes[row, 2], average_pooled, f"average pool 2x2\n{average_pooled.shape[0]}x{average_pooled.shape[1]}")
        _show(axes[row, 3], depthwise, "depthwise max pool (the book's addition)\nmax over R, G, B", cmap="gray")
    print("global average pooling of each window (R, G, B):")
    print("\n".join(lines))
    return [_save(figure, out, "pooling")]


TRANSPOSE_SIZE = 224  # the chapter resizes its photos to 224x224 for the transposed convolution


def show_transpose(out: str, inputs, options: Options) -> list[str]:
    """The chapter's transposed convolution: the images resized to 224x224, a 3x3 stride-2 VALID
    `Conv2DTranspose` with 5 filters (seed 42) -> 449x449x5, drawn normalized; beside it the
    zeros the stride inserts and the manual version (flipped kernel, channel axes swapped, VALID
    convolution), with the largest difference between the two printed."""
    import tensorflow as tf

    from zoo.transposed_conv import insert_zeros, transposed_conv_example

    photos = read_photos(inputs)
    size = (TRANSPOSE_SIZE, TRANSPOSE_SIZE)
    images = tf.stack([tf.image.resize(image, size) for _, image in photos]).numpy()
    _, output, manual = transposed_conv_example(images)
    spread = insert_zeros(images, 2).numpy()
    difference = float(np.abs(output - manual).max())
    print(f"Conv2DTranspose(filters=5, kernel_size=3, strides=2, padding='valid'): {images.shape} -> {output.shape}")
    print(f"largest |layer - manual| difference: {difference:.3g}")
    figure = _figure("transpose", rows=len(photos))
    axes = figure.subplots(len(photos), 4, squeeze=False)
    for row, (name, _) in enumerate(photos):
        _show(axes[row, 0], images[row], f"{name} resized to {size[0]}x{size[1]}")
        _show(axes[row, 1], spread[row], f"zeros inserted (stride 2): {spread.shape[1]}x{spread.shape[2]}")
        _show(
            axes[row, 2], _normalized(output[row, ..., :3]), f"Conv2DTranspose: {output.shape[1]}x{output.shape[2]}x5"
        )
        _show(axes[row, 3], _normalized(manual[row, ..., :3]), f"by hand (max difference {difference:.1g})")
    figure.suptitle("transposed convolution, 3x3 kernel, stride 2, VALID (first 3 of 5 channels, normalized)")
    return [_save(figure, out, "transpose")]


def show_dataset(out: str, inputs, options: Options) -> list[str]:
    """One batch of a source, raw or augmented as training sees it, with names and boxes."""
    import pipelines

    source = options.dataset or "shapes"
    split = options.split or "train"
    try:
        dataset, info = pipelines.load(
            source,
            split,
            task=options.head,
            image_size=options.image_size,
            batch_size=options.count,
            training=bool(options.augment),
            augment=options.augment,
            seed=options.seed,
            data_dir=options.data_dir,
            channels=3,
        )
        images, targets = next(iter(dataset))
    except pipelines.DataError as error:
        raise UserError(f"--dataset={source} --split={split}: {error}") from None
    except StopIteration:
        raise UserError(f"--dataset={source} --split={split}: fewer than --count={options.count} images") from None
    labels = targets["class"] if isinstance(targets, dict) else targets
    figure = _figure("dataset")
    rows, columns = _grid_shape(len(images))
    for index in range(len(images)):
        axis = figure.add_subplot(rows, columns, index + 1)
        image = images[index].numpy() / 255.0
        _show(axis, image, _label_title(labels[index].numpy(), info.class_names))
        if isinstance(targets, dict):
            _box(axis, targets["bbox"][index], image.shape[0], image.shape[1], "lime")
    augmented = f", augmented: {', '.join(options.augment)}" if options.augment else ", raw"
    figure.suptitle(f"{source} {split}{augmented}")
    return [_save(figure, out, "dataset")]


def _label_title(label, class_names) -> str:
    """A class id's name; mixed labels (mixup, cutmix) as their two shares, larger first."""
    if np.ndim(label) == 0:
        return class_names[int(label)]
    shares = [(float(label[i]), class_names[i]) for i in np.argsort(-label)[:2] if label[i] > 0.005]
    return " + ".join(f"{name} {share:.0%}" for share, name in shares)


def _model_and_data(options: Options, figure: str | None = None):
    """The model of --model_path, and one split of its data as its run evaluated it; ``figure``:
    the name of a figure that needs a localize model, refused before any data is read."""

    if not options.model_path:
        raise UserError("--model_path is required: a .keras file or a run directory")
    saved = cli.open_saved(
        options.model_path, dataset=options.dataset, data_dir=options.data_dir, batch_size=options.count
    )
    if figure and saved.head != "localize":
        raise UserError(
            f"--model_path={options.model_path}: the model has no box head; {figure} needs a localize model"
        )
    split = options.split or saved.config.test_split or "test"
    dataset, info = cli.evaluation_data(saved, split)
    return saved.model, dataset, info, split


def show_predictions(out: str, inputs, options: Options) -> list[str]:
    """A saved model's top class on a grid of images (and its box, beside the true one)."""
    model, dataset, info, split = _model_and_data(options)
    images, targets = next(iter(dataset))
    predicted = model.predict_on_batch(images)
    localize = isinstance(predicted, dict)
    probabilities = np.asarray(predicted["class"] if localize else predicted)
    labels = np.asarray(targets["class"] if localize else targets)
    figure = _figure("predictions")
    rows, columns = _grid_shape(len(images))
    mistakes = 0
    for index in range(len(images)):
        axis = figure.add_subplot(rows, columns, index + 1)
        top = int(np.argmax(probabilities[index]))
        wrong = top != int(labels[index])
        mistakes += wrong
        title = f"{info.class_names[top]} {probabilities[index, top]:.0%}"
        if wrong:
            title += f"\n(true: {info.class_names[int(labels[index])]})"
        image = images[index].numpy() / 255.0
        _show(axis, image, title, color="red" if wrong else "black")
        if localize:
            _box(axis, targets["bbox"][index], image.shape[0], image.shape[1], "lime")
            _box(axis, predicted["bbox"][index], image.shape[0], image.shape[1], "red")
    legend = "; boxes: green true, red predicted" if localize else ""
    figure.suptitle(f"{split}: {mistakes} mistake(s) of {len(images)}, in red{legend}")
    return [_save(figure, out, "predictions")]


CHAPTER_RECALL_POINTS = 11


def _precision_points(values) -> np.ndarray:
    """--precisions as 11 floats in [0, 1], or UserError naming the bad value."""
    given = ",".join(values)
    try:
        precisions = np.array([float(v) for v in values])
    except ValueError:
        precisions = None
    if (
        precisions is None
        or len(precisions) != CHAPTER_RECALL_POINTS
        or not np.all((precisions >= 0) & (precisions <= 1))
    ):
        raise UserError(
            f"--precisions={given}: give {CHAPTER_RECALL_POINTS} numbers in [0, 1], the precisions at recall "
            f"0, 0.1, ..., 1 (e.g. 0.91,0.94,0.96,0.94,0.95,0.92,0.80,0.60,0.45,0.20,0.10)"
        )
    return precisions


def show_precision_points(out: str, precisions) -> list[str]:
    """The chapter's mAP example: precisions at 11 recall points, the maximum precision at each
    (the largest at that recall or above) and their mean, the mAP."""
    from trainers.metrics import interpolated_precisions

    precisions = _precision_points(precisions)
    recalls = np.linspace(0, 1, CHAPTER_RECALL_POINTS)
    maximum = interpolated_precisions(precisions, recalls, recall_points=CHAPTER_RECALL_POINTS)
    print("recall:            " + " ".join(f"{r:.2f}" for r in recalls))
    print("precision:         " + " ".join(f"{p:.2f}" for p in precisions))
    print("maximum precision: " + " ".join(f"{p:.2f}" for p in maximum))
    print(f"mAP (mean of the maximum precisions): {maximum.mean():.4f}")
    figure = _figure("pr")
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(recalls, precisions, "o-", label="precision")
    axis.plot(recalls, maximum, "s--", color="tab:red", label="maximum precision at this recall or above")
    axis.fill_between(recalls, 0, maximum, step=None, alpha=0.1, color="tab:red")
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.05)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=9, loc="lower left")
    axis.set_title(f"mAP = mean of the {CHAPTER_RECALL_POINTS} maximum precisions = {maximum.mean():.4f}", fontsize=10)
    return [_save(figure, out, "pr")]


def show_pr(out: str, inputs, options: Options) -> list[str]:
    """The seed's mAP figure, from real detections: precision/recall and 11-point max precisions
    (or, with --precisions, the chapter's hand-made example)."""
    from trainers.metrics import mean_average_precision, single_object_detections

    if options.precisions:
        if options.model_path:
            raise UserError("give --model_path (a model's curve) or --precisions (the chapter's example), not both")
        return show_precision_points(out, options.precisions)
    model, dataset, info, split = _model_and_data(options, figure="pr")
    truth, found = single_object_detections(model, dataset)
    result = mean_average_precision(truth, found, iou_thresholds=(0.5,), recall_points=11)
    figure = _figure("pr")
    axis = figure.add_subplot(1, 1, 1)
    points = np.linspace(0, 1, 11)
    for label, ap in result.per_class.items():
        (line,) = axis.plot(
            result.recall[label], result.precision[label], label=f"{info.class_names[label]} (AP {ap:.3f})"
        )
        axis.plot(points, result.interpolated[label], "o--", color=line.get_color(), markersize=4, alpha=0.6)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=8, loc="lower left")
    axis.set_title(
        f"{split}: mAP@0.5 = {result.mean:.3f} (VOC 2007; dots: max precision at recall >= 0, 0.1, ..., 1)",
        fontsize=10,
    )
    print(f"mAP@0.5 (VOC 2007, 11 points) on {split}: {result.mean:.4f}")
    return [_save(figure, out, "pr")]


def show_confusion(out: str, inputs, options: Options) -> list[str]:
    """A saved model's confusion matrix on a split, and its class report printed."""
    from trainers.metrics import classification_report, format_report, predict_split, row_shares

    if inputs:
        raise UserError(f"confusion takes no INPUT, received {' '.join(inputs)}; give --model_path")
    model, dataset, info, split = _model_and_data(options)
    predictions = predict_split(model, dataset)
    report = classification_report(predictions.true_classes, predictions.probabilities, info.class_names)
    matrix = np.asarray(report["confusion_matrix"])
    share = row_shares(matrix)
    figure = _figure("confusion")
    axis = figure.add_subplot(1, 1, 1)
    axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = info.class_names
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if len(names) <= 30:  # counts stay readable
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if share[row, column] > 0.5 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axis.set_title(f"{split}: {matrix.sum()} images, accuracy {accuracy:.3f}, macro F1 {report['macro_f1']:.3f}")
    figure.tight_layout()
    print(format_report(report))
    return [_save(figure, out, "confusion")]


def _scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds in ``log_dir`` (all event files: every restart), by tag."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    found: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        events = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
        events.Reload()
        for tag in events.Tags().get("tensors", []):
            for event in events.Tensors(tag):
                value = tf.make_ndarray(event.tensor_proto)
                if value.dtype.kind in "fiu" and value.size == 1:  # not the model's text summary
                    found.setdefault(tag, {})[event.step] = float(value)
    return {tag: sorted(points.items()) for tag, points in found.items()}


def show_history(out: str, inputs, options: Options) -> list[str]:
    """Loss and accuracy per epoch of one or more run directories, training and validation."""
    from trainers.config import TrainConfig
    from trainers.rundir import RunDir

    if not inputs:
        raise UserError("history needs one or more run directories: python -m trainers.show history --out=DIR RUN...")
    figure = _figure("history")
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for run_dir in inputs:
        run = RunDir(run_dir)
        train_logs = os.path.join(run.logs_dir, "train")
        if not glob.glob(os.path.join(train_logs, "events.out.tfevents.*")):
            raise UserError(f"{run_dir} has no TensorBoard logs ({train_logs}); give a run directory of trainers.train")
        name = os.path.basename(os.path.normpath(run_dir))
        for subset, style in (("train", "-"), ("validation", "--")):
            scalars = _scalars(os.path.join(run.logs_dir, subset))
            for axis, tags in (
                (loss_axis, ("epoch_loss",)),
                (accuracy_axis, ("epoch_accuracy", "epoch_class_accuracy")),
            ):
                tag = next((t for t in tags if t in scalars), None)
                if tag:
                    steps, values = zip(*scalars[tag])
                    axis.plot(np.array(steps) + 1, values, style, marker="o", markersize=3, label=f"{name} {subset}")
        if os.path.exists(run.flags_file):
            config = TrainConfig.from_flagfile(run.flags_file)
            if config.freeze_epochs and config.finetune_epochs:
                for axis in (loss_axis, accuracy_axis):
                    axis.axvline(config.freeze_epochs + 0.5, color="gray", linestyle=":", linewidth=1)
    from matplotlib.ticker import MaxNLocator

    loss_axis.set_yscale("log")  # early validation spikes would flatten the rest
    for axis, title in ((loss_axis, "loss (log scale)"), (accuracy_axis, "accuracy")):
        axis.set_xlabel("epoch (dotted line: unfreezing)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(title)
        axis.legend(fontsize=8)
    return [_save(figure, out, "history")]


KINDS = {
    "filters": show_filters,
    "pooling": show_pooling,
    "transpose": show_transpose,
    "dataset": show_dataset,
    "predictions": show_predictions,
    "pr": show_pr,
    "confusion": show_confusion,
    "history": show_history,
}


def show(kind: str, out: str, inputs=(), options: Options | None = None) -> list[str]:
    """Write the figures of ``kind`` into ``out``; returns their paths."""
    if kind not in KINDS:
        raise UserError(f"unknown figure {kind!r}; accepted: {', '.join(KINDS)}")
    _pyplot()  # says which package to install before any work
    problem = durable.unwritable(out)
    if problem:  # before any model is loaded or figure drawn
        raise UserError(f"--out={out}: {problem}")
    return KINDS[kind](out, list(inputs), options or Options())


def main(argv):
    if len(argv) < 2:
        raise UserError(
            f"give the figure to draw: python -m trainers.show KIND --out=DIR; KIND is one of {', '.join(KINDS)}"
        )
    for path in show(argv[1], FLAGS.out, argv[2:], Options.from_flags(FLAGS)):
        print(path)
    return 0


def entry_point():
    cli.run(main, define_flags)


if __name__ == "__main__":
    entry_point()
