"""A fused resize-and-flip kernel for the input pipeline, built against the installed TensorFlow.

`resize_flip(image, size, flip)` turns a decoded uint8 image into the float32 training image:
bilinear resize (TF's half-pixel centres, no antialiasing) and an optional left-right mirror. TF
spells that as three ops, `tf.cast`, `tf.image.resize` and `tf.reverse`, each of which reads and
writes the whole image; on the CPU that is about a sixth of what a training pipeline spends per
image, next to the JPEG decode. The kernel in ``csrc/resize_flip.cc`` does it in one pass, about
2x faster on one core (`benchmarks/resize_flip.py`; figures in BUILD.md), and gives the TF ops'
result but for float rounding (a few ulps: at most ~3e-5 on values up to 255).

The kernel is optional. ``make install`` builds it (``python -m pipelines.fused build``); without
a C++ compiler, or with a library built for another TF version, `resize_flip` runs the TF ops and
says so once in the log. ``ZOO_FUSED_OPS=0`` in the environment turns the kernel off (the
benchmark uses this to time both).

    python -m pipelines.fused build     # compile for the installed TF (needs g++ or $CXX)
    python -m pipelines.fused status    # which implementation the pipelines will use, and why
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tensorflow as tf
from absl import logging

from zoo.common import error_line

SOURCE = Path(__file__).resolve().parent / "csrc" / "resize_flip.cc"
DISABLE_VARIABLE = "ZOO_FUSED_OPS"


class BuildError(RuntimeError):
    """The kernel could not be compiled; the message says why."""


def library_path(directory: Path | None = None) -> Path:
    """Where the library for the installed TF lives: one file per TF version, never a stale one."""
    return (directory or SOURCE.parent) / f"zoo_ops.tf{tf.__version__}.so"


def compiler() -> str | None:
    """``$CXX``, else the first of g++, c++, clang++ on PATH."""
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    return next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)


def build(output: Path | None = None, cxx: str | None = None) -> Path:
    """Compile ``csrc/resize_flip.cc`` for the installed TF; returns the library's path.

    Writes to a temporary file first and renames it, so a failed or concurrent build never
    leaves a half-written library where `load` looks. Raises `BuildError` with the reason.
    """
    output = Path(output) if output else library_path()
    cxx = cxx or compiler()
    if cxx is None:
        raise BuildError("no C++ compiler found (install g++ or set CXX)")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=output.parent)
    except OSError as error:
        raise BuildError(f"cannot write the library to {output.parent}: {error.strerror}") from None
    os.close(handle)
    command = [
        cxx,
        "-shared",
        "-fPIC",
        "-O3",
        # Plain multiply-add, as TF's own kernels are compiled: no fused multiply-add contraction.
        "-ffp-contract=off",
        *tf.sysconfig.get_compile_flags(),
        str(SOURCE),
        "-o",
        partial,
        *tf.sysconfig.get_link_flags(),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line]
            detail = (errors or result.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"{cxx} failed (exit {result.returncode}): {detail}")
        os.replace(partial, output)
    except OSError as error:
        raise BuildError(f"could not run {cxx}: {error}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return output


_modules: dict[str, object] = {}
_reported: set[str] = set()


def _load(path: str):
    """``(module, None)`` or ``(None, reason)``. A library loads once per process."""
    if path in _modules:
        return _modules[path], None
    if not os.path.exists(path):
        return None, f"{path} is not built (run `python -m pipelines.fused build`)"
    try:
        module = tf.load_op_library(path)
    except (tf.errors.OpError, OSError) as error:
        return None, f"{path} does not load ({error_line(error)}); rebuild it"
    _modules[path] = module
    return module, None


def status():
    """``(module, None)`` when the kernel is in use, else ``(None, why not)``."""
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None, f"{DISABLE_VARIABLE}=0"
    return _load(str(library_path()))


def kernel():
    """The loaded kernel module, or None (turned off, not built, or not loadable).

    Which one is in use is logged once (each reason for None once). Read when a pipeline is
    traced, so ``ZOO_FUSED_OPS`` applies to datasets built after it is set.
    """
    module, reason = status()
    if reason not in _reported:  # None when on: that is said once too
        _reported.add(reason)
        if module is None:
            logging.info("fused resize+flip kernel off: %s; using tf.image.resize + tf.reverse", reason)
        else:
            logging.info("fused resize+flip kernel on: %s", library_path())
    return module


# Plain Python when traced (no tensor-dependent control flow here): AutoGraph would otherwise
# convert the loading code below, down to os.path.exists, and warn that it cannot.
@tf.autograph.experimental.do_not_convert
def resize_flip(image, size, flip=False) -> tf.Tensor:
    """``image`` (H, W, C) uint8 -> float32 (height, width, C), resized; mirrored where ``flip``.

    ``flip`` is a Python or tensor bool. The fused kernel when it is built, else TF's ops with
    the same result (but for float rounding).
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise TypeError(f"resize_flip takes uint8 images, received {image.dtype.name}")
    size = tf.convert_to_tensor(size, tf.int32)
    flip = tf.convert_to_tensor(flip, tf.bool)
    module = kernel()
    if module is not None:
        return module.zoo_resize_flip(image, size, flip)
    return reference_resize_flip(image, size, flip)


def reference_resize_flip(image, size, flip) -> tf.Tensor:
    """The TF ops the kernel replaces: cast, resize, and reverse when ``flip``."""
    # float32 first: TF's bilinear kernel converts each uint8 sample it reads, but reads float32
    # in a vectorized loop, so this is about half the time of resizing the uint8 image.
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=False)
    return tf.cond(flip, lambda: tf.reverse(resized, axis=[1]), lambda: resized)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.fused", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="compile the kernel for the installed TF")
    build_command.add_argument(
        "--optional",
        action="store_true",
        help="exit 0 when it cannot be built (the pipelines then use TF's ops)",
    )
    commands.add_parser("status", help="say which implementation the pipelines use")
    args = parser.parse_args(argv)

    if args.command == "build":
        start = time.perf_counter()
        try:
            path = build()
        except BuildError as error:
            fallback = "; the pipelines will use tf.image.resize + tf.reverse" if args.optional else ""
            print(f"fused kernel not built: {error}{fallback}", file=sys.stderr)
            return 0 if args.optional else 1
        module, reason = _load(str(path))
        if module is None:
            print(f"fused kernel built but not usable: {reason}", file=sys.stderr)
            return 0 if args.optional else 1
        print(f"fused kernel built for TF {tf.__version__}: {path} ({time.perf_counter() - start:.0f} s)")
        return 0
    module, reason = status()
    if module is None:
        print(f"pipelines use tf.image.resize + tf.reverse ({reason})")
    else:
        print(f"pipelines use the fused kernel {library_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
