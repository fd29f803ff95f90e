"""Every registered model, generated from the registry: a new model is tested once it registers."""

import keras
import numpy as np
import pytest

import zoo
from zoo.applications import table_names

BATCH = 4  # BatchNormalization over 2 samples of a 1x1 map is degenerate: gradients explode
NUM_CLASSES = 3


def tiny_shape(name):
    spec = zoo.spec(name)
    size = max(spec.min_size, 32)
    return (size, size, spec.channels[0])


def raw_images(shape, batch=BATCH, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, *shape)).astype("float32")


def fake_targets(head, batch=BATCH):
    labels = np.arange(batch) % NUM_CLASSES
    if head == "classify":
        return labels
    boxes = np.tile(np.array([[0.1, 0.2, 0.6, 0.9]], "float32"), (batch, 1))
    return {"class": labels, "bbox": boxes}


def predict(model, images):
    outputs = model(images, training=False)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def compile_for(model, head):
    # Eager: tracing a 50-layer train step costs more than running it once on a 2-image batch.
    # Plain SGD with a small rate: no optimizer slots to save, and no blow-up of the untrained
    # BatchNormalization statistics that a large step on 2 images causes.
    if head == "classify":
        model.compile(optimizer=keras.optimizers.SGD(1e-3), run_eagerly=True, loss="sparse_categorical_crossentropy")
    else:
        model.compile(
            optimizer=keras.optimizers.SGD(1e-3),
            run_eagerly=True,
            loss={"class": "sparse_categorical_crossentropy", "bbox": "mse"},
            loss_weights={"class": 0.8, "bbox": 0.2},
        )


# The models with builders of their own; the keras.applications table's rows have their sweep in
# tests/test_zoo_applications.py (training 40 networks here would take the suite's whole budget).
OWN_BUILDERS = sorted(set(zoo.names()) - set(table_names()))
# ResNet-50 and Xception (keras.applications' networks behind the zoo's layers) take 9-13 s each
# here: `slow`, so that `make test-quick` stays under 2 minutes; `make test` runs them.
SLOW_BUILDERS = {"resnet50", "xception"}


@pytest.mark.parametrize("head", ["classify", "localize"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_BUILDERS else n for n in OWN_BUILDERS]
)
def test_model_forward_train_save_load(name, head, tmp_path):
    shape = tiny_shape(name)
    model = zoo.build(name, num_classes=NUM_CLASSES, input_shape=shape, head=head)
    images = raw_images(shape)

    outputs = predict(model, images)
    if head == "classify":
        assert outputs.shape == (BATCH, NUM_CLASSES)
        np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert set(outputs) == {"class", "bbox"}
        assert outputs["class"].shape == (BATCH, NUM_CLASSES)
        assert outputs["bbox"].shape == (BATCH, 4)
        assert ((outputs["bbox"] >= 0) & (outputs["bbox"] <= 1)).all()

    compile_for(model, head)
    history = model.fit(images, fake_targets(head), batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    before = predict(model, images)
    after = predict(reloaded, images)
    if head == "classify":
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
        assert np.isfinite(after).all()
    else:
        for key in ("class", "bbox"):
            np.testing.assert_allclose(after[key], before[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "fashion_cnn"])
def test_a_mixed_precision_model_reloads_and_predicts_in_a_float32_process(name, tmp_path):
    # The trainer turns mixed precision on by default where the hardware has it; the model is then
    # loaded (evaluate, predict, show) where the global policy is float32. Each layer, nested ones
    # included, keeps the policy it was saved with.
    shape = tiny_shape(name)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = zoo.build(name, num_classes=NUM_CLASSES, input_shape=shape)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.save(tmp_path / "mixed.keras")
    reloaded = keras.models.load_model(tmp_path / "mixed.keras", safe_mode=True)
    images = raw_images(shape)
    np.testing.assert_allclose(predict(reloaded, images), predict(model, images), rtol=1e-2, atol=1e-2)
    nested = [layer for layer in reloaded._flatten_layers(include_self=False, recursive=True)]
    units = [layer for layer in nested if isinstance(layer, zoo.layers.ResidualUnit)]
    assert all(sub.dtype_policy.name == "mixed_bfloat16" for unit in units for sub in (unit.conv1, unit.bn2))
