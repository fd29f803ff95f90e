"""The trainer's steps, each a plain function of a `TrainConfig` (and what earlier steps returned).

    strategy = make_strategy(config)
    data = load_data(config, strategy)
    run = Run(config, strategy, run_dir, data, phases(config))    # the run, resolved once
    model = build_model(config, data.info, strategy)
    model = run_phases(run, build)                                 # compile_for_phase + fit, resumable
    metrics = evaluate(model, *data.test)
    export(model, run_dir)

`trainers.training.train` runs them in that order; `tune` and `evaluate` call the same functions.
Errors a user can fix are `ValueError`s naming the setting (`ConfigError`, `pipelines.DataError`);
a run that cannot go on raises `TrainingError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import shutil
import sys
import warnings
from collections.abc import Callable

from absl import logging

import pipelines
import zoo
from pipelines.durable import atomic_path
from pipelines.errors import op_error_text
from trainers import callbacks, distribute, task
from trainers.config import ConfigError, TrainConfig
from trainers.rundir import RunDir, backup_epoch, fault_point, repair_backup
from zoo import compat


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, unreadable data met mid-epoch); the message says what to do.
    ``reason``: what happened alone, without the advice about rerunning (for a search's trial)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------- strategy


def make_strategy(config: TrainConfig):
    """Devices, precision policy, strategy and seeds, in the order TensorFlow needs them."""
    import keras

    distribute.split_cpu(config.logical_cpus)
    policy = distribute.precision_policy(config.mixed_precision)
    keras.mixed_precision.set_global_policy(policy)
    if config.mixed_precision is None:
        logging.info("precision: %s (by this hardware; --nomixed_precision or --mixed_precision to choose)", policy)
    try:
        strategy = distribute.make_strategy(config.strategy, peer_timeout=config.peer_timeout)
    except distribute.StrategyError as error:
        raise ConfigError("strategy", config.strategy, str(error)) from None
    if config.grad_accum_steps > 1 and strategy.num_replicas_in_sync > 1:
        raise ConfigError(
            "grad_accum_steps",
            config.grad_accum_steps,
            f"Keras's gradient accumulation fails under a tf.distribute strategy of several replicas "
            f"({compat.GRADIENT_ACCUMULATION_ISSUE}; here {strategy.num_replicas_in_sync}); give one replica, or a "
            f"larger batch_size across the replicas",
        )
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:  # tf.distribute splits the global batch evenly (a ValueError deep in fit)
        below = config.batch_size // replicas * replicas
        fits = [n for n in (below, below + replicas) if n]  # the multiples either side
        raise ConfigError(
            "batch_size",
            config.batch_size,
            f"is split evenly across the {replicas} replicas of strategy={config.strategy!r}: give a multiple of "
            f"{replicas}, e.g. {' or '.join(map(str, fits))}",
        )
    keras.utils.set_random_seed(config.seed)
    return strategy


# ------------------------------------------------------------------------------------- data


@contextlib.contextmanager
def naming_bad_files(doing: str, *infos: pipelines.DatasetInfo | None):
    """Turn a decode error (or a file gone) met while ``doing`` something with the splits
    ``infos`` into a TrainingError naming the file: tf.data reports only the decoder's complaint,
    so the splits' files are decoded one by one (only now, when it failed) to find it."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:  # a file deleted meanwhile too
        bad = {}
        for info in infos:
            if info is not None:
                bad.update(pipelines.undecodable(info))
        if not bad:
            raise TrainingError(
                f"bad input data while {doing}: {op_error_text(error)}; skip_bad_files skips unreadable images"
            ) from None
        path, reason = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        resume = "; rerunning resumes from the last finished epoch" if doing == "training" else ""
        raise TrainingError(
            f"image file {path!r} {reason}{more}, met while {doing}; fix or remove it, or pass "
            f"skip_bad_files to skip files that cannot be decoded{resume}"
        ) from None


# The fraction of "train" held out for validation when the source has no validation split and the
# run asks for the default one (validation_split="validation").
VALIDATION_HOLDOUT = 0.1


@dataclasses.dataclass
class Data:
    # The training stream, distributed and repeated, from a batch (`pipelines.resumable`): each
    # phase starts it where the run stands, so a resumed run sees the batches it would have seen.
    train_from: Callable[[int], object]
    validation: object | None
    test: tuple | None  # (dataset, DatasetInfo) of the test split
    info: pipelines.DatasetInfo
    steps_per_epoch: int
    validation_info: pipelines.DatasetInfo | None = None


def data_args(config: TrainConfig, **overrides) -> dict:
    """`pipelines.load` arguments shared by every split of a run."""
    spec = zoo.spec(config.model)
    args = dict(
        task=config.head,
        image_size=config.image_size,
        batch_size=config.batch_size,
        data_dir=config.data_dir,
        channels=3 if spec.channels == (3,) else None,
        seed=config.seed,
        skip_bad_files=config.skip_bad_files,
        max_image_pixels=config.max_image_pixels,
        follow_links=config.follow_links,
        download=config.download,
        autotune=config.data_autotune,
        # The default validation split of a source that has none is carved from train.
        validation_holdout=VALIDATION_HOLDOUT if config.validation_split == "validation" else 0.0,
    )
    args.update(overrides)
    return args


def training_data_args(config: TrainConfig, **overrides) -> dict:
    return data_args(
        config,
        training=True,
        augment=config.augment,
        augment_strength=config.augment_strength,
        cache=config.cache,
        shuffle_buffer=config.shuffle_buffer,
        **overrides,
    )


def eval_data_args(config: TrainConfig, **overrides) -> dict:
    """Validation and test data: no augmentation, the test-time preprocessing of `trainers.task`."""
    return {**data_args(config), **task.test_time_preprocessing(config), **overrides}


def load_data(config: TrainConfig, strategy) -> Data:
    """The training and validation data; every split is checked here, before any training.

    Raises ConfigError naming the setting (dataset, or the split) and the data's complaint.
    """
    try:
        train_from, info = pipelines.resumable(
            strategy, config.dataset, config.train_split, **training_data_args(config)
        )
    except pipelines.DataError as error:
        raise ConfigError("dataset", config.dataset, str(error)) from None
    loaded = {}
    for field in ("validation_split", "test_split"):
        split = getattr(config, field)
        if not split:
            continue
        try:
            loaded[field] = pipelines.load(config.dataset, split, **eval_data_args(config))
        except pipelines.DataError as error:
            raise ConfigError(field, split, str(error)) from None
    steps = info.steps_per_epoch
    if steps is None:  # the source cannot tell its size (e.g. mocked TFDS): count once
        plain, _ = pipelines.load(config.dataset, config.train_split, **training_data_args(config, augment=()))
        steps = sum(1 for _ in plain)
    if steps == 0:
        raise ConfigError(
            "batch_size",
            config.batch_size,
            f"is larger than train_split={config.train_split!r} ({info.num_examples} examples)",
        )
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    logging.info(
        "data: %s %s, %s examples, %d classes, images %s, %d steps/epoch",
        config.dataset,
        config.train_split,
        info.num_examples,
        info.num_classes,
        info.image_shape,
        steps,
    )
    validation, validation_info = loaded.get("validation_split", (None, None))
    return Data(train_from, validation, loaded.get("test_split"), info, steps, validation_info)


# ------------------------------------------------------------------------------------- model


def build_model(config: TrainConfig, info: pipelines.DatasetInfo, strategy):
    """The zoo model for the data, built in the strategy's scope; raises ConfigError naming why."""
    import tensorflow as tf

    with strategy.scope():
        try:
            model = zoo.build(
                config.model,
                num_classes=info.num_classes,
                input_shape=info.image_shape,
                head=config.head,
                weights=config.weights,
                **config.builder_options,
            )
        except (tf.errors.ResourceExhaustedError, MemoryError):
            raise ConfigError(
                "image_size",
                config.image_size,
                f"the weights of {config.model} for images of {info.image_shape} do not fit in memory; "
                f"lower image_size",
            ) from None
        except ValueError as error:
            raise ConfigError(
                "model",
                config.model,
                f"cannot be built for dataset {config.dataset!r} "
                f"(images {info.image_shape}, weights {config.weights!r}): {error}",
            ) from None
    set_bn_momentum(model, config)
    return model


def set_bn_momentum(model, config: TrainConfig) -> None:
    """``config.bn_momentum`` on every BatchNormalization layer of ``model``, if given; ConfigError
    for a model that has none."""
    if config.bn_momentum is not None and not zoo.set_batchnorm_momentum(model, config.bn_momentum):
        raise ConfigError("bn_momentum", config.bn_momentum, f"{config.model} has no BatchNormalization layer")


def check_unfreeze_from(model, config: TrainConfig) -> None:
    """An ``unfreeze_from`` that names no backbone layer, refused before the frozen phase trains."""
    if not config.unfreeze_from:
        return
    try:
        zoo.backbone_layer_index(model, config.unfreeze_from)
    except ValueError as error:
        raise ConfigError(
            "unfreeze_from", config.unfreeze_from, f"{error}; `python -m zoo {config.model} --layers` lists them"
        ) from None


def activation_count(model) -> int:
    """Values the layers of ``model`` output per example (nested models counted layer by layer).

    A lower bound on what training keeps for the backward pass: the insides of composite layers
    (a residual unit's two convolutions) are not counted.
    """
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.layers:
            total += activation_count(layer)
            continue
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):  # a layer used more than once, or never called
            continue
        for output in outputs:
            total += math.prod(dim or 1 for dim in output.shape[1:])
    return total


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or None where the OS cannot tell."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_run_outside_data(config: TrainConfig) -> None:
    """Refuse a model_dir inside the image folder it trains on: every subfolder there is a class,
    so the run's own files would be read as one (and the next load of the data fails on them)."""
    folder = pipelines.image_folder(config.dataset)
    if not folder or not config.model_dir:
        return
    folder, run = os.path.realpath(folder), os.path.realpath(config.model_dir)
    if os.path.commonpath([folder, run]) == folder:
        where = "is" if run == folder else "is inside"
        raise ConfigError(
            "model_dir",
            config.model_dir,
            f"{where} the image folder of dataset={config.dataset!r}, where every subfolder is a class of "
            f"images; put the run outside {folder}",
        )


def check_memory(model, config: TrainConfig) -> None:
    """Refuse, before any data is decoded, an image_size whose batch cannot fit in this machine's
    memory (training on the CPU): one batch's activations alone, a lower bound, exceed the RAM."""
    import keras
    import tensorflow as tf

    memory = physical_memory()
    if memory is None or tf.config.list_logical_devices("GPU"):
        return
    itemsize = 2 if keras.mixed_precision.global_policy().compute_dtype in ("float16", "bfloat16") else 4
    needed = activation_count(model) * config.batch_size * itemsize
    if needed > memory:
        raise ConfigError(
            "image_size",
            config.image_size,
            f"with batch_size={config.batch_size}, one batch of {config.model} needs at least "
            f"{needed / 2**30:.1f} GiB for its activations, more than this machine's {memory / 2**30:.1f} GiB of "
            f"memory; lower image_size or batch_size",
        )


def adapt_to_data(model, config: TrainConfig) -> None:
    """Adapt the model's Normalization layers (if any) on ``config.adapt_steps`` batches of 64
    training images (0: the whole training split)."""
    plain, info = pipelines.load(config.dataset, config.train_split, **data_args(config, batch_size=64))
    steps = config.adapt_steps or None
    with naming_bad_files("adapting the input normalization", info):
        adapted = zoo.adapt_normalization(model, plain, steps=steps)
    if adapted:
        amount = f"up to {steps} batches of 64" if steps else "the whole split"
        logging.info("adapted input normalization on %s of %s", amount, config.train_split)


def write_image_grid(path: str, config: TrainConfig, num_examples: int | None = None) -> None:
    """TensorBoard: one augmented training batch, as training sees it, boxes drawn for localize."""
    import tensorflow as tf

    # Training batches drop the remainder: a split smaller than the preview gets a smaller preview.
    size = max(1, min(16, num_examples or 16))
    preview, info = pipelines.load(config.dataset, config.train_split, **training_data_args(config, batch_size=size))
    with naming_bad_files("drawing the preview of the training data", info):
        images, targets = next(iter(preview))
    images = images[:16] / 255.0
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    if isinstance(targets, dict):
        boxes = targets["bbox"][:16, None, :]
        images = tf.image.draw_bounding_boxes(images, boxes, colors=[[1.0, 0.0, 0.0, 1.0]])
    writer = tf.summary.create_file_writer(path)
    with writer.as_default():
        tf.summary.image("augmented training batch", images, step=0, max_outputs=16)
    writer.close()


# ------------------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str  # "train", or "frozen" then "finetune"
    epochs: int
    learning_rate: float
    decay: float
    first_epoch: int  # epochs of earlier phases: the TensorBoard step axis runs on across phases
    momentum: float = 0.0
    nesterov: bool = False


def phases(config: TrainConfig) -> list[Phase]:
    """The run's phases with each one's optimizer settings (the fine-tuning phase's own, or the
    first phase's where it gives none)."""
    first = (config.learning_rate, config.lr_decay)
    first_momentum = (config.momentum, config.nesterov)
    if not config.two_phase:
        return [Phase("train", config.single_phase_epochs, *first, 0, *first_momentum)]
    planned = [
        ("frozen", config.freeze_epochs, *first, *first_momentum),
        (
            "finetune",
            config.finetune_epochs,
            config.finetune_rate,
            config.finetune_decay,
            config.finetune_momentum_value,
            config.finetune_nesterov_value,
        ),
    ]
    result, first_epoch = [], 0
    for name, epochs, rate, decay, momentum, nesterov in planned:
        if epochs > 0:
            result.append(Phase(name, epochs, rate, decay, first_epoch, momentum, nesterov))
            first_epoch += epochs
    return result


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run, resolved once (by `trainers.training.train`) and handed to the steps."""

    config: TrainConfig
    strategy: object
    directory: RunDir  # this worker's view of the run directory
    data: Data
    phases: tuple[Phase, ...]


def make_learning_rate(config: TrainConfig, phase: Phase, steps_per_epoch: int):
    """The phase's learning rate or schedule (per optimizer step). ``warmup_epochs`` start it with
    CosineDecay's linear warmup, from 1/warmup_steps of the rate up to it; with the constant
    schedule the rate then stays (a CosineDecay with ``alpha=1`` does not decay)."""
    import keras

    if phase.decay > 0:
        # Keras 2's `decay` argument, which Keras 3 silently ignores.
        return keras.optimizers.schedules.InverseTimeDecay(phase.learning_rate, decay_steps=1, decay_rate=phase.decay)
    total = max(steps_per_epoch * phase.epochs, 1)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    if warmup > 0:
        return keras.optimizers.schedules.CosineDecay(
            phase.learning_rate / warmup,
            decay_steps=max(total - warmup, 1),
            alpha=0.0 if config.lr_schedule == "cosine" else 1.0,
            warmup_target=phase.learning_rate,
            warmup_steps=warmup,
        )
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(phase.learning_rate, decay_steps=total)
    return phase.learning_rate


# Variables decoupled weight decay leaves alone (timm's and Model Garden's rule): biases, and
# BatchNormalization's scale and offset. Keras matches these against each variable's name.
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")


def make_optimizer(config: TrainConfig, learning_rate, phase: Phase | None = None):
    """``config.optimizer`` at ``learning_rate``, with ``phase``'s momentum and Nesterov setting
    (the first phase's when no phase is given), and the run's weight decay, gradient clipping,
    weight averaging (EMA) and gradient accumulation, all the optimizer's own arguments."""
    import keras

    phase = phase or phases(config)[0]
    common = {}
    if config.weight_decay > 0:
        common["weight_decay"] = config.weight_decay
    if config.clipnorm is not None:
        common["clipnorm"] = config.clipnorm
    if config.ema:
        common.update(use_ema=True, ema_momentum=config.ema_momentum)
    if config.grad_accum_steps > 1:
        common["gradient_accumulation_steps"] = config.grad_accum_steps
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=phase.momentum, nesterov=phase.nesterov, **common)
    elif config.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(learning_rate, momentum=phase.momentum, **common)
    else:
        optimizers = {"nadam": keras.optimizers.Nadam, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
        optimizer = optimizers[config.optimizer](learning_rate, **common)
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer


def compile_for_phase(model, config: TrainConfig, phase: Phase, steps_per_epoch: int, strategy) -> None:
    """Freeze or unfreeze the backbone for the phase, then compile with the phase's optimizer."""
    with strategy.scope():
        if phase.name == "frozen":
            zoo.freeze_backbone(model)
        elif phase.name == "finetune":
            try:
                zoo.unfreeze_backbone(
                    model, from_layer=config.unfreeze_from, keep_batchnorm_frozen=not config.unfreeze_batchnorm
                )
            except ValueError as error:
                raise ConfigError("unfreeze_from", config.unfreeze_from, str(error)) from None
        optimizer = make_optimizer(config, make_learning_rate(config, phase, steps_per_epoch), phase)
        task.compile_model(
            model,
            head=config.head,
            weights=config.loss_weights,
            box_loss=config.box_loss,
            label_smoothing=config.label_smoothing,
            mixed_labels=config.mixes_labels,
            optimizer=optimizer,
            jit_compile=config.jit_compile,
            steps_per_execution=config.steps_per_execution,
        )


def fit_phase(model, run: Run, phase: Phase, extra_callbacks=()) -> None:
    """Train one phase, resumably: BackupAndRestore picks up from the last finished epoch.

    ``extra_callbacks`` run after the trainer's own (a search's early stopping)."""
    import keras

    config, data, directory = run.config, run.data, run.directory
    # Validation on the EMA averages (swapped in and back around it): checkpoints keep the trained
    # weights, the averages in the optimizer's state; fit ends by taking the averages.
    averages = [keras.callbacks.SwapEMAWeights(swap_on_epoch=False)] if config.ema else []
    best = (
        [
            callbacks.KeepBest(
                config.keep_best,
                task.lower_is_better(config.keep_best),
                directory.path(RunDir.CHECKPOINTS),
                write=directory.is_chief,
            )
        ]
        if config.keep_best
        else []
    )
    fit_callbacks = [
        # Kept after fit (delete_checkpoint=False) until the phase's weights and state are
        # written: a kill in between must not lose the finished phase.
        keras.callbacks.BackupAndRestore(directory.backup(phase.name), double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 0 and fault_point("first_backup")),
        callbacks.ReseedRandomLayers(config.seed),
        callbacks.ApplyLearningRate(make_learning_rate(config, phase, data.steps_per_epoch)),
        *averages,
        callbacks.NanGuard(),
        *best,
        keras.callbacks.TensorBoard(directory.logs_dir),
        callbacks.EpochSummary(phase.name),
        *extra_callbacks,
    ]
    if config.head == "localize" and data.validation is not None:
        images, targets = next(iter(data.validation))
        fit_callbacks.append(
            callbacks.BoxGrid(images[:9], targets["bbox"][:9], os.path.join(directory.logs_dir, "validation_boxes"))
        )
    logging.info(
        "phase %s: epochs %d..%d at learning rate %g",
        phase.name,
        phase.first_epoch + 1,
        phase.first_epoch + phase.epochs,
        phase.learning_rate,
    )
    # Where this phase starts: its first epoch, or the one its backup resumes at.
    resumed = backup_epoch(directory.backup(phase.name))
    train = data.train_from((phase.first_epoch if resumed is None else resumed) * data.steps_per_epoch)
    sample_batch = contextlib.nullcontext()
    if model.built:
        with run.strategy.scope():  # one trace of the training step, not two
            compat.build_training_state(model, train.element_spec)
        # Several replicas: the training stream's first iterator is the one it trains from (each
        # pass the one an uninterrupted run, or a one-replica run, trains on).
        sample_batch = compat.without_a_sample_batch(model)
    compat.forget_restored_epoch(model)  # an earlier phase's restore must not move this one's start
    # The training stream is repeated: only a validation pass can run out (its end; Keras warns).
    with naming_bad_files("training", data.info, data.validation_info), sample_batch, compat.passes_end_quietly():
        try:
            model.fit(
                train,
                epochs=phase.first_epoch + phase.epochs,
                initial_epoch=phase.first_epoch,
                steps_per_epoch=data.steps_per_epoch,
                validation_data=data.validation,
                callbacks=fit_callbacks,
                verbose=1 if sys.stdout.isatty() else 2,
                shuffle=False,  # the pipeline shuffles
            )
        except callbacks.NonFiniteLoss as error:
            backup = directory.backup(phase.name)
            if os.path.isdir(backup) and os.listdir(backup):
                kept = f"keeping the last good checkpoint in {backup} (rerunning resumes from it)"
            elif phase.first_epoch:
                kept = "no epoch of this phase had finished (rerunning starts the phase again, from the last one's end)"
            else:
                kept = "no epoch had finished, so there is nothing to resume from"
            raise TrainingError(
                f"{error}; stopped, {kept}; try a lower learning_rate", reason=f"{error}; try a lower learning_rate"
            ) from None


def run_phases(run: Run, build, model=None, extra_callbacks=()) -> object:
    """Run every phase not yet completed in the run directory; returns the trained model.

    ``model`` (fresh from ``build()``) is trained from scratch, after adapting its normalization,
    when no phase has completed yet; otherwise ``build()`` makes the model that resumes from the
    last completed phase's checkpoint.
    """
    config, strategy, data, directory, planned = run.config, run.strategy, run.data, run.directory, run.phases
    state = directory.read_state([phase.name for phase in planned])
    if state["completed_phases"]:
        model = None
    else:
        model = model or build()
        adapt_to_data(model, config)
    for phase in planned:
        if phase.name in state["completed_phases"]:
            continue
        if model is None:
            model = resume_from_completed_phase(build, directory, state)
        compile_for_phase(model, config, phase, data.steps_per_epoch, strategy)
        peers = directory.peer_backups(phase.name)
        repaired = repair_backup(directory.backup(phase.name), peers)
        if repaired == "previous":
            where = " here or on another worker (all resume together)" if peers else ""
            logging.warning(
                "the last backup of phase %s is unreadable%s; resuming from the one before", phase.name, where
            )
        elif repaired == "removed":
            why = "no point every worker can resume from" if peers else "nothing readable"
            logging.warning("the backups of phase %s hold %s; restarting the phase", phase.name, why)
        fit_phase(model, run, phase, extra_callbacks)
        with atomic_path(directory.checkpoint(phase.name)) as temporary:
            model.save_weights(temporary)
        fault_point("phase_checkpoint")
        state["completed_phases"].append(phase.name)
        directory.write_state(state)
        fault_point("phase_switch")
        shutil.rmtree(directory.backup(phase.name), ignore_errors=True)
    if model is None:
        # Every phase had finished before a crash during the final steps: start from the last one.
        model = resume_from_completed_phase(build, directory, state)
        compile_for_phase(model, config, planned[-1], data.steps_per_epoch, strategy)  # for the metrics only
    return model


def resume_from_completed_phase(build, directory: RunDir, state: dict):
    """A fresh model holding the weights the last completed phase ended with (the chief's file)."""
    previous = directory.completed_weights(state["completed_phases"][-1])
    logging.info("resuming from %s", previous)
    model = build()
    # The file also holds that phase's optimizer state, which a new phase (fresh optimizer) skips.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(previous)
    return model


# ------------------------------------------------------------------------------------- evaluate, export


def evaluate(model, dataset, info: pipelines.DatasetInfo, *, report: bool = False) -> dict:
    """Metrics of a compiled model on a loaded split, as plain floats, with its example count.

    ``report``: also the class report of `trainers.metrics.classification_report` under
    ``"report"`` (per-class precision, recall and F1, the confusion matrix), and
    ``top5_accuracy`` beside the others where there are more than 5 classes.
    """
    from trainers import metrics as scores

    localize = task.head_of(model) == "localize"
    with naming_bad_files(f"evaluating on {info.split!r}", info), compat.passes_end_quietly():
        results = model.evaluate(dataset, return_dict=True, verbose=0)
        predictions = scores.predict_split(model, dataset) if (localize or report) else None
    if localize:
        results.update(scores.localization_scores(predictions))
    metrics = {k: float(v) for k, v in results.items()}
    metrics["num_examples"] = info.num_examples
    if report:
        metrics["report"] = scores.classification_report(
            predictions.true_classes, predictions.probabilities, info.class_names
        )
        if "top5_accuracy" in metrics["report"]:
            metrics["top5_accuracy"] = metrics["report"].pop("top5_accuracy")
    return metrics


def write_report_summary(path: str, report: dict, split: str) -> None:
    """TensorBoard, at the end of a run: the confusion matrix as a picture and the class report as
    a table (the Text and Images dashboards, under ``evaluation``)."""
    import tensorflow as tf

    from trainers import metrics as scores

    names = report["class_names"]
    header = "| class | precision | recall | f1 | support |\n|---|---|---|---|---|\n"
    rows = "".join(
        f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |\n"
        for name, r in report["per_class"].items()
    )
    matrix = "| true \\ predicted | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    matrix += "".join(
        f"| {name} | " + " | ".join(map(str, row)) + " |\n" for name, row in zip(names, report["confusion_matrix"])
    )
    writer = tf.summary.create_file_writer(path)
    with writer.as_default():
        image = scores.confusion_image(report["confusion_matrix"])
        tf.summary.image(f"confusion matrix ({split}; rows: true class)", image[None], step=0)
        tf.summary.text(f"class report ({split})", header + rows, step=0)
        tf.summary.text(f"confusion matrix ({split})", matrix, step=0)
    writer.close()


def keep_best(model, config: TrainConfig, directory: RunDir, test) -> tuple[dict, dict | None]:
    """With ``keep_best``: the final weights' test metrics, then ``model`` loaded with the best
    epoch's weights; returns (the final weights' metrics, the best epoch's record). Without a
    record (no epoch had a finite value), the final weights stay, and the record is None."""
    final = evaluate(model, *test) if test else {}
    record = callbacks.KeepBest.read(directory.path(RunDir.CHECKPOINTS))
    if record is None:
        logging.warning("keep_best=%s: no epoch gave a value; the final weights are kept", config.keep_best)
        return final, None
    with warnings.catch_warnings():  # the optimizer's state of that epoch's phase is of no use now
        warnings.simplefilter("ignore")
        model.load_weights(os.path.join(directory.path(RunDir.CHECKPOINTS), record["file"]))
    logging.info(
        "kept the best epoch's weights: epoch %d, %s=%.4g (the final weights' test metrics: %s)",
        record["epoch"],
        record["monitor"],
        record["value"],
        final,
    )
    return final, record


def export(model, directory: RunDir, saved_model: bool = True) -> None:
    """``model.keras`` and the SavedModel, each replacing the old one whole."""
    with atomic_path(directory.model_file) as temporary:
        model.save(temporary)
    fault_point("model_saved")
    if not saved_model:
        return
    with atomic_path(directory.export_dir, directory=True) as temporary:
        model.export(temporary, verbose=False)
    fault_point("exported")


def weights_checksum(model) -> str:
    """A digest of every weight: workers of one multi-worker run must print the same one."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]
