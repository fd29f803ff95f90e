"""Train a zoo model on a pipelines source: `python -m trainers.train --model_dir=runs/x [flags]`.

Sections, in the order they run: flags -> devices and strategy -> data -> model -> run directory
(created only once flags, data and model are known to be good) -> fit (one phase, or frozen then
fine-tuned) -> test metrics -> export.

Everything lands in --model_dir: flags.txt (rerunnable with --flagfile), TensorBoard logs, backups
for resuming, per-phase weights, model.keras, a SavedModel in export/, metrics.json and
class_names.json. Rerunning the same command after a crash or kill -9 resumes from the last
finished epoch; a finished run is left alone unless --overwrite is given.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time

from absl import flags, logging

from trainers import common
from trainers.common import FLAGS, UserError

import zoo  # noqa: E402  (registers the models; imports Keras)

# ------------------------------------------------------------------------------------- flags

_BEFORE = set(FLAGS)
flags.DEFINE_enum("model", "fashion_cnn", zoo.names(), "Zoo model to train.")
flags.DEFINE_enum("head", "classify", list(zoo.registry.HEADS), "classify, or localize (class + box).")
flags.DEFINE_string("dataset", "shapes", "'shapes', 'dir:PATH' (class subfolders) or a TFDS name.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (pre-downloaded datasets).")
flags.DEFINE_string("train_split", "train", "Training split, TFDS syntax ('train[:80%]').")
flags.DEFINE_string("validation_split", "validation", "Validation split; '' for none.")
flags.DEFINE_string("test_split", "test", "Split for the final metrics; '' for none.")
flags.DEFINE_integer("image_size", None, "Square input size; default: the dataset's (shapes: 64).", lower_bound=8)
flags.DEFINE_string("model_dir", None, "Run directory (created; resumed if it holds a run).")
flags.DEFINE_integer("epochs", 10, "Epochs (single-phase training).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Global batch size, split across replicas.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch (default: one pass over the split).", lower_bound=1)
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "nadam", "adam", "adamw", "rmsprop"], "Optimizer.")
flags.DEFINE_float("learning_rate", 0.01, "Initial learning rate.", lower_bound=0.0)
flags.DEFINE_float("momentum", 0.9, "Momentum (sgd, rmsprop).", lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_boolean("nesterov", False, "Nesterov momentum (sgd).")
flags.DEFINE_float("lr_decay", 0.0, "Keras 2's `decay`: lr / (1 + lr_decay * step), as an InverseTimeDecay schedule.", lower_bound=0.0)
flags.DEFINE_float("finetune_lr_decay", None, "--lr_decay after unfreezing (default: --lr_decay).", lower_bound=0.0)
flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine"], "Learning-rate schedule of each phase.")
flags.DEFINE_list("augment", [], "Training augmentations: crop, flip.")
flags.DEFINE_string("weights", None, "None, 'imagenet' (pretrained models) or a weights file.")
flags.DEFINE_integer("freeze_epochs", 0, "Two-phase transfer: epochs with the backbone frozen.", lower_bound=0)
flags.DEFINE_integer("finetune_epochs", 0, "Two-phase transfer: epochs after unfreezing.", lower_bound=0)
flags.DEFINE_float("finetune_learning_rate", None, "Learning rate after unfreezing (default: learning_rate / 10).", lower_bound=0.0)
flags.DEFINE_string("unfreeze_from", None, "Unfreeze the backbone from this layer on (default: all of it).")
flags.DEFINE_list("loss_weights", ["0.8", "0.2"], "Loss weights of the class and bbox outputs (localize).")
flags.DEFINE_enum("strategy", "auto", list(common.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_integer("logical_cpus", 1, "Split the CPU into N logical devices (multi-replica without GPUs).", lower_bound=1)
flags.DEFINE_integer("seed", 42, "Seed for weights, shuffling and augmentation.")
flags.DEFINE_boolean("mixed_precision", False, "Mixed precision (float16 on GPU, bfloat16 on CPU).")
flags.DEFINE_boolean("jit_compile", False, "Compile train steps with XLA.")
flags.DEFINE_integer("steps_per_execution", 1, "Train steps per tf.function call.", lower_bound=1)
flags.DEFINE_boolean("cache", False, "Cache decoded images in memory.")
flags.DEFINE_boolean("skip_bad_files", False, "Skip unreadable image files (with a warning).")
flags.DEFINE_boolean("overwrite", False, "Retrain from scratch even if --model_dir holds a run.")
TRAIN_FLAGS = sorted(set(FLAGS) - _BEFORE)


def _loss_weights(values):
    try:
        weights = [float(v) for v in values]
    except ValueError:
        return False
    return len(weights) == 2 and all(w >= 0 for w in weights) and sum(weights) > 0


flags.register_validator("loss_weights", _loss_weights, "must be two non-negative numbers, e.g. 0.8,0.2")
flags.register_validator(
    "augment", lambda v: all(a in ("crop", "flip") for a in v), "accepted augmentations: crop, flip"
)
flags.mark_flag_as_required("model_dir")

# Flags that define what is trained: a run directory cannot be resumed with other values.
IDENTITY_FLAGS = ("model", "head", "dataset", "train_split", "image_size", "freeze_epochs", "weights")
# Not recorded in flags.txt: rerunning the recorded flags must never wipe the run.
UNRECORDED_FLAGS = ("overwrite",)

STATE = "state.json"


def recorded_flags() -> list[str]:
    lines = []
    two_phase = FLAGS.freeze_epochs > 0 or FLAGS.finetune_epochs > 0
    for name in TRAIN_FLAGS:
        if name in UNRECORDED_FLAGS or (two_phase and name == "epochs"):
            continue
        serialized = FLAGS[name].serialize()
        if serialized:
            lines.append(serialized)
    return lines


# ------------------------------------------------------------------------------------- run dir


class RunDir:
    """Paths of the run directory; non-chief workers write their copies to a temporary place."""

    def __init__(self, root: str, is_chief: bool, task_id: int, multi_worker: bool):
        self.root = root
        self.is_chief = is_chief
        self.task_id = task_id
        self.multi_worker = multi_worker
        self.scratch = root if is_chief else tempfile.mkdtemp(prefix=f"worker{task_id}-")

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def output(self, *parts):
        """Final artifacts and logs: the chief's go to the run dir, other workers' to scratch."""
        return os.path.join(self.scratch, *parts)

    def backup(self, phase):
        # Every worker must restore its own state to resume in step, so backups persist per worker,
        # in sibling folders (each worker's BackupAndRestore deletes its own when the phase ends).
        if not self.multi_worker:
            return self.path("backup", phase)
        return self.path("backup", phase, "chief" if self.is_chief else f"worker{self.task_id}")

    def cleanup(self):
        if not self.is_chief:
            shutil.rmtree(self.scratch, ignore_errors=True)


def prepare_run_dir(run: RunDir) -> dict:
    """Create or check the run directory; returns the saved state (completed phases)."""
    root = run.root
    if FLAGS.overwrite and os.path.isdir(root) and run.is_chief:
        for name in ("backup", "checkpoints", "logs", "export", "model.keras", "metrics.json",
                     "class_names.json", "flags.txt", STATE):
            target = os.path.join(root, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
    os.makedirs(root, exist_ok=True)
    state = common.read_json(os.path.join(root, STATE), {"completed_phases": [], "finished": False})
    check_identity(root)
    if run.is_chief:
        with open(os.path.join(root, "flags.txt"), "w") as f:
            f.write("\n".join(recorded_flags()) + "\n")
    return state


def check_identity(root: str) -> None:
    """Refuse to resume a run directory that was trained with different defining flags."""
    flags_path = os.path.join(root, "flags.txt")
    if os.path.exists(flags_path) and not FLAGS.overwrite:
        with open(flags_path) as f:
            previous = dict(
                line.strip().lstrip("-").split("=", 1) for line in f if "=" in line and line.startswith("--")
            )
        for name in IDENTITY_FLAGS:
            now = FLAGS[name].serialize().lstrip("-").split("=", 1)
            now_value = now[1] if len(now) == 2 else None
            if previous.get(name) != now_value:
                raise UserError(
                    f"--model_dir={root} holds a run with --{name}={previous.get(name)}, not "
                    f"--{name}={now_value}; use another --model_dir, or --overwrite to replace it"
                )


# ------------------------------------------------------------------------------------- callbacks


class NonFiniteLoss(Exception):
    pass


def nan_guard():
    import keras
    import numpy as np

    class NanGuard(keras.callbacks.Callback):
        """Stop at the first NaN/inf loss by raising, before the epoch's backup could save it."""

        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                raise NonFiniteLoss(f"loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}")

    return NanGuard()


def epoch_summary(phase):
    import keras

    class EpochSummary(keras.callbacks.Callback):
        """One plain log line per epoch, whatever the progress bar does."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted((logs or {}).items()) if isinstance(v, (int, float)))
            logging.info("[%s] epoch %d done in %.1fs: %s", phase, epoch + 1, time.time() - self.start, metrics)

    return EpochSummary()


# ------------------------------------------------------------------------------------- pieces


def make_learning_rate(initial, steps, decay):
    import keras

    if decay > 0:
        # Keras 2's `decay` argument, which Keras 3 silently ignores.
        return keras.optimizers.schedules.InverseTimeDecay(initial, decay_steps=1, decay_rate=decay)
    if FLAGS.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(initial, decay_steps=max(steps, 1))
    return initial


def make_optimizer(learning_rate):
    import keras

    name = FLAGS.optimizer
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=FLAGS.momentum, nesterov=FLAGS.nesterov)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=FLAGS.momentum)
    return {"nadam": keras.optimizers.Nadam, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}[name](learning_rate)


def compile_model(model, learning_rate):
    import keras

    if FLAGS.head == "classify":
        loss, loss_weights, metrics = "sparse_categorical_crossentropy", None, ["accuracy"]
    else:
        class_weight, box_weight = (float(v) for v in FLAGS.loss_weights)
        loss = {"class": "sparse_categorical_crossentropy", "bbox": "mse"}
        loss_weights = {"class": class_weight, "bbox": box_weight}
        metrics = {"class": ["accuracy"], "bbox": [keras.metrics.MeanSquaredError(name="mse")]}
    model.compile(
        optimizer=make_optimizer(learning_rate),
        loss=loss,
        loss_weights=loss_weights,
        metrics=metrics,
        jit_compile=FLAGS.jit_compile,
        steps_per_execution=FLAGS.steps_per_execution,
    )


def write_image_grid(run: RunDir, dataset, class_names):
    """TensorBoard: one augmented training batch, boxes drawn for localize."""
    import tensorflow as tf

    images, targets = next(iter(dataset))
    images = images[:16] / 255.0
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    if isinstance(targets, dict):
        boxes = targets["bbox"][:16, None, :]
        images = tf.image.draw_bounding_boxes(images, boxes, colors=[[1.0, 0.0, 0.0, 1.0]])
    writer = tf.summary.create_file_writer(run.output("logs", "train_images"))
    with writer.as_default():
        tf.summary.image("augmented training batch", images, step=0, max_outputs=16)
    writer.close()


def atomic_save(model, path):
    tmp = path[: -len(".keras")] + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def atomic_export(model, path):
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(tmp, verbose=False)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- main


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
    common.split_cpu(FLAGS.logical_cpus)
    two_phase = FLAGS.freeze_epochs > 0 or FLAGS.finetune_epochs > 0
    if two_phase and FLAGS["epochs"].present:
        raise UserError("--epochs is for single-phase runs; with --freeze_epochs/--finetune_epochs give those only")
    if FLAGS.unfreeze_from and not two_phase:
        raise UserError("--unfreeze_from needs --freeze_epochs and --finetune_epochs")
    finetune_decay = FLAGS.lr_decay if FLAGS.finetune_lr_decay is None else FLAGS.finetune_lr_decay
    if (FLAGS.lr_decay > 0 or finetune_decay > 0) and FLAGS.lr_schedule == "cosine":
        raise UserError("--lr_decay and --lr_schedule=cosine are two schedules; choose one")

    import keras
    import tensorflow as tf

    import pipelines

    # --- devices and strategy
    if FLAGS.mixed_precision:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        keras.mixed_precision.set_global_policy(policy)
    strategy = common.make_strategy(FLAGS.strategy)
    is_chief, task_id = common.worker_info(strategy)
    keras.utils.set_random_seed(FLAGS.seed)
    logging.info("strategy %s with %d replica(s); chief: %s", type(strategy).__name__, strategy.num_replicas_in_sync, is_chief)

    run = RunDir(FLAGS.model_dir, is_chief, task_id, multi_worker=FLAGS.strategy == "multi_worker")
    check_identity(run.root)
    finished = common.read_json(run.path(STATE), {}).get("finished")
    if finished and not FLAGS.overwrite:
        print(f"{run.root} holds a finished run (metrics in {run.path('metrics.json')}); "
              f"pass --overwrite to train again")
        return 0

    # --- data
    spec = zoo.spec(FLAGS.model)
    channels = 3 if spec.channels == (3,) else None
    data_args = dict(
        task="localize" if FLAGS.head == "localize" else "classify",
        image_size=FLAGS.image_size, batch_size=FLAGS.batch_size, data_dir=FLAGS.data_dir,
        channels=channels, seed=FLAGS.seed, skip_bad_files=FLAGS.skip_bad_files,
    )
    eval_args = dict(data_args, central_crop="crop" in FLAGS.augment)
    train_args = dict(data_args, training=True, augment=tuple(FLAGS.augment), cache=FLAGS.cache)
    try:
        train_data, info = pipelines.distribute(strategy, FLAGS.dataset, FLAGS.train_split, repeat=True, **train_args)
        validation = None
        if FLAGS.validation_split:
            validation, _ = pipelines.load(FLAGS.dataset, FLAGS.validation_split, **eval_args)
    except pipelines.DataError as error:
        raise UserError(f"--dataset={FLAGS.dataset}: {error}") from None
    steps = info.steps_per_epoch
    if steps is None:  # the source cannot tell its size (e.g. mocked TFDS): count once
        plain, _ = pipelines.load(FLAGS.dataset, FLAGS.train_split, **dict(train_args, augment=()))
        steps = sum(1 for _ in plain)
    if steps == 0:
        raise UserError(
            f"--batch_size={FLAGS.batch_size} is larger than --train_split={FLAGS.train_split} "
            f"({info.num_examples} examples)"
        )
    if FLAGS.steps_per_epoch:
        steps = min(steps, FLAGS.steps_per_epoch)
    logging.info("data: %s %s, %s examples, %d classes, images %s, %d steps/epoch",
                 FLAGS.dataset, FLAGS.train_split, info.num_examples, info.num_classes, info.image_shape, steps)

    # --- model
    def build():
        with strategy.scope():
            try:
                return zoo.build(FLAGS.model, num_classes=info.num_classes, input_shape=info.image_shape,
                                 head=FLAGS.head, weights=FLAGS.weights)
            except ValueError as error:
                raise UserError(
                    f"--model={FLAGS.model} on --dataset={FLAGS.dataset} "
                    f"(--image_size={info.image_shape[0]}, --weights={FLAGS.weights}): {error}"
                ) from None

    model = build()

    # --- run directory (created only once flags, data and model are known to be good)
    state = prepare_run_dir(run)
    if is_chief:
        common.write_json(run.path("class_names.json"), list(info.class_names))
    if not state["completed_phases"]:
        plain, _ = pipelines.load(FLAGS.dataset, FLAGS.train_split, **dict(data_args, batch_size=64))
        if zoo.adapt_normalization(model, plain, steps=200):
            logging.info("adapted input normalization on up to 200 batches of --train_split")
        if is_chief and not os.path.exists(run.path("logs", "train_images")):  # once per run
            preview, _ = pipelines.load(FLAGS.dataset, FLAGS.train_split, **dict(train_args, batch_size=16))
            write_image_grid(run, preview, info.class_names)

    # --- fit, phase by phase
    if two_phase:
        finetune_lr = FLAGS.finetune_learning_rate or FLAGS.learning_rate / 10
        phases = [("frozen", FLAGS.freeze_epochs, FLAGS.learning_rate, FLAGS.lr_decay),
                  ("finetune", FLAGS.finetune_epochs, finetune_lr, finetune_decay)]
        phases = [p for p in phases if p[1] > 0]
    else:
        phases = [("train", FLAGS.epochs, FLAGS.learning_rate, FLAGS.lr_decay)]
    os.makedirs(run.path("checkpoints"), exist_ok=True)
    first_epoch = 0
    trained_here = False
    for phase, epochs, learning_rate, decay in phases:
        phase_weights = run.path("checkpoints", f"{phase}.weights.h5") if is_chief else \
            run.output(f"{phase}.weights.h5")
        if phase in state["completed_phases"]:
            first_epoch += epochs
            continue
        if state["completed_phases"] and not trained_here:
            model = resume_from_completed_phase(build, run, state)
        with strategy.scope():
            if phase == "frozen":
                zoo.freeze_backbone(model)
            elif phase == "finetune":
                try:
                    zoo.unfreeze_backbone(model, from_layer=FLAGS.unfreeze_from)
                except ValueError as error:
                    raise UserError(f"--unfreeze_from={FLAGS.unfreeze_from}: {error}") from None
            compile_model(model, make_learning_rate(learning_rate, steps * epochs, decay))
        callbacks = [
            # Kept after fit (delete_checkpoint=False) until the phase's weights and state are
            # written: a kill in between must not lose the finished phase.
            keras.callbacks.BackupAndRestore(run.backup(phase), double_checkpoint=True, delete_checkpoint=False),
            nan_guard(),
            keras.callbacks.TensorBoard(run.output("logs")),
            epoch_summary(phase),
        ]
        logging.info("phase %s: epochs %d..%d at learning rate %g", phase, first_epoch + 1, first_epoch + epochs, learning_rate)
        try:
            model.fit(
                train_data, epochs=first_epoch + epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                validation_data=validation, callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
                shuffle=False,  # the pipeline shuffles
            )
        except NonFiniteLoss as error:
            common.fail(
                f"{error}; stopped, keeping the last good checkpoint in {run.backup(phase)} "
                f"(rerunning resumes from it); try a lower --learning_rate", status=1)
        except tf.errors.InvalidArgumentError as error:
            common.fail(
                f"bad input data during training: {error.message.splitlines()[0]}; "
                f"--skip_bad_files skips unreadable images", status=1)
        trained_here = True
        tmp_weights = phase_weights[: -len(".weights.h5")] + ".tmp.weights.h5"
        model.save_weights(tmp_weights)
        os.replace(tmp_weights, phase_weights)
        state["completed_phases"].append(phase)
        if is_chief:
            common.write_json(run.path(STATE), state)
        shutil.rmtree(run.backup(phase), ignore_errors=True)
        first_epoch += epochs

    if not trained_here:
        # Every phase had finished before a crash during the final steps: start from the last one.
        model = resume_from_completed_phase(build, run, state)
        with strategy.scope():
            compile_model(model, FLAGS.learning_rate)  # for the metrics; nothing is trained

    # --- test metrics and export
    metrics = {}
    if FLAGS.test_split:
        try:
            test, test_info = pipelines.load(FLAGS.dataset, FLAGS.test_split, **eval_args)
        except pipelines.DataError as error:
            raise UserError(f"--test_split={FLAGS.test_split}: {error}") from None
        metrics = {k: float(v) for k, v in model.evaluate(test, return_dict=True, verbose=0).items()}
        metrics["num_examples"] = test_info.num_examples
        logging.info("test metrics (%s): %s", FLAGS.test_split, metrics)
    logging.info("final weights checksum: %s", weights_checksum(model))
    os.makedirs(run.scratch, exist_ok=True)
    atomic_save(model, run.output("model.keras"))
    atomic_export(model, run.output("export"))
    if is_chief:
        common.write_json(run.path("metrics.json"), {"split": FLAGS.test_split, **metrics})
        state["finished"] = True
        common.write_json(run.path(STATE), state)
        shutil.rmtree(run.path("backup"), ignore_errors=True)
        print(f"\nmodel:       {run.path('model.keras')}\nSavedModel:  {run.path('export')}\n"
              f"metrics:     {run.path('metrics.json')} {metrics}\n"
              f"TensorBoard: tensorboard --logdir {run.path('logs')}")
    run.cleanup()
    return 0


def resume_from_completed_phase(build, run: RunDir, state: dict):
    """A fresh model holding the weights the last completed phase ended with.

    Training is synchronous, so every worker's weights equal the chief's: all load its file.
    """
    previous = run.path("checkpoints", f"{state['completed_phases'][-1]}.weights.h5")
    logging.info("resuming from %s", previous)
    model = build()
    _load_layer_weights(model, previous)
    return model


def weights_checksum(model) -> str:
    """A digest of every weight: workers of one multi-worker run must print the same one."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_layer_weights(model, path):
    """Load a phase's saved weights into a freshly built, not yet compiled model.

    The file also holds that phase's optimizer state, which a new phase (fresh optimizer) skips.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(path)


def entry_point():
    common.run(main)


if __name__ == "__main__":
    entry_point()
