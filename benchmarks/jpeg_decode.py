"""Where the time of decoding a JPEG goes: what a crop window or a DCT scale saves over a full decode.

    python benchmarks/jpeg_decode.py                                   # JPEGs it writes itself
    python benchmarks/jpeg_decode.py --images_dir=../shared/data/flowers-sample

Each candidate reads and decodes every JPEG in a parallel map, as `benchmarks/pipeline.py`'s floor
does, and keeps only the decoded shape, so decoding is all that costs:

  full decode            `tf.io.decode_jpeg` (the floor of the pipeline benchmark);
  centre 90% square      `decode_and_crop_jpeg` of the window the training crop takes;
  16x16 at bottom right  every row above it is still entropy-decoded (Huffman), then skipped;
  16 columns, all rows   every row entropy-decoded, the inverse DCT and colour conversion mostly not;
  16x16 at top left      decoding stops after the first rows: what the file's header costs;
  ratio=2                libjpeg's DCT scaling (half size): the inverse DCT shrinks, entropy
                         decoding does not.

Each one's time per image as a share of the full decode's shows how much any window or scale can
save; the rest, entropy decoding of every row down to the window's last, no TF op avoids.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from jpegs import images_per_second, prepare_folder  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The benchmark's flags, defined when it runs (importing it defines none)."""
    flags.DEFINE_string("images_dir", None, "Folder of class subfolders of JPEGs (default: write some).")
    flags.DEFINE_integer("num_files", 200, "JPEGs to write when --images_dir is not given.")
    flags.DEFINE_integer("images", 1280, "Images timed per measurement.")
    flags.DEFINE_integer("repeats", 5, "Alternating measurements of each candidate.")


BATCH = 32


def _window(shape, kind):
    height, width = shape[0], shape[1]
    rows, cols = tf.minimum(height, 16), tf.minimum(width, 16)  # 16, or the whole side if smaller
    if kind == "centre":
        side = tf.minimum(height, width) * 9 // 10
        return tf.stack([(height - side) // 2, (width - side) // 2, side, side])
    if kind == "bottom_right":
        return tf.stack([height - rows, width - cols, rows, cols])
    if kind == "columns":
        return tf.stack([0, 0, height, cols])
    return tf.stack([0, 0, rows, cols])  # top_left


def decoder(kind):
    def decode(path):
        encoded = tf.io.read_file(path)
        if kind == "full":
            return tf.shape(tf.io.decode_jpeg(encoded, channels=3))
        if kind == "ratio2":
            return tf.shape(tf.io.decode_jpeg(encoded, channels=3, ratio=2))
        window = _window(tf.io.extract_jpeg_shape(encoded), kind)
        return tf.shape(tf.io.decode_and_crop_jpeg(encoded, window, channels=3))

    return decode


CANDIDATES = {
    "full decode": "full",
    "centre 90% square": "centre",
    "16x16 at bottom right": "bottom_right",
    "16 columns, all rows": "columns",
    "16x16 at top left": "top_left",
    "ratio=2": "ratio2",
}


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        _, paths, _ = prepare_folder(FLAGS.images_dir, FLAGS.num_files, FLAGS.images, BATCH, tmp)
        print(f"{len(paths)} JPEGs; {os.cpu_count()} CPU cores; tf {tf.__version__}")

        def make(kind):
            dataset = tf.data.Dataset.from_tensor_slices(paths).repeat()
            return (
                dataset.map(decoder(kind), num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(tf.data.AUTOTUNE)
            )

        results = {name: [] for name in CANDIDATES}
        for _ in range(FLAGS.repeats):
            for name, kind in CANDIDATES.items():
                results[name].append(images_per_second(lambda kind=kind: make(kind), FLAGS.images, BATCH))
        full = statistics.median(results["full decode"])
        for name, values in results.items():
            rate = statistics.median(values)
            print(
                f"{name:>22}: {rate:8.1f} images/s, {full / rate:4.0%} of a full decode's time   "
                f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
            )


if __name__ == "__main__":
    define_flags()
    app.run(main)
