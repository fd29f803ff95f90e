"""What a head is trained and judged with, defined once: losses, loss weights, metrics, and the
test-time preprocessing. `train`, `evaluate` (and later `tune`) all compile through `compile_model`
and preprocess evaluation data as `test_time_preprocessing` says, so their numbers agree.
"""

from __future__ import annotations

from pipelines.ops import crops_at_evaluation


def losses(head: str):
    if head == "classify":
        return "sparse_categorical_crossentropy"
    return {"class": "sparse_categorical_crossentropy", "bbox": "mse"}


def loss_weights(head: str, weights: tuple[float, float]):
    """The class and box weights of a localize model (None for one output)."""
    if head == "classify":
        return None
    class_weight, box_weight = weights
    return {"class": float(class_weight), "bbox": float(box_weight)}


def metrics(head: str):
    import keras

    if head == "classify":
        return ["accuracy"]
    return {"class": ["accuracy"], "bbox": [keras.metrics.MeanSquaredError(name="mse")]}


def compile_model(
    model,
    *,
    head: str,
    weights: tuple[float, float],
    optimizer="rmsprop",
    jit_compile=False,
    steps_per_execution: int = 1,
) -> None:
    """Compile ``model`` for its head; ``optimizer`` matters only for training."""
    model.compile(
        optimizer=optimizer,
        loss=losses(head),
        loss_weights=loss_weights(head, weights),
        metrics=metrics(head),
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
