"""See it: the seed's figures as a command, and the pictures people debug with.

    python -m trainers.show KIND --out=DIR [flags] [INPUT ...]

    filters      the hand-made vertical and horizontal line filters and their feature maps, whole
                 and zoomed, on the INPUT images (a built-in example when none is given)
    pooling      an image before and after 2x2 max and average pooling, depthwise max pooling, and
                 global average pooling's values (printed and drawn)
    transpose    input, zero-inserted upscaling, and the transposed convolution's output
    dataset      one batch of --dataset/--split, raw or augmented (--augment) as training sees it,
                 with class names and, for --head=localize, boxes
    predictions  a saved model's top class (and predicted vs true boxes) on a grid; mistakes in red
    pr           a localize model's precision/recall curves with the interpolated (max) precisions
                 and the mAP, from its own detections on a split
    history      loss and accuracy of the INPUT run directories (from their TensorBoard logs), both
                 phases of a transfer run on one epoch axis

Writes PNG files into --out and prints their paths. Needs matplotlib (`pip install .[figures]`;
`make install` installs it).
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
from absl import flags

from trainers import cli
from trainers.cli import UserError

FLAGS = flags.FLAGS
DPI = 100
# Every figure's size in inches, (width, height per row of images): the PNG is
# (rows * height * DPI, width * DPI) pixels.
SIZES = {
    "filters": (9.0, 3.3),
    "filters_zoom": (9.0, 3.3),
    "pooling": (12.0, 3.6),
    "transpose": (12.0, 4.0),
    "dataset": (9.0, 9.0),
    "predictions": (9.0, 9.0),
    "pr": (8.0, 6.0),
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

    @classmethod
    def from_flags(cls, flag_values) -> Options:
        values = {field.name: flag_values[field.name].value for field in dataclasses.fields(cls)}
        return cls(**{**values, "augment": tuple(values["augment"] or ())})


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


def read_images(paths, size: int = 192) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB float image in [0, 1], size x size)`` for each path, checked and decoded as
    `trainers.predict` decodes them (UserError naming a bad file). Without paths, one built-in
    example: a shape from the synthetic set."""
    import pipelines

    if not paths:
        from pipelines import shapes

        example = shapes.render(3, height=size, width=size, split="test")
        return [("built-in example", np.asarray(example["image"], np.float32) / 255.0)]
    try:
        pipelines.check_image_paths(paths)
        images = np.asarray(pipelines.load_images(paths, (size, size), channels=3, central_crop=False)) / 255.0
    except pipelines.DataError as error:
        raise UserError(str(error)) from None
    return [(os.path.basename(path), image) for path, image in zip(paths, images)]


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
    """The seed's filters: each image, and its feature maps for the vertical and horizontal line."""
    from zoo.filters import apply_filters, line_filters

    images = read_images(inputs, size=192)
    paths = []
    for name, crop in (("filters", None), ("filters_zoom", 3)):
        figure = _figure(name, rows=len(images))
        axes = figure.subplots(len(images), 3, squeeze=False)
        for row, (title, image) in enumerate(images):
            maps = apply_filters(image[None], line_filters(7, 3))[0].numpy()
            if crop:  # the middle third, enlarged: the lines the filters pick out
                h, w = image.shape[:2]
                window = (slice(h // crop, 2 * h // crop), slice(w // crop, 2 * w // crop))
                image, maps = image[window], maps[window]
            _show(axes[row, 0], image, title)
            _show(axes[row, 1], _normalized(maps[..., 0]), "vertical line filter", cmap="gray")
            _show(axes[row, 2], _normalized(maps[..., 1]), "horizontal line filter", cmap="gray")
        figure.suptitle("hand-made 7x7 filters" + (", zoomed on the middle" if crop else ""))
        paths.append(_save(figure, out, name))
    return paths


def show_pooling(out: str, inputs, options: Options) -> list[str]:
    """Max and average pooling (2x2, stride 2), depthwise max pooling, global average pooling."""
    import keras

    from zoo.filters import depthwise_max_pool

    name, image = read_images(inputs[:1], size=192)[0]
    batch = image[None].astype("float32")
    max_pooled = keras.layers.MaxPool2D(pool_size=2)(batch)[0].numpy()
    average_pooled = keras.layers.AvgPool2D(pool_size=2)(batch)[0].numpy()
    depthwise = np.asarray(depthwise_max_pool(batch, 3))[0, ..., 0]
    global_average = keras.layers.GlobalAvgPool2D()(batch)[0].numpy()
    print(f"global average pooling of {name}: " + ", ".join(f"{c}={v:.4f}" for c, v in zip("RGB", global_average)))
    figure = _figure("pooling")
    axes = figure.subplots(1, 5)
    _show(axes[0], image, f"{name}\n{image.shape[0]}x{image.shape[1]}")
    _show(axes[1], max_pooled, f"max pool 2x2\n{max_pooled.shape[0]}x{max_pooled.shape[1]}")
    _show(axes[2], average_pooled, f"average pool 2x2\n{average_pooled.shape[0]}x{average_pooled.shape[1]}")
    _show(axes[3], depthwise, "depthwise max pool\n(max over R, G, B)", cmap="gray")
    axes[4].bar(["R", "G", "B"], global_average, color=["tab:red", "tab:green", "tab:blue"])
    axes[4].set_ylim(0, 1)
    axes[4].set_title("global average pool", fontsize=9)
    for x, value in enumerate(global_average):
        axes[4].text(x, value + 0.02, f"{value:.3f}", ha="center", fontsize=8)
    return [_save(figure, out, "pooling")]


def show_transpose(out: str, inputs, options: Options) -> list[str]:
    """The seed's transposed convolution, spelled out: spread the pixels, then convolve."""
    import tensorflow as tf

    from zoo.transposed_conv import insert_zeros, transposed_conv2d

    name, image = read_images(inputs[:1], size=192)[0]
    small = tf.image.resize(image[None], (24, 24), antialias=True)
    spread = insert_zeros(small, 2)
    # A bilinear kernel per channel: the transposed convolution that upsamples by 2.
    weights = np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5]).astype("float32")
    kernel = np.zeros((3, 3, 3, 3), "float32")
    for channel in range(3):
        kernel[:, :, channel, channel] = weights
    upsampled = transposed_conv2d(small, kernel, strides=2)
    figure = _figure("transpose")
    axes = figure.subplots(1, 3)
    for axis, picture, title in (
        (axes[0], small[0], f"input {small.shape[1]}x{small.shape[2]}"),
        (axes[1], spread[0], f"zeros inserted (stride 2): {spread.shape[1]}x{spread.shape[2]}"),
        (
            axes[2],
            upsampled[0],
            f"transposed convolution, 3x3 bilinear kernel: {upsampled.shape[1]}x{upsampled.shape[2]}",
        ),
    ):
        _show(axis, picture.numpy(), title)
        axis.set_xticks([])
    figure.suptitle(f"transposed convolution of {name}")
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
        _show(axis, image, info.class_names[int(labels[index])])
        if isinstance(targets, dict):
            _box(axis, targets["bbox"][index], image.shape[0], image.shape[1], "lime")
    augmented = f", augmented: {', '.join(options.augment)}" if options.augment else ", raw"
    figure.suptitle(f"{source} {split}{augmented}")
    return [_save(figure, out, "dataset")]


def _model_and_data(options: Options):
    """The model of --model_path, and one split of its data as its run evaluated it."""
    import pipelines

    if not options.model_path:
        raise UserError("--model_path is required: a .keras file or a run directory")
    saved = cli.open_saved(
        options.model_path, dataset=options.dataset, data_dir=options.data_dir, batch_size=options.count
    )
    split = options.split or saved.config.test_split or "test"
    try:
        dataset, info = saved.evaluation_data(split)
    except pipelines.DataError as error:
        raise UserError(f"--dataset={saved.config.dataset} --split={split}: {error}") from None
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


def show_pr(out: str, inputs, options: Options) -> list[str]:
    """The seed's mAP figure, from real detections: precision/recall and 11-point max precisions."""
    from trainers.metrics import mean_average_precision, single_object_detections

    model, dataset, info, split = _model_and_data(options)
    if not isinstance(model.output, dict):
        raise UserError(f"--model_path={options.model_path}: the model has no box head; pr needs a localize model")
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
    "history": show_history,
}


def show(kind: str, out: str, inputs=(), options: Options | None = None) -> list[str]:
    """Write the figures of ``kind`` into ``out``; returns their paths."""
    if kind not in KINDS:
        raise UserError(f"unknown figure {kind!r}; accepted: {', '.join(KINDS)}")
    _pyplot()  # says which package to install before any work
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
