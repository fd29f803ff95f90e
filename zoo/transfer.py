"""Helpers a trainer uses on built models: freeze/unfreeze the backbone, adapt normalization."""

from __future__ import annotations

import keras

from zoo import compat

BACKBONE = "backbone"


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone of a zoo model (everything between the raw image and the heads)."""
    try:
        return model.get_layer(BACKBONE)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer named {BACKBONE!r}; it was not built by zoo.build"
        ) from None


def backbone_layer_index(model: keras.Model, name: str) -> int:
    """The index of the backbone layer called ``name`` (as `python -m zoo NAME --layers` lists them);
    ValueError naming a few of the layers when there is none."""
    names = [layer.name for layer in backbone_of(model).layers]
    if name not in names:
        raise ValueError(
            f"{name!r} is not a layer of the backbone of {model.name!r} ({len(names)} layers: "
            f"{', '.join(names[1:4])}, ..., {', '.join(names[-3:])})"
        )
    return names.index(name)


def freeze_backbone(model: keras.Model) -> None:
    """Make the whole backbone non-trainable; only the heads train.

    In Keras 3 a non-trainable BatchNormalization runs in inference mode, so its moving statistics
    stay as they were (the transfer-learning guide's requirement). Recompile the model afterwards.
    """
    backbone_of(model).trainable = False


def unfreeze_backbone(model: keras.Model, from_layer: str | None = None, keep_batchnorm_frozen: bool = True) -> int:
    """Make the backbone trainable, all of it or from the layer named ``from_layer`` on.

    ``keep_batchnorm_frozen`` (default True) leaves every BatchNormalization layer frozen, hence
    in inference mode, however deeply it is nested (e.g. inside a `ResidualUnit`): fine-tuning on
    a small dataset must not overwrite the statistics the base learned on a large one. Returns the
    number of top-level backbone layers that now have trainable weights. Recompile afterwards.
    """
    backbone = backbone_of(model)
    layers = backbone.layers
    start = 0 if from_layer is None else backbone_layer_index(model, from_layer)
    backbone.trainable = True
    unfrozen = 0
    for index, layer in enumerate(layers):
        # Each layer nested at any depth (a ResidualUnit's BatchNormalizations) is set on its
        # own: setting a container's `trainable` does not always reach layers inside it.
        for nested in compat.nested_layers(layer):
            is_bn = isinstance(nested, keras.layers.BatchNormalization)
            nested.trainable = index >= start and not (keep_batchnorm_frozen and is_bn)
        unfrozen += int(bool(layer.trainable_weights))
    return unfrozen


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> int:
    """Set the momentum of every BatchNormalization layer of ``model``, at any depth (inside a
    `ResidualUnit`, a keras.applications backbone): the weight its moving mean and variance keep
    at each training step (Keras's default 0.99; PyTorch's ``momentum=0.1`` is 0.9 here). Keras
    reads it at each training step and saves it with the layer. Returns how many layers were set."""
    layers = [layer for layer in compat.nested_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


def adapt_normalization(model: keras.Model, images, steps: int | None = None) -> int:
    """Adapt every `Normalization` layer of ``model`` on raw images; returns how many it adapted.

    ``images``: a batched `tf.data.Dataset` (of images, or of ``(images, labels)``), or an array of
    raw images, as the model itself takes them. Layers before each `Normalization` (e.g.
    `Rescaling`) are applied first, so it learns the statistics of what it will actually see.
    ``steps`` bounds the number of batches read from a dataset.
    """
    adapted = 0
    for owner, layer in _normalization_layers(model):
        prefix = keras.Model(owner.inputs, layer.input)
        layer.adapt(_prefix_batches(prefix, images, steps))
        adapted += 1
    return adapted


def _normalization_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            yield model, layer
        elif isinstance(layer, keras.Model):
            yield from _normalization_layers(layer)


def _prefix_batches(prefix, images, steps):
    import tensorflow as tf

    if isinstance(images, tf.data.Dataset):
        if steps is not None:
            images = images.take(steps)
        for batch in images:
            if isinstance(batch, tuple):
                batch = batch[0]
            yield prefix(batch, training=False)
    else:
        yield prefix(images, training=False)
