"""What a source is, and the rules every source shares: split syntax and the validation holdout.

A source resolves a split into a `Source`: a `tf.data.Dataset` of light elements and the function
that turns one into a dict with ``image`` (decoded (H, W, C) pixels) or ``encoded`` bytes (files and
TFDS images, so the pipeline can decode only a crop window), ``label`` (int32) and, where the
source has one, ``bbox`` (normalized [ymin, xmin, ymax, xmax]), plus what is known about it.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable, Iterable

import tensorflow as tf

from pipelines.errors import DataError
from zoo import compat

log = logging.getLogger("pipelines.sources")


@dataclasses.dataclass
class Source:
    # Light elements (indices, paths, TFDS records), cheap to shuffle and shard, and the function
    # that turns one into a dict: image | encoded, label, [bbox].
    elements: tf.data.Dataset
    materialize: Callable
    class_names: list[str]
    num_examples: int | None
    image_shape: tuple | None  # (H, W, C) when every image has it, else None
    channels: int  # channels of the images as stored
    # The elements as rows of tensors (paths and labels, stream keys and indices), when they are
    # small enough to hold: then training visits them in a whole fresh permutation each epoch, with
    # no shuffle buffer, and `elements` is `Dataset.from_tensor_slices(table)`.
    table: tuple[tf.Tensor, ...] | None = None
    files: list[str] | None = None  # the image files, for folder sources
    # Every image is a JPEG (the folder check read each file's signature): the pipeline can call the
    # JPEG decoder directly, without a per-image branch on the format.
    jpeg_only: bool = False
    # Every batch is the same one (the synthetic source): the pipeline makes one batch, caches it
    # and repeats it, so that training measures the model and the step, not the input.
    constant: bool = False


# ------------------------------------------------------------------------------------- splits


def absolute_ranges(split: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """Resolve a TFDS-syntax split against split sizes: [(split name, start, stop), ...]."""
    try:
        return compat.resolve_split(split, sizes)
    except (ValueError, AssertionError) as error:
        message = str(error).splitlines()[0]
        raise DataError(
            f"bad split {split!r} ({message}); accepted: {', '.join(sizes)}, optionally sliced "
            f"as in TFDS, e.g. 'train[:80%]', 'train[100:200]', 'train+validation'"
        ) from None


# ------------------------------------------------------------------------------------- the holdout

# A source with no validation split of its own, asked for one (`pipelines.load(validation_holdout=)`),
# holds out a fraction of "train": per class, the examples whose key hashes lowest. A key names an
# example whatever order it is read in (a TFDS record id, a file's path inside its split folder),
# so the holdout is exactly stratified and the same on every machine and every run.
HOLDOUT_SEED = 20241126


def holdout_count(size: int, fraction: float) -> int:
    """Examples of one class held out: the fraction, rounded, at least one when the class has two."""
    return min(max(round(size * fraction), 1 if size >= 2 else 0), size - 1) if size else 0


def hold_out(keyed_labels: Iterable[tuple[bytes, int]], fraction: float) -> frozenset[bytes]:
    """The keys of the examples held out for validation, from ``(key, label)`` of every training example."""
    by_class: dict[int, list[tuple[int, bytes]]] = {}
    for key, label in keyed_labels:
        by_class.setdefault(int(label), []).append((zlib.crc32(key + str(HOLDOUT_SEED).encode()), key))
    held = set()
    for members in by_class.values():
        members.sort()
        held.update(key for _, key in members[: holdout_count(len(members), fraction)])
    return frozenset(held)


_announced: set = set()


def announce_holdout(source: str, fraction: float, count: int) -> None:
    """Say once per process that ``source``'s validation split is carved from train."""
    if (source, fraction) not in _announced:
        _announced.add((source, fraction))
        log.warning(
            "%s has no validation split: %d examples (%g%% of train, stratified by class, always the same) are "
            "held out for validation, and train is the rest",
            source,
            count,
            100 * fraction,
        )
