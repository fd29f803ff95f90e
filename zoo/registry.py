"""The model registry: builders register under a name, `build(name)` wires a head on top.

A builder is a function ``builder(input_shape, *, num_classes, weights, **options) -> Backbone``
that returns a plain functional model mapping raw pixels in [0, 255] to a feature vector. `build`
validates every argument once, here, nests the backbone under the layer name ``"backbone"`` and adds
the head, so every model in the zoo has the same outside shape:

    image (raw pixels) -> backbone (scaling + network + pooling) -> "class" [+ "bbox"]
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Sequence

import keras

from zoo import compat
from zoo.common import HEADS, error_line, positive_int, positive_ints

# The modules whose builders register themselves (timm's one file per family); imported on the
# first lookup, so that importing the registry (or `zoo.common`) builds nothing.
FAMILIES = ("zoo.applications", "zoo.fashion_cnn", "zoo.resnet")
PRETRAINED_WEIGHTS = "imagenet"
# Keras 3 native weights of a whole zoo model (`model.save_weights`). For a pretrained model,
# any other existing file (the ImageNet `.h5` that Keras downloads, or the `.weights.h5` of a plain
# `keras.applications` model: no model nested inside) is handed to its Keras Applications base.
ZOO_WEIGHTS_SUFFIX = ".weights.h5"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """What a builder returns.

    model: functional model, raw pixels (batch, H, W, C) in [0, 255] -> features (batch, D).
    top: optional pretrained classifier weights ``[kernel (D, K), bias (K,)]``; when K equals the
        requested number of classes, the "class" head starts from them (ImageNet prediction).
    """

    model: keras.Model
    top: list | None = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., Backbone]
    min_size: int
    channels: tuple[int, ...]
    pretrained: bool
    summary: str
    search_space: Callable | None = None
    unfreeze_points: tuple[str, ...] = ()
    native_size: int | None = None  # the input side it was designed (and pretrained) at
    parameters: int | None = None  # of its backbone, where known without building it

    def declare_space(self, hp) -> dict:
        """The model's hyperparameters, declared on ``hp`` (a `keras_tuner.HyperParameters`, or
        anything with its ``Choice``/``Int``/``Float``/``Boolean`` methods), as build settings:
        builder options, plus ``"model"`` for another registered name to build instead (ResNet
        depth). Empty for a model that declares no space."""
        return dict(self.search_space(hp)) if self.search_space is not None else {}

    def options(self) -> dict:
        """The builder's options and their defaults (keyword-only arguments beyond the common ones)."""
        params = inspect.signature(self.builder).parameters
        return {
            key: p.default
            for key, p in params.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and key not in ("num_classes", "weights")
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    min_size: int,
    channels: Sequence[int] = (1, 3),
    pretrained: bool = False,
    search_space: Callable | None = None,
    unfreeze_points: Sequence[str] = (),
    native_size: int | None = None,
    parameters: int | None = None,
):
    """Decorator: register ``builder`` under ``name``. A name can be registered only once.

    ``search_space(hp) -> dict`` declares what a hyperparameter search may vary in this model,
    beside the builder it tunes (see `ModelSpec.declare_space`). It only calls ``hp``'s methods,
    so the zoo does not import keras-tuner. ``unfreeze_points`` name backbone layers that
    fine-tuning may start from (`unfreeze_backbone(from_layer=...)`), for a search to choose among.
    ``native_size`` and ``parameters`` (of the backbone) are what `python -m zoo --list` shows
    without building the model.
    """

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(
                f"model name {name!r} is already registered (by "
                f"{_REGISTRY[name].builder.__module__}.{_REGISTRY[name].builder.__qualname__})"
            )
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            min_size=min_size,
            channels=tuple(channels),
            pretrained=pretrained,
            summary=doc[0] if doc else "",
            search_space=search_space,
            unfreeze_points=tuple(unfreeze_points),
            native_size=native_size,
            parameters=parameters,
        )
        return builder

    return decorator


def _registry() -> dict[str, ModelSpec]:
    """The registry, with every family's builders registered."""
    for family in FAMILIES:
        importlib.import_module(family)  # cached after the first time
    return _REGISTRY


def names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_registry())


def spec(name: str) -> ModelSpec:
    """The registration record of ``name``; raises ValueError listing the known names."""
    registry = _registry()
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(names())}")
    return registry[name]


def build(
    name: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    head: str = "classify",
    weights: str | os.PathLike | None = None,
    **options,
) -> keras.Model:
    """Build the registered model ``name`` with a classification or localization head.

    Args:
      name: a name from `names()`.
      num_classes: number of classes (>= 2).
      input_shape: ``(height, width, channels)`` of the raw images the model will take.
      head: ``"classify"`` (one softmax output) or ``"localize"`` (a dict of outputs
        ``{"class": softmax, "bbox": 4 sigmoid units, normalized [ymin, xmin, ymax, xmax]}``).
      weights: ``None`` (random), ``"imagenet"`` (pretrained models only; Keras downloads them), or
        a path: a ``*.weights.h5`` file of this whole model (``model.save_weights``), or, for
        pretrained models, a Keras Applications weights file for the base: the ImageNet ``.h5``
        that Keras downloads into ``~/.keras/models``, or ``save_weights`` of a plain
        ``keras.applications`` model of that name (with or without its top).
      **options: builder-specific options, see `spec(name).options()`.
    """
    model_spec = spec(name)
    num_classes = _check_num_classes(num_classes)
    input_shape = _check_input_shape(input_shape, model_spec)
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; accepted heads: {', '.join(HEADS)}")
    base_weights, model_weights = _check_weights(weights, model_spec)
    accepted = model_spec.options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; "
            f"accepted options: {', '.join(accepted) or 'none'}"
        )

    backbone = model_spec.builder(input_shape, num_classes=num_classes, weights=base_weights, **options)
    inputs = keras.Input(shape=input_shape, name="image")
    features = backbone.model(inputs)
    # Heads compute in float32 even under mixed precision: softmax and sigmoid saturate in float16.
    class_layer = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="class")
    class_output = class_layer(features)
    if backbone.top is not None and tuple(backbone.top[0].shape) == tuple(class_layer.kernel.shape):
        class_layer.set_weights(backbone.top)
    if head == "classify":
        outputs = class_output
    else:
        bbox_output = keras.layers.Dense(4, activation="sigmoid", dtype="float32", name="bbox")(features)
        outputs = {"class": class_output, "bbox": bbox_output}
    model = keras.Model(inputs, outputs, name=name)

    if model_weights is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras warns per layer before it raises
                model.load_weights(model_weights)
        except Exception as error:  # Keras raises several types for a mismatched file
            raise ValueError(
                f"weights file {str(model_weights)!r} does not fit model {name!r} "
                f"(head={head!r}, num_classes={num_classes}, input_shape={input_shape}): {error_line(error)}"
            ) from None
    return model


def _check_num_classes(num_classes) -> int:
    return positive_int("num_classes", num_classes, minimum=2)


def _check_input_shape(input_shape, model_spec: ModelSpec) -> tuple[int, int, int]:
    shape = positive_ints("input_shape", input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), received {input_shape!r}")
    height, width, channels = shape
    if min(height, width) < model_spec.min_size:
        raise ValueError(
            f"model {model_spec.name!r} needs images of at least "
            f"{model_spec.min_size}x{model_spec.min_size} pixels, received input_shape={shape}"
        )
    if channels not in model_spec.channels:
        raise ValueError(
            f"model {model_spec.name!r} takes images with "
            f"{' or '.join(map(str, model_spec.channels))} channel(s), "
            f"received input_shape={shape}"
        )
    return shape


def _check_weights(weights, model_spec: ModelSpec):
    """Split ``weights`` into (weights for the builder's base, weights file for the whole model)."""
    if weights is None:
        return None, None
    if isinstance(weights, str) and weights == PRETRAINED_WEIGHTS:
        if not model_spec.pretrained:
            raise ValueError(
                f"model {model_spec.name!r} has no pretrained {PRETRAINED_WEIGHTS!r} weights; "
                f"accepted weights: None or a path to a *{ZOO_WEIGHTS_SUFFIX} file"
            )
        return PRETRAINED_WEIGHTS, None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, {PRETRAINED_WEIGHTS!r} or a file path, received {weights!r}")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"weights file {path!r} does not exist; accepted weights: None, "
            f"{PRETRAINED_WEIGHTS!r} (pretrained models) or a path to an existing file"
        )
    if path.endswith(ZOO_WEIGHTS_SUFFIX) and (not model_spec.pretrained or compat.weights_file_nests_a_model(path)):
        return None, path
    if not model_spec.pretrained:
        raise ValueError(
            f"weights file {path!r} is not a *{ZOO_WEIGHTS_SUFFIX} file; model "
            f"{model_spec.name!r} loads only whole-model weights saved by model.save_weights"
        )
    return path, None
