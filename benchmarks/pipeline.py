"""Images/s of the seed's tf_flowers training pipeline vs `pipelines.load`, on a folder of JPEGs.

    python benchmarks/pipeline.py                                   # JPEGs it writes itself
    python benchmarks/pipeline.py --images_dir=../shared/data/flowers-sample

(a) the seed: sequential `map(preprocess)` with random_crop + flip, resize to 224,
    `xception.preprocess_input`, `batch(32)`, `prefetch(1)` (file reading + JPEG decoding in a
    sequential map too, as TFDS would hand it decoded images);
(b) ours: `pipelines.load("dir:...", training=True, augment=("crop", "flip"), image_size=224)`,
    with the fused resize+flip kernel (`pipelines.fused`, when built) and (b') with TF's ops
    (``ZOO_FUSED_OPS=0``), and (b'') with tf.data's autotuning on (``autotune=True``);
(c) the floor: read + decode every JPEG in a parallel map, nothing else;
(c') decode + resize only: the middle crop window decoded, cast and resized by TF's ops in a
    parallel map, no shuffle and no random op: the fixed work of the job at its leanest in TF ops;
(d) ours with ``cache=True``, timed after one epoch has filled the cache (the decoded images are
    kept in memory; crop, flip and resize still run on every image, every epoch).
They run in one process, alternating, each timed over the same number of images after a warm-up;
the medians and ratios are printed. Any pipeline that decodes every image every epoch is bounded by
the floor, so the floor / seed ratio printed is the most that streaming can gain over the seed.
Peak memory (RSS) of (b) is measured over the folder and over a folder with 4x as many files
(links to the same JPEGs): it must not grow with the file count.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

import keras  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from jpegs import images_per_second, list_jpegs, prepare_folder, replicate  # noqa: E402

import pipelines  # noqa: E402
from pipelines import fused  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The benchmark's flags, defined when it runs (importing it defines none)."""
    flags.DEFINE_string("images_dir", None, "Folder of class subfolders of JPEGs (default: write some).")
    flags.DEFINE_integer("num_files", 200, "JPEGs to write when --images_dir is not given.")
    flags.DEFINE_integer("images", 1280, "Images timed per measurement.")
    flags.DEFINE_integer("repeats", 5, "Alternating measurements of each pipeline.")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_integer("image_size", 224, "Output image size.")


def seed_pipeline(paths, labels, size, batch_size, auto_parallel=True):
    """Hands-On ML ch. 14's tf_flowers training pipeline, on files.

    tf.data parallelizes stateless "sequential" maps by itself (map_parallelization, on by
    default), so the seed's file-decoding map already runs on every core; ``auto_parallel=False``
    turns that off to show the literally sequential pipeline.
    """

    def read(path, label):
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3), label

    def random_crop(image):
        shape = tf.shape(image)
        min_dim = tf.reduce_min([shape[0], shape[1]]) * 90 // 100
        return tf.image.random_crop(image, [min_dim, min_dim, 3])

    def preprocess(image, label):
        cropped = random_crop(image)
        cropped = tf.image.random_flip_left_right(cropped)
        resized = tf.image.resize(cropped, [size, size])
        return keras.applications.xception.preprocess_input(resized), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels)).repeat().shuffle(1000)
    dataset = dataset.map(read).map(preprocess).batch(batch_size).prefetch(1)
    if not auto_parallel:
        options = tf.data.Options()
        options.experimental_optimization.map_parallelization = False
        dataset = dataset.with_options(options)
    return dataset


def decode_only(paths, batch_size):
    """Read + decode each JPEG in parallel; batches of their shapes, so nothing else costs."""
    dataset = tf.data.Dataset.from_tensor_slices(paths).repeat()
    return (
        dataset.map(
            lambda p: tf.shape(tf.io.decode_jpeg(tf.io.read_file(p), channels=3)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def decode_and_resize(paths, size, batch_size):
    """The fixed part of the job, as lean as TF allows: the middle 90% square of each JPEG decoded
    (window only), cast and resized to ``size`` in a parallel map, batched. No shuffle, no random
    op, no flip: what is left for ours to spend on those is the gap to this."""

    def load(path):
        encoded = tf.io.read_file(path)
        shape = tf.io.extract_jpeg_shape(encoded)
        crop = tf.minimum(shape[0], shape[1]) * 9 // 10
        window = tf.stack([(shape[0] - crop) // 2, (shape[1] - crop) // 2, crop, crop])
        image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
        return tf.image.resize(tf.cast(image, tf.float32), [size, size])

    dataset = tf.data.Dataset.from_tensor_slices(paths).repeat()
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def ours(root, size, batch_size, autotune=False):
    dataset, _ = pipelines.load(
        f"dir:{root}",
        "train+validation+test",
        image_size=size,
        batch_size=batch_size,
        training=True,
        augment=("crop", "flip"),
        seed=0,
        autotune=autotune,
    )
    return dataset.repeat()


def ours_tf_ops(root, size, batch_size):
    """Ours with TF's resize and flip ops instead of the fused kernel (read when the map is traced)."""
    previous = os.environ.get(fused.DISABLE_VARIABLE)
    os.environ[fused.DISABLE_VARIABLE] = "0"
    try:
        return ours(root, size, batch_size)
    finally:
        if previous is None:
            del os.environ[fused.DISABLE_VARIABLE]
        else:
            os.environ[fused.DISABLE_VARIABLE] = previous


def ours_cached(root, size, batch_size):
    """Ours with ``cache=True``, one epoch already run so the cache is full."""
    dataset, _ = pipelines.load(
        f"dir:{root}",
        "train+validation+test",
        image_size=size,
        batch_size=batch_size,
        training=True,
        augment=("crop", "flip"),
        seed=0,
        cache=True,
    )
    for _ in dataset:  # fills the cache; later iterators of this dataset read from memory
        pass
    return dataset.repeat()


class PeakRss:
    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        process = psutil.Process()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                time.sleep(0.01)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        root, paths, labels = prepare_folder(FLAGS.images_dir, FLAGS.num_files, FLAGS.images, FLAGS.batch_size, tmp)
        size, batch = FLAGS.image_size, FLAGS.batch_size
        print(f"{len(paths)} JPEGs from {root}; {os.cpu_count()} CPU cores; tf {tf.__version__}")
        kernel, why_not = fused.status()
        print(f"fused resize+flip kernel: {'on' if kernel else f'off ({why_not})'}")

        # Memory first, before any other pipeline (or the cache) has raised the process's peak.
        many = os.path.join(tmp, "many")
        replicate(root, many, 4)
        for label, folder in (("1x files", root), ("4x files", many)):
            count = len(list_jpegs(folder)[0]) if folder == root else 4 * len(paths)
            with PeakRss() as rss:
                images_per_second(lambda folder=folder: ours(folder, size, batch), count, batch)  # every file
            print(f"peak RSS, one pass over {count} files ({label}): {rss.peak / 2**20:.0f} MiB")

        candidates = {
            "seed pipeline": lambda: seed_pipeline(paths, labels, size, batch),
            "seed, no auto-parallel": lambda: seed_pipeline(paths, labels, size, batch, False),
            "pipelines.load": lambda: ours(root, size, batch),
            "pipelines.load, TF ops": lambda: ours_tf_ops(root, size, batch),
            "pipelines.load, autotune": lambda: ours(root, size, batch, autotune=True),
            "decode only (floor)": lambda: decode_only(paths, batch),
            "decode + resize only": lambda: decode_and_resize(paths, size, batch),
        }
        cached = ours_cached(root, size, batch)
        candidates["pipelines.load, cache=True"] = lambda: cached
        results = {name: [] for name in candidates}
        for _ in range(FLAGS.repeats):
            for name, make_dataset in candidates.items():
                results[name].append(images_per_second(make_dataset, FLAGS.images, batch))
        median = {name: statistics.median(values) for name, values in results.items()}
        for name, values in results.items():
            print(f"{name:>26}: {median[name]:8.1f} images/s   (runs: {', '.join(f'{v:.1f}' for v in values)})")
        print(f"ours / seed pipeline: {median['pipelines.load'] / median['seed pipeline']:.2f}x")
        print(
            f"ours / seed without tf.data auto-parallelization: "
            f"{median['pipelines.load'] / median['seed, no auto-parallel']:.2f}x"
        )
        print(f"ours / decode-only floor: {median['pipelines.load'] / median['decode only (floor)']:.0%}")
        paired = [o / f for o, f in zip(results["pipelines.load"], results["decode only (floor)"])]
        print(
            f"ours / decode-only floor, round by round (measured seconds apart, so drift cancels): "
            f"median {statistics.median(paired):.0%} ({', '.join(f'{r:.0%}' for r in paired)})"
        )
        print(
            f"ours with TF ops instead of the fused kernel / decode-only floor: "
            f"{median['pipelines.load, TF ops'] / median['decode only (floor)']:.0%}"
        )
        print(f"fused kernel / TF ops (both ours): {median['pipelines.load'] / median['pipelines.load, TF ops']:.2f}x")
        print(
            f"ours (tf.data autotuning off, the default) / ours with autotune=True: "
            f"{median['pipelines.load'] / median['pipelines.load, autotune']:.2f}x"
        )
        print(
            f"decode + resize only / decode-only floor: "
            f"{median['decode + resize only'] / median['decode only (floor)']:.0%} "
            f"(the same job without shuffling, random crop or flip)"
        )
        print(f"ours / decode + resize only: {median['pipelines.load'] / median['decode + resize only']:.0%}")
        print(
            f"decode-only floor / seed pipeline: "
            f"{median['decode only (floor)'] / median['seed pipeline']:.2f}x "
            f"(the bound for any pipeline that decodes every image every epoch)"
        )
        print(
            f"ours with cache=True / seed pipeline: "
            f"{median['pipelines.load, cache=True'] / median['seed pipeline']:.2f}x"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
