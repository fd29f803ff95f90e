"""Peak memory of training from an image folder of N images and of 10N: it must not grow with N.

    python benchmarks/folder_memory.py [--images=500] [--image_size=64] [--batch_size=32] [--work_dir=DIR]
    python benchmarks/folder_memory.py --bombs=3    # and N images + 3 decompression bombs

Writes N photo-sized JPEGs (500x375, benchmarks/jpegs.py), makes a folder of 10N (hard links to
them), then trains the Fashion CNN one epoch on each through `python -m trainers.train` (no
``--cache``), each in its own process, and prints each process's peak resident memory (its
``ru_maxrss``) and the ratio. Without caching, the pipeline holds the file list (a path and a
label per image), a shuffle permutation and a few batches in flight: only the list grows with N.

``--bombs=K`` adds a third run: the N images plus K small PNGs whose headers declare 23000x23000
pixels (1.6 GB each once decoded), trained with ``--skip_bad_files``: the header check skips them
before anything is decoded, so the peak stays the N run's.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS

# Runs the trainer in this child process and reports its peak memory when it exits.
CHILD = """
import atexit, resource, runpy, sys
atexit.register(lambda: print(f"PEAK_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr))
sys.argv = ["trainers.train", *sys.argv[1:]]
runpy.run_module("trainers.train", run_name="__main__")
"""


def define_flags() -> None:
    flags.DEFINE_integer("images", 500, "N: images in the small folder (the large one has 10N).", lower_bound=10)
    flags.DEFINE_integer("image_size", 64, "Training image size.", lower_bound=8)
    flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
    flags.DEFINE_string("work_dir", "/tmp/folder_memory", "Folder for the images and runs (replaced).")
    flags.DEFINE_integer("bombs", 0, "Also train on the N images plus this many decompression bombs.", lower_bound=0)


def write_bomb(path: str, width: int = 23000, height: int = 23000) -> None:
    """A PNG of a few hundred bytes whose header declares ``width`` x ``height`` gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (1 + min(width, 64)) * min(height, 64))  # the start of the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def peak_of_training(folder: str, run_dir: str, *extra: str) -> int:
    """Peak resident KiB of one epoch of training on ``folder``."""
    command = [
        sys.executable,
        "-c",
        CHILD,
        f"--model_dir={run_dir}",
        f"--dataset=dir:{folder}",
        "--model=fashion_cnn",
        f"--image_size={FLAGS.image_size}",
        "--epochs=1",
        f"--batch_size={FLAGS.batch_size}",
        "--validation_split=",
        "--test_split=",
        "--adapt_steps=2",
        *extra,
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    if result.returncode != 0:
        raise SystemExit(f"training on {folder} failed:\n{result.stderr[-3000:]}")
    peaks = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_KIB ")]
    return peaks[-1]


def main(argv):
    from jpegs import replicate, write_jpegs

    shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
    small, large = os.path.join(FLAGS.work_dir, "n"), os.path.join(FLAGS.work_dir, "10n")
    write_jpegs(small, FLAGS.images)
    replicate(small, large, 10)
    rows = []
    for name, folder in (("N", small), ("10N", large)):
        count = sum(len(files) for _, _, files in os.walk(folder))
        peak = peak_of_training(folder, os.path.join(FLAGS.work_dir, f"run_{name}"))
        rows.append(peak)
        print(
            f"{name:>3}: {count:6d} images, one epoch at {FLAGS.image_size} px: peak {peak / 1024:.0f} MiB", flush=True
        )
    print(f"10N / N peak memory: {rows[1] / rows[0]:.2f}x")
    if FLAGS.bombs:
        bombed = os.path.join(FLAGS.work_dir, "n_bombs")
        shutil.copytree(small, bombed)
        for index in range(FLAGS.bombs):
            write_bomb(os.path.join(bombed, sorted(os.listdir(bombed))[0], f"bomb{index}.png"))
        peak = peak_of_training(bombed, os.path.join(FLAGS.work_dir, "run_bombs"), "--skip_bad_files")
        label = f"N + {FLAGS.bombs} bombs (23000x23000 declared, --skip_bad_files)"
        print(f"{label}: peak {peak / 1024:.0f} MiB", flush=True)
        print(f"with bombs / N peak memory: {peak / rows[0]:.2f}x")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
