"""``dir:PATH``: one subfolder per class, optionally under train/, validation/, test/.

Every file is checked before training (its format's signature and end marker, in parallel, the
answer remembered per file), links out of a class folder are walked once, and a split's files are
a fixed, stratified cut of each class.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from concurrent import futures

import tensorflow as tf

from pipelines.errors import DataError, op_error_text
from pipelines.sources.base import Source, absolute_ranges, announce_holdout, hold_out, log
from zoo.common import MAX_IMAGE_PIXELS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = ("train", "validation", "test")
# Without train/validation/test folders, each class's files are split 80/10/10 after a fixed
# shuffle: stratified, deterministic, the same on every machine.
FOLDER_SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
_FOLDER_SPLIT_SEED = 20240601


def _image_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    return None


def check_image_file(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Return why ``path`` is not a complete image file, or None if it looks whole.

    Reads the first and last bytes only: the format's signature, its end marker (JPEG EOI, PNG
    IEND, GIF trailer) or, for BMP, the size the header declares, and the image's width and height
    from its header (``max_pixels``). This catches non-image files, truncated downloads and
    decompression bombs before training starts, at a tiny fraction of the cost of decoding.
    """
    _, dimensions, problem = inspect_image_file(path)
    return problem or too_many_pixels(dimensions, max_pixels)


def too_many_pixels(dimensions: tuple[int, int] | None, max_pixels: int) -> str | None:
    """Why an image whose header declares ``dimensions`` (width, height) is refused, or None."""
    if dimensions is None or dimensions[0] * dimensions[1] <= max_pixels:
        return None
    width, height = dimensions
    return (
        f"declares {width}x{height} = {width * height:,} pixels, over max_image_pixels={max_pixels:,} (a "
        f"decompression bomb, or a huge image); raise max_image_pixels to read it"
    )


def inspect_image_file(path: str) -> tuple[str | None, tuple[int, int] | None, str | None]:
    """``(format, (width, height), problem)`` of an image file: "jpeg", "png", "gif" or "bmp"
    (from its signature, whatever its extension says), the size its header declares (None where it
    does not say), and why it is not a complete image, or None (see `check_image_file`)."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            size = f.size()
            head = f.read(32)
            kind = _image_format(head)
            dimensions = _declared_size(f, kind, head) if kind else None
            f.seek(max(size - 32, 0))
            tail = f.read(32)
    except (OSError, tf.errors.OpError) as error:
        return None, None, f"cannot be read ({error})"
    if kind is None:
        return None, None, "is not a JPEG, PNG, GIF or BMP image"
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return kind, dimensions, "is a truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in tail:
        return kind, dimensions, "is a truncated PNG (no IEND chunk)"
    if kind == "gif" and not tail.rstrip(b"\x00").endswith(b"\x3b"):
        return kind, dimensions, "is a truncated GIF (no trailer)"
    if kind == "bmp" and len(head) >= 6 and int.from_bytes(head[2:6], "little") > size:
        return kind, dimensions, "is a truncated BMP (shorter than its header says)"
    return kind, dimensions, None


def _declared_size(f, kind: str, head: bytes) -> tuple[int, int] | None:
    """(width, height) an image file's header declares, read without decoding; None when the
    header does not say (a damaged file: the decoder will name it)."""
    if kind == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if kind == "gif" and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if kind == "bmp" and len(head) >= 26:
        if int.from_bytes(head[14:18], "little") == 12:  # BITMAPCOREHEADER: 16-bit sizes
            return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)  # negative: stored top-down
        return abs(width), abs(height)
    if kind == "jpeg":
        return _jpeg_size(f)
    return None


# JPEG's start-of-frame markers (they carry the size): SOF0-SOF15 but DHT, JPG and DAC.
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SCAN_LIMIT = 1 << 20  # headers (EXIF, ICC profiles) before the frame fit in a megabyte


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk a JPEG's marker segments to its start of frame."""
    f.seek(2)
    while f.tell() < _JPEG_SCAN_LIMIT:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        while marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + f.read(1)
        code = marker[1]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # no length
            continue
        length = f.read(2)
        if len(length) < 2:
            return None
        size = int.from_bytes(length, "big")
        if code in _SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            return int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big")
        f.seek(size - 2, 1)
    return None


_CHECK_THREADS = 16  # file checks wait on I/O (network filesystems especially), not the CPU
_CHECK_CHUNK = 1024  # files in flight at once: memory stays flat however many files there are


def _file_key(path: str) -> tuple[str, int, int] | None:
    """(path, mtime, size): what a per-file answer is remembered by; None if it cannot be read."""
    try:
        stat = tf.io.gfile.stat(path)
    except tf.errors.OpError:
        return None
    return path, stat.mtime_nsec, stat.length


def _remembered(cache: dict, function: Callable):
    """``function(path)``, remembered in ``cache`` per `_file_key`: a run loads its folder several
    times (each split, the normalization, the preview, tuning trials), and a file that has not
    changed is not read again. (On a filesystem with coarse timestamps, a same-size rewrite within
    one tick would go unnoticed for the rest of the process.) Unreadable files are not cached:
    ``function`` names their problem."""

    def lookup(path: str):
        key = _file_key(path)
        if key is None:
            return function(path)
        if key not in cache:
            cache[key] = function(path)
        return cache[key]

    return lookup


def _each_file(function: Callable, paths: Sequence[str], threads: int):
    """``(path, function(path))`` for every path, ``threads`` at a time, a chunk in flight at once.

    Each thread takes a run of files, not one: a future per file cost more than a remembered
    answer (0.5 s of a 0.66 s re-listing of 20,000 files)."""

    def each(run: Sequence[str]) -> list:
        return [function(path) for path in run]

    with futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), _CHECK_CHUNK):
            chunk = paths[start : start + _CHECK_CHUNK]
            step = math.ceil(len(chunk) / (4 * threads))  # about 4 runs per thread: uneven files even out
            runs = [chunk[i : i + step] for i in range(0, len(chunk), step)]
            yield from zip(chunk, (answer for answers in pool.map(each, runs) for answer in answers))


def _check_files(paths: Sequence[str], max_pixels: int) -> tuple[dict[str, str], set[str]]:
    """`inspect_image_file` on every path, in parallel, remembered per file.

    Returns ``({bad path: reason}, {good paths that are not JPEGs})``: the second is empty for the
    usual all-JPEG folder, so it costs nothing to keep.
    """
    bad, not_jpeg = {}, set()
    inspect = _remembered(_INSPECTED, lambda path: inspect_image_file(path))
    for path, (kind, dimensions, reason) in _each_file(inspect, paths, _CHECK_THREADS):
        reason = reason or too_many_pixels(dimensions, max_pixels)
        if reason:
            bad[path] = reason
        elif kind != "jpeg":
            not_jpeg.add(path)
    return bad, not_jpeg


_INSPECTED: dict = {}  # file key -> `inspect_image_file`'s (format, problem)
_DECODED: dict = {}  # file key -> why the file cannot be decoded, or None


def _decode_problem(path: str) -> str | None:
    try:
        tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        return None
    except tf.errors.OpError as error:
        # "{{function_node ...}} Invalid PNG data, size 12432 [Op:DecodeImage]" -> the middle
        message = op_error_text(error)
        if isinstance(error, tf.errors.NotFoundError):
            return f"cannot be read ({message})"
        return f"cannot be decoded ({message})"


def undecodable_files(paths: Sequence[str]) -> dict[str, str]:
    """``{path: why}`` for every file of ``paths`` that TensorFlow cannot read or decode.

    Decodes each file whole, in parallel: the check that catches what the cheap signature and end
    marker check (`check_image_file`) cannot, a file whose markers are intact but whose body is
    corrupt. Results are remembered per (path, modification time, size), so a second call on the
    same files (another split, another trial) decodes nothing again.
    """
    decode = _remembered(_DECODED, _decode_problem)
    bad = {path: problem for path, problem in _each_file(decode, paths, os.cpu_count() or 2) if problem}
    return dict(sorted(bad.items()))


def _class_folders(root: str) -> list[str]:
    try:
        return sorted(
            name
            for name in tf.io.gfile.listdir(root)
            if not name.startswith(".") and tf.io.gfile.isdir(os.path.join(root, name.rstrip("/")))
        )
    except (OSError, tf.errors.OpError) as error:
        raise DataError(f"image folder {root!r} cannot be read ({op_error_text(error)})") from None


def _unreadable(error: OSError):
    raise DataError(f"folder {error.filename!r} cannot be read ({error.strerror})")


def _leaves(link: str, real: str, dataset_root: str) -> DataError:
    return DataError(
        f"{link!r} is a link to {real!r}, outside the dataset's folder {dataset_root!r}; move or copy the images "
        f"into the dataset, or pass follow_links to read them where they are"
    )


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(folder: str, dataset_root: str, follow_links: bool = False):
    """``(folder, its real path, file names)`` of every folder under a class ``folder``, following
    each link once.

    Local folders are walked by real path: a folder reached again through a symlink (a loop) is
    skipped, and so is a link into another part of the dataset (``cat/loop -> ..``,
    ``dog/cats -> ../cat``): a file belongs to the class folder it really lies in. A link to a
    folder outside the dataset is refused (DataError naming it: a class folder linked to / would
    walk the whole disk), or followed with ``follow_links``. A folder that cannot be listed is a
    DataError naming it. Walking always ends and no file is listed twice. Remote filesystems
    (``gs://``...) have no links: `tf.io.gfile.walk`.
    """
    if "://" in folder:
        for dirpath, _, filenames in tf.io.gfile.walk(folder):
            yield dirpath, dirpath, filenames
        return
    home, root = os.path.realpath(folder), os.path.realpath(dataset_root)
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_unreadable):
        real = os.path.realpath(dirpath)
        if not follow_links and not _inside(real, root):
            raise _leaves(dirpath, real, dataset_root)
        if real in visited or (_inside(real, root) and not _inside(real, home)):
            dirnames[:] = []  # do not descend again
            continue
        visited.add(real)
        dirnames.sort()
        yield dirpath, real, filenames


def _list_class_files(
    root: str,
    class_names: Sequence[str],
    skip_bad_files: bool,
    dataset_root: str | None = None,
    *,
    follow_links: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
):
    """All image files per class, checked.

    Returns (files per class, list of skipped reasons, the good files that are not JPEGs).
    """
    per_class, problems = {}, []
    candidates = []
    seen_files: set[str] = set()  # real paths: a file reached twice through links counts once
    for name in class_names:
        folder = os.path.join(root, name)
        files = []
        for dirpath, real_dirpath, filenames in _walk(folder, dataset_root or root, follow_links):
            for filename in sorted(filenames):
                if filename.startswith("."):  # .DS_Store and friends
                    continue
                path = os.path.join(dirpath, filename)
                # The folder's real path is known: only a linked file needs resolving on its own.
                real = os.path.join(real_dirpath, filename)
                if "://" not in path and os.path.islink(path):
                    real = os.path.realpath(path)
                    if not follow_links and not _inside(real, os.path.realpath(dataset_root or root)):
                        raise _leaves(path, real, dataset_root or root)
                if real in seen_files:
                    continue
                seen_files.add(real)
                if not filename.lower().endswith(IMAGE_EXTENSIONS):
                    problems.append((path, f"has an extension that is not one of {', '.join(IMAGE_EXTENSIONS)}"))
                    continue
                files.append(path)
        per_class[name] = sorted(files)
        candidates.extend(files)
    reasons, not_jpeg = _check_files(candidates, max_pixels)
    bad = set(reasons)
    problems.extend((path, reasons[path]) for path in sorted(bad))
    if problems and not skip_bad_files:
        path, reason = problems[0]
        more = f" (and {len(problems) - 1} more bad files)" if len(problems) > 1 else ""
        raise DataError(
            f"image file {path!r} {reason}{more}; fix or remove it, or pass skip_bad_files=True "
            f"to skip bad files with a warning"
        )
    per_class = {name: [f for f in files if f not in bad] for name, files in per_class.items()}
    return per_class, problems, not_jpeg


def folder_source(
    root: str,
    split: str,
    *,
    skip_bad_files: bool = False,
    class_names: Sequence[str] | None = None,
    validation_holdout: float = 0.0,
    follow_links: bool = False,
    max_image_pixels: int | None = None,
) -> Source:
    """``dir:ROOT``: one subfolder per class, optionally under train/, validation/, test/.

    ``follow_links``: read links that lead outside ROOT (refused otherwise); ``max_image_pixels``:
    the most pixels a file's header may declare (default `MAX_IMAGE_PIXELS`)."""
    rules = dict(follow_links=follow_links, max_pixels=max_image_pixels or MAX_IMAGE_PIXELS)
    if not tf.io.gfile.isdir(root):
        raise DataError(f"image folder {root!r} does not exist or is not a folder")
    split_dirs = [name for name in SPLIT_FOLDERS if tf.io.gfile.isdir(os.path.join(root, name))]
    if split_dirs:
        class_roots = {name: os.path.join(root, name) for name in split_dirs}
        found = sorted({c for r in class_roots.values() for c in _class_folders(r)})
    else:
        found = _class_folders(root)
    class_names = list(class_names or found)
    if len(class_names) < 2:
        raise DataError(
            f"image folder {root!r} must hold one subfolder per class (at least 2), found {class_names or 'none'}"
        )

    files_by_split: dict[str, list[tuple[str, int]]] = {}
    problems, not_jpeg = [], set()
    if split_dirs:
        for split_name, split_root in class_roots.items():
            present = [c for c in class_names if tf.io.gfile.isdir(os.path.join(split_root, c))]
            per_class, skipped, others = _list_class_files(split_root, present, skip_bad_files, root, **rules)
            problems += skipped
            not_jpeg |= others
            _require_images(split_root, per_class)
            files_by_split[split_name] = [(path, class_names.index(c)) for c in present for path in per_class[c]]
        if validation_holdout and "validation" not in files_by_split and "train" in files_by_split:
            files_by_split["train"], files_by_split["validation"] = _hold_out(
                files_by_split["train"], class_roots["train"], validation_holdout
            )
            announce_holdout(f"image folder {root!r}", validation_holdout, len(files_by_split["validation"]))
    else:
        per_class, problems, not_jpeg = _list_class_files(root, class_names, skip_bad_files, **rules)
        _require_images(root, per_class)
        files_by_split = {name: [] for name in FOLDER_SPLIT_FRACTIONS}
        for label, name in enumerate(class_names):
            files = list(per_class[name])
            random.Random(_FOLDER_SPLIT_SEED).shuffle(files)
            n_train = round(len(files) * FOLDER_SPLIT_FRACTIONS["train"])
            n_val = round(len(files) * FOLDER_SPLIT_FRACTIONS["validation"])
            cuts = {
                "train": files[:n_train],
                "validation": files[n_train : n_train + n_val],
                "test": files[n_train + n_val :],
            }
            for split_name, chunk in cuts.items():
                files_by_split[split_name] += [(path, label) for path in chunk]
    if problems:
        log.warning("skipped %d bad file(s) under %s, e.g. %s %s", len(problems), root, *problems[0])

    sizes = {name: len(items) for name, items in files_by_split.items()}
    selected = []
    for name, start, stop in absolute_ranges(split, sizes):
        selected += files_by_split[name][start:stop]
    if not selected:
        raise DataError(f"split {split!r} of image folder {root!r} holds no images")
    if skip_bad_files:
        # Decode the split's files once, so a file whose body is corrupt is skipped here, counted,
        # and num_examples is the number of examples the dataset really yields.
        undecodable = undecodable_files([path for path, _ in selected])
        if undecodable:
            first = min(undecodable.items())
            log.warning(
                "skipped %d file(s) of split %r under %s that cannot be decoded, e.g. %s %s",
                len(undecodable),
                split,
                root,
                *first,
            )
            selected = [(path, label) for path, label in selected if path not in undecodable]
            if not selected:
                raise DataError(f"split {split!r} of image folder {root!r} holds no image that can be decoded")
    paths = [path for path, _ in selected]
    labels = [label for _, label in selected]
    table = (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))
    return Source(
        elements=tf.data.Dataset.from_tensor_slices(table),
        materialize=lambda path, label: {"encoded": tf.io.read_file(path), "label": label},
        class_names=class_names,
        num_examples=len(selected),
        image_shape=None,
        channels=3,
        table=table,
        files=paths,
        jpeg_only=not_jpeg.isdisjoint(paths),
    )


def _hold_out(items: list[tuple[str, int]], split_root: str, fraction: float):
    """(kept, held out) of a split's ``(path, label)`` items, in their order: the shared holdout
    rule (`base.hold_out`), each file keyed by its path inside the split folder ("cats/1.jpg")."""
    key = {path: os.path.relpath(path, split_root).replace(os.sep, "/").encode() for path, _ in items}
    held = hold_out(((key[path], label) for path, label in items), fraction)
    return [i for i in items if key[i[0]] not in held], [i for i in items if key[i[0]] in held]


def _require_images(root, per_class):
    empty = [name for name, files in per_class.items() if not files]
    if len(empty) == len(per_class):
        raise DataError(f"image folder {root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(repr(os.path.join(root, e)) for e in empty)} hold no "
            f"images; remove them or add images"
        )
