"""What a head is trained and judged with, defined once: losses, loss weights, metrics, and the
test-time preprocessing. `train`, `evaluate` (and later `tune`) all compile through `compile_model`
and preprocess evaluation data as `test_time_preprocessing` says, so their numbers agree.
"""

from __future__ import annotations

from pipelines.ops import crops_at_evaluation


def losses(head: str, box_loss: str = "mse", label_smoothing: float = 0.0, mixed_labels: bool = False):
    """Cross-entropy for the class (with ``label_smoothing`` or ``mixed_labels``, Keras's
    categorical cross-entropy on one-hot or mixed labels); for the box, MSE (the seed's) or
    1 - GIoU (``box_loss``)."""
    from trainers.metrics import BOX_LOSSES, SparseCrossentropyWithSmoothing

    class_loss = (
        SparseCrossentropyWithSmoothing(label_smoothing)
        if label_smoothing or mixed_labels
        else "sparse_categorical_crossentropy"
    )
    if head == "classify":
        return class_loss
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {', '.join(BOX_LOSSES)}, received {box_loss!r}")
    return {"class": class_loss, "bbox": BOX_LOSSES[box_loss]}


def loss_weights(head: str, weights: tuple[float, float]):
    """The class and box weights of a localize model (None for one output)."""
    if head == "classify":
        return None
    class_weight, box_weight = weights
    return {"class": float(class_weight), "bbox": float(box_weight)}


def metrics(head: str, mixed_labels: bool = False):
    """Accuracy (on mixed labels, of their larger share: `trainers.metrics.class_accuracy`); for a
    box head also the mean IoU of predicted and true boxes (logged as ``bbox_mean_iou``,
    ``val_bbox_mean_iou``) and their MSE."""
    import keras

    from trainers.metrics import MeanBoxIoU, class_accuracy

    if head == "classify":
        # Keras's "accuracy" picks sparse or categorical once, from the first (training) batch.
        return [keras.metrics.MeanMetricWrapper(class_accuracy, name="accuracy")] if mixed_labels else ["accuracy"]
    return {"class": ["accuracy"], "bbox": [MeanBoxIoU(name="mean_iou"), keras.metrics.MeanSquaredError(name="mse")]}


def metric_names(head: str) -> list[str]:
    """The names `trainers.steps.evaluate` reports for a model of ``head`` (Keras logs the same
    ones during fit, ``val_``-prefixed on validation data), detection scores included."""
    if head == "classify":
        return ["loss", "accuracy"]
    return ["loss", "class_loss", "bbox_loss", "class_accuracy", "bbox_mean_iou", "bbox_mse", "map_50", "map_coco"]


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (losses and errors)."""
    return metric.endswith(("loss", "mse"))


def compile_model(
    model,
    *,
    head: str,
    weights: tuple[float, float],
    box_loss: str = "mse",
    label_smoothing: float = 0.0,
    mixed_labels: bool = False,
    optimizer="rmsprop",
    jit_compile=False,
    steps_per_execution: int = 1,
) -> None:
    """Compile ``model`` for its head; ``optimizer`` matters only for training. ``mixed_labels``:
    the training labels are class probabilities (mixup, cutmix)."""
    model.compile(
        optimizer=optimizer,
        loss=losses(head, box_loss, label_smoothing, mixed_labels),
        loss_weights=loss_weights(head, weights),
        metrics=metrics(head, mixed_labels),
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


def test_time_preprocessing(config) -> dict:
    """`pipelines.load` arguments of evaluation that follow from how ``config`` trained.

    A model trained on random crops is evaluated on the central crop (the seed's recipe).
    """
    return {"central_crop": crops_at_evaluation(config.augment)}


def head_of(model) -> str:
    """The head a built or loaded zoo model has."""
    return "localize" if isinstance(model.output, dict) else "classify"
