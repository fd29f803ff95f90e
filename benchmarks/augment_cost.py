"""What each augmentation policy costs the input pipeline: images/s of `pipelines.load` on a
folder of JPEGs with crop + flip (the baseline), and with each policy added on top.

    python benchmarks/augment_cost.py                                   # JPEGs it writes itself
    python benchmarks/augment_cost.py --images_dir=../shared/data/flowers-sample --image_size=224

The pipelines run in one process, alternating, each timed over the same number of images after a
warm-up (`jpegs.images_per_second`); the medians and each one's ratio to the baseline are printed.
The policies are Keras's layers on batches (`pipelines.ops.policy_batches`), on the CPU, in the
input pipeline: what they cost is paid there, not in the training step.

With randaugment among the policies, a third pipeline is timed beside them: crop + flip, then Keras's
`RandAugment` layer called on each image, as the pipelines ran it before `zoo.compat.randaugment_image`
(which gives the same pixels computing only the two ops drawn); the ratio of ours to it is printed.
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

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from jpegs import images_per_second, prepare_folder  # noqa: E402

import pipelines  # noqa: E402
from zoo.common import AUGMENT_STRENGTHS  # noqa: E402

FLAGS = flags.FLAGS
BASELINE = ("crop", "flip")
POLICIES = ("randaugment", "erase", "mixup", "cutmix", "mixup,cutmix")
KERAS_RANDAUGMENT = "crop,flip,Keras's RandAugment per image"


def define_flags() -> None:
    """The benchmark's flags, defined when it runs (importing it defines none)."""
    flags.DEFINE_string("images_dir", None, "Folder of class subfolders of JPEGs (default: write some).")
    flags.DEFINE_integer("num_files", 200, "JPEGs to write when --images_dir is not given.")
    flags.DEFINE_integer("images", 640, "Images timed per measurement.")
    flags.DEFINE_integer("repeats", 3, "Alternating measurements of each pipeline.")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_integer("image_size", 128, "Output image size.")
    flags.DEFINE_list("policies", list(POLICIES), "Policies to time, each added to crop and flip ('+' joins two).")


def pipeline(root, augment, size, batch_size):
    def make():
        dataset, _ = pipelines.load(
            f"dir:{root}",
            "train+validation+test",
            image_size=size,
            batch_size=batch_size,
            training=True,
            augment=augment,
            seed=0,
        )
        return dataset.repeat()

    return make


def keras_randaugment_pipeline(root, size, batch_size):
    """crop + flip, then Keras's RandAugment layer on each image: the baseline of ours."""
    make_plain = pipeline(root, BASELINE, size, batch_size)
    layer = keras.layers.RandAugment(
        value_range=(0, 255), num_ops=2, factor=AUGMENT_STRENGTHS["randaugment"][1], seed=0, dtype="float32"
    )

    def make():
        return make_plain().map(
            lambda images, labels: (tf.map_fn(lambda image: layer(image, training=True), images), labels)
        )

    return make


def main(argv):
    del argv
    policies = [p.replace("+", ",") for p in FLAGS.policies]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise app.UsageError(f"--policies={','.join(unknown)}: accepted: {', '.join(POLICIES)}")
    with tempfile.TemporaryDirectory() as tmp:
        root, paths, _ = prepare_folder(FLAGS.images_dir, FLAGS.num_files, FLAGS.images, FLAGS.batch_size, tmp)
        size, batch = FLAGS.image_size, FLAGS.batch_size
        print(f"{len(paths)} JPEGs from {root}; {os.cpu_count()} CPU cores; tf {tf.__version__}; {size}x{size}")
        runs = {"crop,flip": pipeline(root, BASELINE, size, batch)}
        for policy in policies:
            runs[f"crop,flip,{policy}"] = pipeline(root, (*BASELINE, *policy.split(",")), size, batch)
        if "randaugment" in policies:
            runs[KERAS_RANDAUGMENT] = keras_randaugment_pipeline(root, size, batch)
        results = {name: [] for name in runs}
        for _ in range(FLAGS.repeats):
            for name, make in runs.items():
                results[name].append(images_per_second(make, FLAGS.images, batch))
        base = statistics.median(results["crop,flip"])
        print(f"{'augment':<40} {'images/s':>9} {'vs crop,flip':>13}")
        for name, values in results.items():
            median = statistics.median(values)
            print(f"{name:<40} {median:>9.0f} {median / base:>12.2f}x")
        if KERAS_RANDAUGMENT in results:
            ours, theirs = (statistics.median(results[k]) for k in ("crop,flip,randaugment", KERAS_RANDAUGMENT))
            print(f"randaugment, ours / Keras's layer on each image: {ours / theirs:.2f}x")


if __name__ == "__main__":
    define_flags()
    app.run(main)
