"""Examples/s of the seed's Fashion CNN training vs the same network through the trainer's steps.

    python benchmarks/train_speed.py [--examples=6400] [--rounds=3] [--batch_size=32]
    python benchmarks/train_speed.py --model=resnet34 --image_size=224 --examples=128 --rounds=2

(a) the seed: a `keras.Sequential` Fashion CNN, the inputs standardized in NumPy, `fit` on NumPy
    arrays, batch 32, Nadam;
(b) ours: `zoo.build("fashion_cnn")` (the same layers, standardization inside the model, adapted
    on the whole training set), compiled by `trainers.steps.compile_for_phase` with the trainer's
    defaults and a `TrainConfig` of Nadam at 0.001, fed a batched, cached, prefetched `tf.data`
    pipeline of the same arrays.
With ``--model`` another zoo model (resnet34, xception at 224 px), (a) is that same zoo model
compiled plainly (SGD with momentum 0.9 at 0.01, the trainer's defaults) and `fit` on NumPy arrays,
and (b) the same through the trainer's steps and pipeline.
Both train on the same synthetic images (28x28x1 for the Fashion CNN) (10 classes, labels a function of the pixels, so
there is something to learn), in one process, alternating one epoch each for ``--rounds`` rounds
after a warm-up epoch, each epoch timed inside `fit` (from its start to its end); the medians and
their ratio are printed, then each one's training loss after its epochs and its loss and accuracy
on held-out images of the same rule, which must be close: the same learning.
``TF_ENABLE_ONEDNN_OPTS`` applies to both (it is read once, when TensorFlow starts): run the
script with it set to 0 and to 1 to compare.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("examples", 6400, "Training examples per epoch.", lower_bound=64)
    flags.DEFINE_integer("rounds", 3, "Timed epochs of each, alternating.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 32, "Batch size of both.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the data and of the weights.")
    flags.DEFINE_string("model", "fashion_cnn", "Zoo model: fashion_cnn (against the seed's), or any other.")
    flags.DEFINE_integer("image_size", 28, "Image size (fashion_cnn: 28).", lower_bound=8)
    flags.DEFINE_boolean(
        "mixed_precision",
        None,
        "Ours with the trainer's --mixed_precision (bfloat16 on CPU); default: the trainer's default for this "
        "hardware. The seed stays float32.",
    )


def synthetic_data(count: int, seed: int, size: int = 28, channels: int = 1):
    """Images whose class is which of 10 horizontal bands is brighter, under noise (learnable in a few
    epochs, not at once: the held-out accuracy tells apart two trainings that learn differently)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.normal(100, 30, (count, size, size, channels)).astype("float32")
    band = max(size // 14, 1)
    for index, label in enumerate(labels):
        top = band + int(label) * band
        images[index, top : top + band + band // 2 + 1] += 12
    return np.clip(images, 0, 255).astype("float32"), labels


def seed_model():
    """The seed's Fashion CNN, as a Sequential model on standardized inputs."""
    from functools import partial

    conv = partial(keras.layers.Conv2D, kernel_size=3, padding="same", activation="relu")
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            conv(64, kernel_size=7),
            keras.layers.MaxPool2D(),
            conv(128),
            conv(128),
            keras.layers.MaxPool2D(),
            conv(256),
            conv(256),
            keras.layers.MaxPool2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def main(argv):
    import pipelines
    import zoo
    from trainers import steps
    from trainers.config import TrainConfig

    fashion = FLAGS.model == "fashion_cnn"
    if FLAGS.model not in zoo.names():
        print(f"error: --model={FLAGS.model}: accepted: {', '.join(zoo.names())}", file=sys.stderr)
        return 2
    size, channels = (28, 1) if fashion else (FLAGS.image_size, 3)
    images, labels = synthetic_data(FLAGS.examples, FLAGS.seed, size, channels)
    keras.utils.set_random_seed(FLAGS.seed)

    if fashion:
        # (a) the seed
        mean, std = images.mean(axis=0, keepdims=True), images.std(axis=0, keepdims=True) + 1e-7
        inputs = (images - mean) / std
        seed = seed_model()
        seed.compile(loss="sparse_categorical_crossentropy", optimizer="nadam", metrics=["accuracy"])
        config = TrainConfig(
            model="fashion_cnn",
            optimizer="nadam",
            learning_rate=0.001,
            batch_size=FLAGS.batch_size,
            mixed_precision=FLAGS.mixed_precision,
        )
    else:
        # (a) plain Keras: the same zoo model, compiled with the same optimizer, fit on NumPy
        inputs, mean, std = images, 0.0, 1.0
        seed = zoo.build(FLAGS.model, num_classes=10, input_shape=(size, size, channels))
        seed.compile(
            loss="sparse_categorical_crossentropy",
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            metrics=["accuracy"],
        )
        config = TrainConfig(
            model=FLAGS.model, batch_size=FLAGS.batch_size, image_size=size, mixed_precision=FLAGS.mixed_precision
        )

    def seed_epoch():
        timer = EpochTimer()
        history = seed.fit(inputs, labels, batch_size=FLAGS.batch_size, epochs=1, verbose=0, callbacks=[timer])
        return history.history["loss"][-1], timer.seconds

    # (b) ours: the trainer's model, normalization, compile step and a tf.data pipeline
    strategy = steps.make_strategy(config)  # the trainer's precision policy, before the model is built
    ours = zoo.build(FLAGS.model, num_classes=10, input_shape=(size, size, channels))
    with warnings.catch_warnings():  # Keras warns that an array is not a dict of one named input
        warnings.simplefilter("ignore")
        zoo.adapt_normalization(ours, images)
    steps_per_epoch = FLAGS.examples // FLAGS.batch_size
    (phase,) = steps.phases(config)
    steps.compile_for_phase(ours, config, phase, steps_per_epoch, strategy)
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(FLAGS.examples, seed=FLAGS.seed)
        .batch(FLAGS.batch_size, drop_remainder=True)
        .cache()
        .repeat()
        .prefetch(tf.data.AUTOTUNE)
        .with_options(pipelines.dataset_options(config.data_autotune))  # what the trainer's pipelines get
    )

    def our_epoch():
        timer = EpochTimer()
        history = ours.fit(
            dataset, steps_per_epoch=steps_per_epoch, epochs=1, verbose=0, shuffle=False, callbacks=[timer]
        )
        return history.history["loss"][-1], timer.seconds

    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: TensorFlow's default for this CPU)")
    precision = keras.mixed_precision.global_policy().name
    print(
        f"TF_ENABLE_ONEDNN_OPTS={onednn}; {FLAGS.examples} examples/epoch, batch {FLAGS.batch_size}; ours: {precision}"
    )
    seed_epoch(), our_epoch()  # warm-up: tracing, first allocations
    rates = {"seed": [], "ours": []}
    losses = {}
    for round_index in range(FLAGS.rounds):
        for name, epoch in (("seed", seed_epoch), ("ours", our_epoch)):
            losses[name], seconds = epoch()
            rates[name].append(steps_per_epoch * FLAGS.batch_size / seconds)
        print(f"round {round_index + 1}: seed {rates['seed'][-1]:.0f}, ours {rates['ours'][-1]:.0f} examples/s")
    seed_rate, our_rate = statistics.median(rates["seed"]), statistics.median(rates["ours"])
    baseline = "seed (Sequential, fit on NumPy)" if fashion else f"plain fit on NumPy ({FLAGS.model})"
    print(f"{baseline}: {seed_rate:.0f} examples/s")
    print(f"ours (trainer's steps, tf.data):  {our_rate:.0f} examples/s")
    print(f"ours / seed: {our_rate / seed_rate:.2f}x")
    epochs = FLAGS.rounds + 1
    print(f"training loss after {epochs} epochs: seed {losses['seed']:.4f}, ours {losses['ours']:.4f}")
    # The same learning: both on held-out images of the same rule (the seed's standardized as its
    # training inputs were; ours standardizes inside the model).
    test_images, test_labels = synthetic_data(max(FLAGS.examples // 4, 64), FLAGS.seed + 1, size, channels)
    seed_test = seed.evaluate(
        (test_images - mean) / std if fashion else test_images, test_labels, verbose=0, return_dict=True
    )
    our_test = ours.evaluate(test_images, test_labels, verbose=0, return_dict=True)
    seed_figures = f"seed loss {seed_test['loss']:.4f} accuracy {seed_test['accuracy']:.3f}"
    our_figures = f"ours loss {our_test['loss']:.4f} accuracy {our_test['accuracy']:.3f}"
    print(f"held-out ({len(test_labels)} images): {seed_figures}, {our_figures}")
    return 0


class EpochTimer(keras.callbacks.Callback):
    """Seconds from the epoch's start to its end, inside `fit` (what a long run's epochs cost: the
    one-off setup and teardown of each `fit` call is left out, for both)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


if __name__ == "__main__":
    define_flags()
    app.run(main)
