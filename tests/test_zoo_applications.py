"""Every image classifier of `keras.applications`, buildable by name through the zoo registry
(issue: any Keras backbone by name): one parametrized test builds each with random weights on its
smallest input, checks its recorded size and fine-tuning points and (up to 30 M parameters)
predicts; one round-trips through a .keras file. Kept lean: the 40 networks are Keras's own code,
and tracing or saving the large ones costs a minute each on 2 CPU cores."""

import os

import keras
import numpy as np
import pytest

import zoo
from zoo.applications import APPLICATIONS

ROWS = {class_name.lower(): row for class_name, *row in APPLICATIONS}


def test_every_keras_image_classifier_is_registered():
    classifiers = {name for name in dir(keras.applications) if name[0].isupper()}
    registered = {class_name for class_name, *_ in APPLICATIONS} | {"ResNet50", "Xception"}
    assert registered == classifiers
    assert set(ROWS) <= set(zoo.names())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_application_builds_and_keeps_its_recorded_shape(name):
    preprocessing, native, smallest, parameters, points = ROWS[name]
    spec = zoo.spec(name)
    assert (spec.native_size, spec.min_size, spec.parameters, spec.unfreeze_points) == (
        native,
        smallest,
        parameters,
        points,
    )
    model = zoo.build(name, num_classes=3, input_shape=(smallest, smallest, 3))
    backbone = zoo.backbone_of(model)
    assert backbone.count_params() == parameters  # what `python -m zoo` lists without building
    # Its own input scaling inside: raw [0, 255] pixels in, probabilities out.
    assert (any(layer.name == "preprocess" for layer in backbone.layers)) == (preprocessing is not None)
    if parameters <= 30_000_000:
        images = np.random.default_rng(0).uniform(0, 255, (2, smallest, smallest, 3)).astype("float32")
        probabilities = model(images, training=False).numpy()
        assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    # Fine-tuning from the last recorded point: the layers before stay frozen, BatchNorm too.
    zoo.freeze_backbone(model)
    zoo.unfreeze_backbone(model, from_layer=points[-1])
    names = [layer.name for layer in backbone.layers]
    for point in points:
        assert point in names, point
    start = names.index(points[-1])
    assert not any(layer.trainable_weights for layer in backbone.layers[:start])
    assert not any(layer.trainable for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization))


@pytest.mark.slow
def test_an_application_takes_a_box_head_and_the_weights_of_a_plain_keras_model_and_round_trips(tmp_path):
    plain = keras.applications.MobileNetV3Small(include_top=False, weights=None)
    path = str(tmp_path / "plain.weights.h5")
    plain.save_weights(path)
    model = zoo.build("mobilenetv3small", num_classes=4, input_shape=(64, 64, 3), head="localize", weights=path)
    assert set(model.output) == {"class", "bbox"}
    backbone = zoo.backbone_of(model)
    for layer in plain.layers:
        if layer.weights:
            for got, want in zip(backbone.get_layer(layer.name).get_weights(), layer.get_weights()):
                np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="needs images of at least 75x75 pixels"):
        zoo.build("inceptionv3", num_classes=3, input_shape=(64, 64, 3))
    # Saved and loaded whole: its input scaling (the network's own) and heads come back.
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    again = keras.models.load_model(path)
    for name in ("class", "bbox"):
        np.testing.assert_allclose(
            again(images, training=False)[name], model(images, training=False)[name], rtol=1e-4, atol=1e-5
        )
