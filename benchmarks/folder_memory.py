"""Peak memory of training from an image folder of N images and of 10N: it must not grow with N.

    python benchmarks/folder_memory.py [--images=500] [--image_size=64] [--batch_size=32] [--work_dir=DIR]

Writes N photo-sized JPEGs (500x375, benchmarks/jpegs.py), makes a folder of 10N (hard links to
them), then trains the Fashion CNN one epoch on each through `python -m trainers.train` (no
``--cache``), each in its own process, and prints each process's peak resident memory (its
``ru_maxrss``) and the ratio. Without caching, the pipeline holds the file list (a path and a
label per image), a shuffle permutation and a few batches in flight: only the list grows with N.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE]

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


def peak_of_training(folder: str, run_dir: str) -> int:
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
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
