"""zoo: functional Keras image models, built by name.

    import zoo
    zoo.names()                       # ['fashion_cnn', 'resnet18', 'resnet34', 'resnet50', 'xception']
    model = zoo.build("resnet34", num_classes=10, input_shape=(64, 64, 3))
    model = zoo.build("xception", num_classes=5, input_shape=(224, 224, 3),
                      head="localize", weights="imagenet")

Every model takes raw pixels in [0, 255] and scales them itself.

The names below load on first use (PEP 562): ``import zoo.common`` (the shared vocabulary) or
``python -m zoo`` imports no Keras until a model is asked for, and the registry imports the model
families (`zoo.registry.FAMILIES`) on its first lookup.
"""

from zoo.common import lazy_exports

_EXPORTS = {
    "Backbone": "registry",
    "ImageNetPreprocessing": "layers",
    "ModelSpec": "registry",
    "ResidualUnit": "layers",
    "adapt_normalization": "transfer",
    "backbone_layer_index": "transfer",
    "backbone_of": "transfer",
    "build": "registry",
    "freeze_backbone": "transfer",
    "names": "registry",
    "register": "registry",
    "set_batchnorm_momentum": "transfer",
    "spec": "registry",
    "unfreeze_backbone": "transfer",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
