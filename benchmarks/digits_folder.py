"""Write scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes; shipped with the
package, so offline) as an image folder the trainer reads: ``OUT/train/<digit>/*.png`` and
``OUT/test/<digit>/*.png``, a stratified 80/20 split fixed by --seed.

    python benchmarks/digits_folder.py --out=/tmp/digits
    python -m trainers.train --dataset=dir:/tmp/digits --image_size=28 ...   # validation: 10% of train

The real image set that `benchmarks/beat_the_notebook.sh` and the pruning measurement use.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("out", None, "Folder to write (must not exist, or be a folder this script wrote).")
    flags.DEFINE_float("test_fraction", 0.2, "Share of each class kept aside as test/.")
    flags.DEFINE_integer("seed", 0, "Seed of the split.")
    flags.mark_flag_as_required("out")


def write_digits(out: str, test_fraction: float = 0.2, seed: int = 0) -> dict[str, int]:
    """The digits as PNGs under ``out``; returns the image count of each split."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "test": 0}
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        held = round(len(indices) * test_fraction)
        for split, chosen in (("test", indices[:held]), ("train", indices[held:])):
            folder = os.path.join(out, split, str(label))
            os.makedirs(folder, exist_ok=True)
            for index in chosen:
                Image.fromarray(pixels[index], mode="L").save(os.path.join(folder, f"{index:04d}.png"))
            counts[split] += len(chosen)
    return counts


def main(argv):
    del argv
    if os.path.exists(FLAGS.out) and os.listdir(FLAGS.out):
        if set(os.listdir(FLAGS.out)) != {"train", "test"}:
            raise app.UsageError(f"--out={FLAGS.out} exists and is not a digits folder; give a new folder")
    if not 0 < FLAGS.test_fraction < 1:
        raise app.UsageError(f"--test_fraction={FLAGS.test_fraction}: must be in (0, 1)")
    counts = write_digits(FLAGS.out, FLAGS.test_fraction, FLAGS.seed)
    print(f"{FLAGS.out}: {counts['train']} train, {counts['test']} test images (8x8 gray PNGs, 10 classes)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
