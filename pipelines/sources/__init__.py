"""Sources: where examples come from, before any preprocessing.

    resolve(source, split, ...) -> Source       # "shapes", "synthetic", "dir:PATH" or a TFDS name

One module per kind of source: `builtin` (shapes, synthetic), `folders` (image folders and their
file checks), `tfds` (TFDS datasets); `base` says what a `Source` is and holds the rules they share:
the TFDS split syntax for every source (``"train[:10%]+validation"``) and the one validation holdout.
"""

from __future__ import annotations

from pipelines.errors import DataError
from pipelines.sources.base import Source, absolute_ranges
from pipelines.sources.builtin import SYNTHETIC, shapes_source, synthetic_source
from pipelines.sources.folders import check_image_file, folder_source, inspect_image_file, undecodable_files
from pipelines.sources.tfds import tfds_source

__all__ = [
    "DRAWN",
    "SYNTHETIC",
    "Source",
    "absolute_ranges",
    "check_image_file",
    "folder_source",
    "image_folder",
    "inspect_image_file",
    "resolve",
    "shapes_source",
    "synthetic_source",
    "tfds_source",
    "undecodable_files",
]

DIR_PREFIX = "dir:"
# The sources that draw their images at the size asked for: they have no size of their own.
DRAWN = ("shapes", SYNTHETIC)


def image_folder(source) -> str | None:
    """The folder of a ``dir:PATH`` source (PATH), or None for any other source."""
    return source[len(DIR_PREFIX) :] if isinstance(source, str) and source.startswith(DIR_PREFIX) else None


def resolve(
    source: str,
    split: str,
    *,
    task: str,
    image_size: tuple[int, int] | None,
    channels: int | None,
    data_dir: str | None,
    training: bool,
    seed: int | None,
    skip_bad_files: bool,
    download: bool = True,
    validation_holdout: float = 0.0,
    follow_links: bool = False,
    max_image_pixels: int | None = None,
) -> Source:
    """The `Source` that ``source`` names: ``"shapes"``, ``"synthetic"``, ``"dir:PATH"`` or a TFDS name.

    ``validation_holdout`` > 0: a source with no validation split of its own gets one, that
    fraction of "train", stratified by class and deterministic; "train" is then the rest.
    """
    if not isinstance(source, str) or not source:
        raise DataError(f"source must be 'shapes', 'synthetic', 'dir:PATH' or a TFDS name, received {source!r}")
    if source == "shapes":
        return shapes_source(split, image_size=image_size, channels=channels or 3)
    if source == SYNTHETIC:
        return synthetic_source(split, image_size=image_size, channels=channels or 3)
    folder = image_folder(source)
    if folder:
        if task == "localize":
            raise DataError(
                f"image folders have no boxes, so {source!r} cannot be used with task='localize'; sources with "
                f"boxes: 'shapes', or a TFDS dataset with a BBoxFeature (e.g. caltech_birds2011, voc)"
            )
        return folder_source(
            folder,
            split,
            skip_bad_files=skip_bad_files,
            validation_holdout=validation_holdout,
            follow_links=follow_links,
            max_image_pixels=max_image_pixels,
        )
    return tfds_source(
        source,
        split,
        data_dir=data_dir,
        task=task,
        shuffle_files=training,
        seed=seed,
        download=download,
        validation_holdout=validation_holdout,
    )
