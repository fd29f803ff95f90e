"""The zoo's promises beyond the per-model sweep: errors, exact architectures, weights, freezing."""

import keras
import numpy as np
import pytest

import zoo
from zoo.registry import register


def test_names_sorted_and_complete(monkeypatch):
    assert {"fashion_cnn", "resnet18", "resnet34", "xception", "resnet50"} <= set(zoo.names())
    # Registered out of order, listed in order.
    monkeypatch.setattr(zoo.registry, "_REGISTRY", dict(zoo.registry._REGISTRY))
    for name in ("zz_last", "aa_first"):
        register(name, min_size=8)(lambda input_shape, **kw: None)
    names = zoo.names()
    assert names[0] == "aa_first" and names[-1] == "zz_last"
    assert names.index("resnet18") < names.index("resnet34") < names.index("xception")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(name="resnet99"),
            r"unknown model 'resnet99'; available models: convnextbase, .*, fashion_cnn, .*, xception$",
        ),
        (dict(num_classes=1), r"num_classes must be an integer >= 2, received 1"),
        (dict(num_classes=2.5), r"received 2.5"),
        (dict(input_shape=(16, 16, 3)), r"at least 32x32 pixels, received input_shape=\(16, 16, 3\)"),
        (dict(input_shape=(32, 32)), r"\(height, width, channels\).*received \(32, 32\)"),
        (dict(input_shape=(32, 32, 5)), r"1 or 3 channel\(s\), received input_shape=\(32, 32, 5\)"),
        (dict(head="segment"), r"unknown head 'segment'; accepted heads: classify, localize"),
        (dict(weights="/no/such/file.weights.h5"), r"weights file '/no/such/file.weights.h5' does not exist"),
        (dict(weights="imagenet"), r"'resnet18' has no pretrained 'imagenet' weights"),
        (dict(widht=(8, 8, 8, 8)), r"unknown option\(s\) 'widht' for model 'resnet18'; accepted options: widths"),
        (dict(widths=(8, 8, 8)), r"one width per stage \(4\), received \(8, 8, 8\)"),
        (dict(widths=(8, 0, 8, 8)), r"widths must be a sequence of positive integers"),
    ],
)
def test_bad_arguments_raise_value_error_quoting_the_value(kwargs, message):
    args = dict(name="resnet18", num_classes=3, input_shape=(32, 32, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        zoo.build(args.pop("name"), **args)


def test_application_models_need_three_channels_and_their_minimum_size():
    with pytest.raises(ValueError, match=r"'xception' needs images of at least 71x71"):
        zoo.build("xception", num_classes=3, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"'resnet50' takes images with 3 channel"):
        zoo.build("resnet50", num_classes=3, input_shape=(32, 32, 1))


def test_fashion_cnn_rejects_bad_options():
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), received 1.5"):
        zoo.build("fashion_cnn", num_classes=10, input_shape=(28, 28, 1), dropout=1.5)
    with pytest.raises(ValueError, match=r"needs images of at least 16x16.*\(8, 8, 1\)"):
        zoo.build("fashion_cnn", num_classes=10, input_shape=(8, 8, 1), filters=(8, 8, 8, 8))


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match=r"'resnet34' is already registered"):
        register("resnet34", min_size=1)(lambda input_shape, **kw: None)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet_parameter_counts_match_the_published_networks():
    # torchvision's resnet18/resnet34 (the published architectures): 11,689,512 and 21,797,672.
    for name, expected in [("resnet18", 11_689_512), ("resnet34", 21_797_672)]:
        model = zoo.build(name, num_classes=1000, input_shape=(224, 224, 3))
        assert trainable_count(model) == expected, name


def test_fashion_cnn_is_the_seed_network():
    model = zoo.build("fashion_cnn", num_classes=10, input_shape=(28, 28, 1))
    backbone = zoo.backbone_of(model)
    convs = [(c.filters, c.kernel_size, c.padding) for c in backbone.layers if isinstance(c, keras.layers.Conv2D)]
    assert convs == [(64, (7, 7), "same")] + [(128, (3, 3), "same")] * 2 + [(256, (3, 3), "same")] * 2
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in backbone.layers) == 3
    dense = [layer.units for layer in backbone.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [128, 64]
    assert [layer.rate for layer in backbone.layers if isinstance(layer, keras.layers.Dropout)] == [0.5, 0.5]
    assert model.get_layer("class").units == 10


def test_adapt_normalization_standardizes_per_pixel():
    rng = np.random.default_rng(0)
    # Per-pixel means and spreads that differ across positions.
    centre = rng.uniform(50, 200, (1, 28, 28, 1))
    images = (centre + rng.normal(0, 20, (64, 28, 28, 1))).clip(0, 255).astype("float32")
    model = zoo.build("fashion_cnn", num_classes=10, input_shape=(28, 28, 1))
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(64))).batch(16)
    assert zoo.adapt_normalization(model, dataset) == 1
    backbone = zoo.backbone_of(model)
    standardized = keras.Model(backbone.input, backbone.get_layer("standardize").output)(images)
    standardized = keras.ops.convert_to_numpy(standardized)
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(standardized.std(axis=0), 1, atol=1e-2)


def test_models_without_normalization_adapt_nothing():
    model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3))
    assert zoo.adapt_normalization(model, np.zeros((2, 32, 32, 3), "float32")) == 0


def test_whole_model_weights_file_round_trip(tmp_path):
    model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3), head="localize", widths=(8, 8, 16, 16))
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    again = zoo.build(
        "resnet18", num_classes=3, input_shape=(32, 32, 3), head="localize", widths=(8, 8, 16, 16), weights=path
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for key in ("class", "bbox"):
        np.testing.assert_allclose(again(images)[key], model(images)[key], rtol=1e-6)
    with pytest.raises(ValueError, match=r"does not fit model 'resnet18' \(head='localize', num_classes=4"):
        zoo.build(
            "resnet18", num_classes=4, input_shape=(32, 32, 3), head="localize", widths=(8, 8, 16, 16), weights=path
        )


def test_xception_weights_file_passes_through_to_the_base(tmp_path):
    base = keras.applications.Xception(include_top=False, weights=None, input_shape=(71, 71, 3))
    path = tmp_path / "xception_notop.h5"  # the legacy H5 layout of the ImageNet files
    base.save(path)
    model = zoo.build("xception", num_classes=5, input_shape=(71, 71, 3), weights=path)
    loaded = zoo.backbone_of(model).get_layer("block14_sepconv2").get_weights()
    for got, want in zip(loaded, base.get_layer("block14_sepconv2").get_weights()):
        np.testing.assert_array_equal(got, want)


def test_resnet50_keeps_a_pretrained_imagenet_top(tmp_path):
    full = keras.applications.ResNet50(include_top=True, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_with_top.h5"
    full.save(path)
    model = zoo.build("resnet50", num_classes=1000, input_shape=(32, 32, 3), weights=path)
    kernel, bias = model.get_layer("class").get_weights()
    want_kernel, want_bias = full.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(kernel, want_kernel)
    np.testing.assert_array_equal(bias, want_bias)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    preprocessed = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(model(images), full(preprocessed), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"imagenet_top=True needs num_classes=1000, received 5"):
        zoo.build("resnet50", num_classes=5, input_shape=(32, 32, 3), imagenet_top=True)


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics():
    model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3), widths=(8, 8, 16, 16))
    zoo.freeze_backbone(model)
    backbone = zoo.backbone_of(model)
    before = [w.numpy().copy() for w in backbone.weights]
    head_before = model.get_layer("class").kernel.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(images, np.arange(8) % 3, epochs=2, verbose=0)
    for w, b in zip(backbone.weights, before):  # moving mean/variance included
        np.testing.assert_array_equal(w.numpy(), b, err_msg=w.path)
    assert not np.array_equal(model.get_layer("class").kernel.numpy(), head_before)


def test_unfreeze_from_a_named_layer():
    model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3), widths=(8, 8, 16, 16))
    zoo.freeze_backbone(model)
    unfrozen = zoo.unfreeze_backbone(model, from_layer="stage4_unit1")
    backbone = zoo.backbone_of(model)
    trainable = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    assert trainable == ["stage4_unit1", "stage4_unit2"] and unfrozen == 2
    assert not backbone.get_layer("stem_bn").trainable
    assert zoo.unfreeze_backbone(model) > 2
    assert not backbone.get_layer("stem_bn").trainable  # BatchNorm stays in inference mode
    assert zoo.unfreeze_backbone(model, keep_batchnorm_frozen=False) and backbone.get_layer("stem_bn").trainable
    with pytest.raises(ValueError, match=r"'block99' is not a layer of the backbone of"):
        zoo.unfreeze_backbone(model, from_layer="block99")


def nested_batchnorms(model):
    """Every BatchNormalization of the backbone at any depth (inside ResidualUnits too)."""
    found = []

    def walk(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        for attribute in ("layers", "_layers"):
            for child in getattr(layer, attribute, None) or []:
                walk(child)
        for child in vars(layer).values():
            if isinstance(child, keras.layers.Layer) and child is not layer:
                walk(child)

    walk(zoo.backbone_of(model))
    return list({id(layer): layer for layer in found}.values())


@pytest.mark.parametrize("from_layer", [None, "stage3_unit1"])
def test_unfreezing_keeps_every_nested_batchnorm_frozen(from_layer):
    model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3), widths=(8, 8, 16, 16))
    batchnorms = nested_batchnorms(model)
    # The stem's, two per unit, and a projection's in each stage that changes width or stride.
    assert len(batchnorms) == 1 + 2 * 8 + 3
    zoo.freeze_backbone(model)
    zoo.unfreeze_backbone(model, from_layer=from_layer)
    assert not any(bn.trainable for bn in batchnorms)
    # Training really leaves their statistics alone.
    before = [bn.moving_mean.numpy().copy() for bn in batchnorms]
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    for bn, mean in zip(batchnorms, before):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean, err_msg=bn.path)
    # With the option off, every BatchNorm the unfreezing reaches trains.
    zoo.unfreeze_backbone(model, keep_batchnorm_frozen=False)
    assert all(bn.trainable for bn in batchnorms)
