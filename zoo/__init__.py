"""zoo: functional Keras image models, built by name.

    import zoo
    zoo.names()                       # ['fashion_cnn', 'resnet18', 'resnet34', 'resnet50', 'xception']
    model = zoo.build("resnet34", num_classes=10, input_shape=(64, 64, 3))
    model = zoo.build("xception", num_classes=5, input_shape=(224, 224, 3),
                      head="localize", weights="imagenet")

Every model takes raw pixels in [0, 255] and scales them itself.
"""

# Importing a model family registers its builders.
from zoo import applications, fashion_cnn, resnet  # noqa: E402,F401  (registration side effect)
from zoo.layers import ImageNetPreprocessing, ResidualUnit
from zoo.registry import Backbone, ModelSpec, build, names, register, spec
from zoo.transfer import adapt_normalization, backbone_layer_index, backbone_of, freeze_backbone, unfreeze_backbone

__all__ = [
    "Backbone",
    "ImageNetPreprocessing",
    "ModelSpec",
    "ResidualUnit",
    "adapt_normalization",
    "backbone_layer_index",
    "backbone_of",
    "build",
    "freeze_backbone",
    "names",
    "register",
    "spec",
    "unfreeze_backbone",
]
