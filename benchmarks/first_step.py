"""What building the training state before ``fit`` saves: a tiny run of the trainer, timed whole,
with `zoo.compat.build_training_state` (the trainer's way: the training step traced once) and
without it (Keras's way without a distribution strategy: traced twice), alternating in this process.

    python benchmarks/first_step.py --models=resnet18,fashion_cnn --image_size=32 --repeats=3

For each model it prints the median seconds of each way, how many times the training step was
traced, and the ratio. The run is `trainers.training.train` on the built-in shapes set (32
training images, one epoch, validation, test and export included), so the figure is what a user's
short run or a search trial gains, not a steady-state step time.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet18"], "zoo models to time")
flags.DEFINE_integer("image_size", 32, "image side in pixels", lower_bound=8)
flags.DEFINE_integer("repeats", 3, "runs of each way per model (alternating)", lower_bound=1)


def timed_run(model: str, folder: str, build_first: bool) -> tuple[float, int]:
    """Seconds of one tiny training, and the traces of its training step."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    import trainers.training
    from trainers.config import TrainConfig

    traces, train_step, shim = [], TensorFlowTrainer.train_step, compat.build_training_state

    def counted(self, data):  # Python runs it once per trace
        traces.append(1)
        return train_step(self, data)

    TensorFlowTrainer.train_step = counted
    if not build_first:
        compat.build_training_state = lambda model, element_spec: None
    try:
        config = TrainConfig(
            model=model,
            model_dir=folder,
            dataset="shapes",
            train_split="train[:32]",
            validation_split="validation[:16]",
            test_split="test[:16]",
            image_size=FLAGS.image_size,
            batch_size=16,
            epochs=1,
        )
        start = time.perf_counter()
        trainers.training.train(config)
        return time.perf_counter() - start, len(traces)
    finally:
        TensorFlowTrainer.train_step, compat.build_training_state = train_step, shim


def main(argv):
    del argv
    import zoo

    unknown = [name for name in FLAGS.models if name not in zoo.names()]
    if unknown:
        raise app.UsageError(f"--models: unknown {', '.join(unknown)}; `python -m zoo` lists the models")
    with tempfile.TemporaryDirectory() as work:
        timed_run(FLAGS.models[0], os.path.join(work, "warm-up"), True)  # TensorFlow's own first-use costs
        for model in FLAGS.models:
            seconds = {True: [], False: []}
            traced = {}
            for repeat in range(FLAGS.repeats):
                for build_first in (False, True):
                    folder = os.path.join(work, f"{model}-{repeat}-{build_first}")
                    elapsed, traced[build_first] = timed_run(model, folder, build_first)
                    seconds[build_first].append(elapsed)
            keras_way, ours = statistics.median(seconds[False]), statistics.median(seconds[True])
            print(
                f"{model} at {FLAGS.image_size} px: Keras's lazy build {keras_way:.2f} s "
                f"(step traced {traced[False]}x), built first {ours:.2f} s (traced {traced[True]}x): "
                f"{keras_way / ours:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    app.run(main)
