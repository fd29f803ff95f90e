"""The vocabulary zoo, pipelines and trainers share, and its argument checks.

Imports no framework, and importing it builds no model registry: ``import zoo.common`` is cheap,
so a data pipeline or a flag definition can use these words without loading Keras.
"""

from __future__ import annotations

import importlib
import sys

# A model's head is also the task of the data it is trained on (`pipelines.load(task=...)`).
HEADS = ("classify", "localize")
# The smallest side, in pixels, of an image a pipeline makes or a model takes.
MIN_IMAGE_SIZE = 8
# The most pixels an image file may declare before it is decoded: Pillow's decompression-bomb
# limit (`PIL.Image.MAX_IMAGE_PIXELS`, 1024 * 1024 * 1024 // 4 // 3). TensorFlow only refuses above
# 2**29 pixels, after allocating them.
MAX_IMAGE_PIXELS = 89_478_485
# The random training ops, by the names `--augment` takes (`pipelines.ops.AUGMENTATIONS` holds
# each one's implementation under the same name): the seed's crop and flip, then the policies
# (Keras's RandAugment, RandomErasing, MixUp and CutMix layers).
AUGMENTATIONS = ("crop", "flip", "randaugment", "erase", "mixup", "cutmix")
# Those that keep a box right, moving it with the pixels or moving no pixels: the only ones a
# localize head (boxes) may train with. (RandAugment's shears and rotations do not move the box;
# mixup and cutmix put two objects in one image.)
BOX_AUGMENTATIONS = ("crop", "flip", "erase")
# Those that mix two examples' pixels and labels (the labels become class probabilities).
MIXING_AUGMENTATIONS = ("mixup", "cutmix")
# Each policy's strength: the option that sets it, its default (Keras's, timm's for erase) and its
# accepted range (the upper bound None for none).
AUGMENT_STRENGTHS = {
    "randaugment": ("randaugment_magnitude", 0.5, (0.0, 1.0)),
    "erase": ("erase_probability", 0.25, (0.0, 1.0)),
    "mixup": ("mixup_alpha", 0.2, (0.0, None)),
    "cutmix": ("cutmix_alpha", 1.0, (0.0, None)),
}


def box_augmentation_error(names, accepted=BOX_AUGMENTATIONS) -> str | None:
    """The one-line complaint about ``names`` for a localize (box) task, or None if all are
    ``accepted``."""
    refused = [name for name in names if name not in accepted]
    if not refused:
        return None
    return (
        f"augmentation(s) {', '.join(map(repr, refused))} would not keep the box on the object; "
        f"a localize head accepts {', '.join(accepted)}"
    )


def error_line(error: BaseException) -> str:
    """The first line of an exception's message, for a one-line error (its type's name when the
    message is empty): upstream messages often run to pages."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_int(value) -> bool:
    """An int that is not a bool (``True`` is an int in Python, never a size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value, *, minimum: int = 1, error: type[ValueError] = ValueError) -> int:
    """``value`` if it is an int >= ``minimum``; otherwise ``error`` quoting the received value."""
    if not is_int(value) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name} must be {wanted}, received {value!r}")
    return value


def positive_ints(
    name: str, values, *, allow_empty: bool = False, error: type[ValueError] = ValueError
) -> tuple[int, ...]:
    """``values`` as a tuple if it is a sequence of positive ints (widths, units, a shape)."""
    try:
        values = tuple(values)
    except TypeError:
        pass
    if (
        not isinstance(values, tuple)
        or (not values and not allow_empty)
        or not all(is_int(v) and v > 0 for v in values)
    ):
        raise error(f"{name} must be a sequence of positive integers, received {values!r}")
    return values


def parse_flags_or_exit(argv, flag_values=None):
    """absl's parser for a program's ``argv`` (into ``flag_values``, absl's global flags by
    default), a bad flag as one line on stderr, "error: ...", and exit status 2: not absl's own
    "FATAL Flags parsing error" and status 1. Every program's parser ends here."""
    from absl import flags

    try:
        return (flags.FLAGS if flag_values is None else flag_values)(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package whose public names (``exports``: name -> module
    of the package) load on first use (PEP 562), so importing the package imports none of them."""

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
