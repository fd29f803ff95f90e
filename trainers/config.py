"""`TrainConfig`: every setting of a training run, in one frozen, validated dataclass.

The trainer's steps are functions of it (`trainers.steps`); the command-line programs make one from
their flags (each field is also a flag of the same name, with the help text given here), and a
run directory's ``flags.txt`` turns back into one (`TrainConfig.from_flagfile`).

    config = TrainConfig(model_dir="runs/x", model="resnet18", dataset="shapes", epochs=3)
    config = dataclasses.replace(config, learning_rate=0.01)   # validated again
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from absl import flags

from pipelines.errors import SettingError
from trainers.distribute import STRATEGIES
from zoo.common import (
    AUGMENT_STRENGTHS,
    AUGMENTATIONS,
    HEADS,
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIZE,
    MIXING_AUGMENTATIONS,
    box_augmentation_error,
)

OPTIMIZERS = ("sgd", "nadam", "adam", "adamw", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")
# A search turns the seed's crop and flip on or off, and chooses a policy on top (or none), at
# its strength in the run's flags.
SEARCHED_BASE = ("crop", "flip")
SEARCHED_POLICIES = ("randaugment", "erase", "mixup", "cutmix", "mixup,cutmix")
DEFAULT_EPOCHS = 10
LOSS_WEIGHTS_RULE = "must be two non-negative numbers, e.g. 0.8,0.2"

# Fields that define what is trained: a run directory cannot be resumed with other values.
IDENTITY_FIELDS = (
    "model",
    "model_options",
    "head",
    "dataset",
    "train_split",
    "image_size",
    "freeze_epochs",
    "weights",
)
# Not recorded in flags.txt: rerunning the recorded flags must never wipe the run.
UNRECORDED_FIELDS = ("overwrite",)


class ConfigError(SettingError):
    """A `TrainConfig` setting that cannot be used, naming the field, the value and what is accepted."""


def option(default, help: str, *, kind: str, choices=None, lower_bound=None, upper_bound=None):
    """A config field that is also a flag: ``kind`` is its absl type (string, integer, float,
    boolean, enum, list)."""
    metadata = dict(help=help, kind=kind, choices=choices, lower_bound=lower_bound, upper_bound=upper_bound)
    return dataclasses.field(default=default, metadata=metadata)


def _model_names():
    import zoo

    return tuple(zoo.names())


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Every field is a flag of `trainers.train` of the same name."""

    model_dir: str | None = option(None, "Run directory (created; resumed if it holds a run).", kind="string")
    # --- model
    model: str = option("fashion_cnn", "Zoo model to train.", kind="enum", choices=_model_names)
    head: str = option("classify", "classify, or localize (class + box).", kind="enum", choices=HEADS)
    weights: str | None = option(None, "None, 'imagenet' (pretrained models) or a weights file.", kind="string")
    model_options: str | None = option(
        None,
        'The model builder\'s options as JSON, e.g. {"dropout": 0.3, "filters": [32, 64, 128]} '
        "(`python -m zoo NAME` lists them).",
        kind="string",
    )
    # --- data
    dataset: str = option(
        "shapes",
        "'shapes', 'dir:PATH' (class subfolders), a TFDS name, or 'synthetic' (one batch of noise, repeated: "
        "measures the model and the step without the input pipeline).",
        kind="string",
    )
    data_dir: str | None = option(None, "TFDS data directory (pre-downloaded datasets).", kind="string")
    train_split: str = option("train", "Training split, TFDS syntax ('train[:80%]').", kind="string")
    validation_split: str = option("validation", "Validation split; '' for none.", kind="string")
    test_split: str = option("test", "Split for the final metrics; '' for none.", kind="string")
    image_size: int | None = option(
        None, "Square input size; default: the dataset's (shapes: 64).", kind="integer", lower_bound=MIN_IMAGE_SIZE
    )
    batch_size: int = option(32, "Global batch size, split across replicas.", kind="integer", lower_bound=1)
    augment: tuple[str, ...] = option(
        (),
        f"Training augmentations: {', '.join(AUGMENTATIONS)} (crop and flip per image; the policies Keras's "
        "RandAugment, RandomErasing, MixUp and CutMix layers on batches; localize: crop, flip, erase).",
        kind="list",
        choices=AUGMENTATIONS,
    )
    randaugment_magnitude: float = option(
        AUGMENT_STRENGTHS["randaugment"][1],
        "randaugment: the strength of its two ops per image (RandAugment's factor), in [0, 1].",
        kind="float",
        lower_bound=0.0,
        upper_bound=1.0,
    )
    erase_probability: float = option(
        AUGMENT_STRENGTHS["erase"][1],
        "erase: the probability that an image gets a random rectangle of noise (timm's --reprob).",
        kind="float",
        lower_bound=0.0,
        upper_bound=1.0,
    )
    mixup_alpha: float = option(
        AUGMENT_STRENGTHS["mixup"][1],
        "mixup: alpha of the Beta(alpha, alpha) mixing weight (timm's --mixup), above 0.",
        kind="float",
        lower_bound=0.0,
    )
    cutmix_alpha: float = option(
        AUGMENT_STRENGTHS["cutmix"][1],
        "cutmix: alpha of the Beta(alpha, alpha) pasted area (timm's --cutmix), above 0. With mixup too, each "
        "batch gets one of the two.",
        kind="float",
        lower_bound=0.0,
    )
    cache: bool = option(False, "Cache decoded images in memory.", kind="boolean")
    shuffle_buffer: int | None = option(
        None,
        "Training shuffle buffer, in images (default: a whole fresh permutation each epoch for folders and "
        "shapes; min(split size, 2048) for TFDS and cached data).",
        kind="integer",
        lower_bound=1,
    )
    data_autotune: bool = option(
        False,
        "tf.data's model-based autotuning. Off by default: its tuner thread can hold the end of a fit or "
        "an evaluation for seconds, and the pipeline is not slower without it (measured: BUILD.md).",
        kind="boolean",
    )
    skip_bad_files: bool = option(False, "Skip unreadable image files (with a warning).", kind="boolean")
    max_image_pixels: int = option(
        MAX_IMAGE_PIXELS,
        "Refuse (with skip_bad_files: skip) an image file whose header declares more pixels, before decoding "
        "it. Default: Pillow's decompression-bomb limit.",
        kind="integer",
        lower_bound=1,
    )
    follow_links: bool = option(
        False, "Read an image folder's links that lead outside it (refused by default).", kind="boolean"
    )
    download: bool = option(
        True, "Download and prepare a TFDS dataset on first use (--nodownload: prepared data only).", kind="boolean"
    )
    adapt_steps: int = option(
        200,
        "Batches of 64 training images that normalization layers adapt on; 0 for the whole split.",
        kind="integer",
        lower_bound=0,
    )
    # --- schedule
    epochs: int | None = option(
        None, f"Epochs of a single-phase run (default {DEFAULT_EPOCHS}).", kind="integer", lower_bound=1
    )
    steps_per_epoch: int | None = option(
        None, "Cap on steps per epoch (default: one pass over the split).", kind="integer", lower_bound=1
    )
    freeze_epochs: int = option(
        0, "Two-phase transfer: epochs with the backbone frozen.", kind="integer", lower_bound=0
    )
    finetune_epochs: int = option(0, "Two-phase transfer: epochs after unfreezing.", kind="integer", lower_bound=0)
    unfreeze_from: str | None = option(
        None,
        "Unfreeze the backbone from this layer on (default: all of it); `python -m zoo NAME --layers` lists them.",
        kind="string",
    )
    unfreeze_batchnorm: bool = option(
        False,
        "Unfreeze BatchNormalization layers too (the seed does; the Keras transfer-learning guide advises against).",
        kind="boolean",
    )
    # --- optimizer
    optimizer: str = option("sgd", "Optimizer.", kind="enum", choices=OPTIMIZERS)
    learning_rate: float = option(0.01, "Initial learning rate.", kind="float", lower_bound=0.0)
    momentum: float = option(0.9, "Momentum (sgd, rmsprop).", kind="float", lower_bound=0.0, upper_bound=0.999)
    nesterov: bool = option(False, "Nesterov momentum (sgd).", kind="boolean")
    lr_decay: float = option(
        0.0,
        "Keras 2's `decay`: lr / (1 + lr_decay * step), as an InverseTimeDecay schedule.",
        kind="float",
        lower_bound=0.0,
    )
    lr_schedule: str = option("constant", "Learning-rate schedule of each phase.", kind="enum", choices=LR_SCHEDULES)
    finetune_learning_rate: float | None = option(
        None, "Learning rate after unfreezing (default: learning_rate / 10).", kind="float", lower_bound=0.0
    )
    finetune_lr_decay: float | None = option(
        None, "lr_decay after unfreezing (default: lr_decay).", kind="float", lower_bound=0.0
    )
    finetune_momentum: float | None = option(
        None, "momentum after unfreezing (default: momentum).", kind="float", lower_bound=0.0, upper_bound=0.999
    )
    finetune_nesterov: bool | None = option(None, "nesterov after unfreezing (default: nesterov).", kind="boolean")
    box_loss: str = option(
        "mse",
        "Loss of the box output (localize): mse (the seed's) or giou (1 - GIoU, plus L1 as DETR).",
        kind="enum",
        choices=("mse", "giou"),
    )
    loss_weights: tuple[float, float] = option(
        (0.8, 0.2), "Loss weights of the class and bbox outputs (localize).", kind="list"
    )
    # --- regularization and schedule (each through what Keras provides; timm's train.py names)
    label_smoothing: float = option(
        0.0,
        "Label smoothing of the class loss (Keras's CategoricalCrossentropy(label_smoothing)); 0.1 is usual.",
        kind="float",
        lower_bound=0.0,
        upper_bound=0.9,
    )
    weight_decay: float = option(
        0.0,
        "Decoupled weight decay (the optimizer's weight_decay), biases and BatchNormalization's gamma and beta "
        "excluded; 0: the optimizer's default (none; adamw's own 0.004).",
        kind="float",
        lower_bound=0.0,
    )
    warmup_epochs: int = option(
        0,
        "Epochs at the start of each phase whose learning rate rises linearly to the phase's (CosineDecay's warmup; "
        "with lr_schedule constant or cosine).",
        kind="integer",
        lower_bound=0,
    )
    ema: bool = option(
        False,
        "Exponential moving average of the weights (the optimizer's use_ema): validation uses the averaged "
        "weights, and each phase ends with them (test metrics, model.keras, the export).",
        kind="boolean",
    )
    ema_momentum: float = option(0.99, "Momentum of --ema.", kind="float", lower_bound=0.0, upper_bound=0.99999)
    grad_accum_steps: int = option(
        1,
        "Accumulate the gradients of N batches per update (the optimizer's gradient_accumulation_steps): "
        "an effective batch of N x batch_size.",
        kind="integer",
        lower_bound=1,
    )
    clipnorm: float | None = option(
        None, "Clip each gradient to this norm (the optimizer's clipnorm).", kind="float", lower_bound=0.0
    )
    keep_best: str | None = option(
        None,
        "Keep the weights of the best epoch by this validation metric (val_accuracy, val_loss, ...; its "
        "direction from its name), across both phases: the test metrics, model.keras and the export use them, "
        "and metrics.json also holds the final weights' test metrics.",
        kind="string",
    )
    drop_path: float = option(
        0.0,
        "Stochastic depth of the ResNets: the rate at which the last residual unit's branch is skipped per "
        "example in training (0 at the first unit, linear in between; timm's --drop-path).",
        kind="float",
        lower_bound=0.0,
        upper_bound=0.9,
    )
    bn_momentum: float | None = option(
        None,
        "Momentum of every BatchNormalization layer's moving mean and variance, which inference uses (default: "
        "each layer's own, Keras's 0.99). Lower (0.9) for short runs, whose moving statistics otherwise lag the "
        "weights (timm's --bn-momentum, in Keras's convention: PyTorch's 0.1 is 0.9 here).",
        kind="float",
        lower_bound=0.0,
        upper_bound=0.9999,
    )
    # --- devices and speed
    strategy: str = option("auto", "tf.distribute strategy.", kind="enum", choices=STRATEGIES)
    peer_timeout: int = option(
        300,
        "multi_worker: seconds to wait for every worker of TF_CONFIG to start (tune: for the chief).",
        kind="integer",
        lower_bound=1,
    )
    logical_cpus: int = option(
        1, "Split the CPU into N logical devices (multi-replica without GPUs).", kind="integer", lower_bound=1
    )
    mixed_precision: bool | None = option(
        None,
        "Mixed precision (float16 on GPU, bfloat16 on CPU; float32 weights and outputs). Default: on for GPUs "
        "with tensor cores and CPUs with bfloat16 instructions (measured faster: BUILD.md).",
        kind="boolean",
    )
    jit_compile: bool = option(False, "Compile train steps with XLA.", kind="boolean")
    steps_per_execution: int = option(1, "Train steps per tf.function call.", kind="integer", lower_bound=1)
    # NumPy's seeding (Keras's) takes 0 <= seed < 2**32; a search's executions use seed, seed+1, ...
    seed: int = option(
        42, "Seed for weights, shuffling and augmentation.", kind="integer", lower_bound=0, upper_bound=2**31 - 1
    )
    overwrite: bool = option(False, "Retrain from scratch even if model_dir holds a run.", kind="boolean")

    def __post_init__(self):
        # Normalize what flags and callers hand in (lists, strings) to the frozen types.
        object.__setattr__(self, "augment", tuple(_split(self.augment)))
        try:
            weights = tuple(float(v) for v in _split(self.loss_weights))
        except (TypeError, ValueError):
            raise ConfigError("loss_weights", self.loss_weights, LOSS_WEIGHTS_RULE) from None
        object.__setattr__(self, "loss_weights", weights)
        object.__setattr__(self, "model_options", _canonical_options(self.model_options))
        self._validate()

    # --- derived settings

    @property
    def two_phase(self) -> bool:
        return self.freeze_epochs > 0 or self.finetune_epochs > 0

    @property
    def single_phase_epochs(self) -> int:
        return DEFAULT_EPOCHS if self.epochs is None else self.epochs

    @property
    def finetune_rate(self) -> float:
        return self.learning_rate / 10 if self.finetune_learning_rate is None else self.finetune_learning_rate

    @property
    def finetune_decay(self) -> float:
        return self.lr_decay if self.finetune_lr_decay is None else self.finetune_lr_decay

    @property
    def finetune_momentum_value(self) -> float:
        return self.momentum if self.finetune_momentum is None else self.finetune_momentum

    @property
    def finetune_nesterov_value(self) -> bool:
        return self.nesterov if self.finetune_nesterov is None else self.finetune_nesterov

    @property
    def mixes_labels(self) -> bool:
        """Whether training mixes examples (mixup, cutmix): its labels are class probabilities."""
        return any(name in MIXING_AUGMENTATIONS for name in self.augment)

    @property
    def augment_strength(self) -> dict[str, float]:
        """The policies' strengths, as `pipelines.load(augment_strength=...)` takes them."""
        return {name: getattr(self, option) for name, (option, _, _) in AUGMENT_STRENGTHS.items()}

    @property
    def builder_options(self) -> dict:
        """``model_options`` as keyword arguments of `zoo.build` (JSON lists become tuples)."""
        options = json.loads(self.model_options) if self.model_options else {}
        if self.drop_path:
            options["drop_path"] = self.drop_path
        return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}

    # --- checks

    def _validate(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            meta = field.metadata
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            if value is None:
                continue
            if meta["kind"] == "enum" and value not in choices:
                raise ConfigError(field.name, value, f"accepted: {', '.join(choices)}")
            if meta["kind"] == "list" and choices is not None:
                unknown = [v for v in value if v not in choices]
                if unknown:
                    raise ConfigError(field.name, value, f"accepted: {', '.join(choices)}")
            if meta["kind"] == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(field.name, value, "must be an integer")
            if meta["kind"] == "float" and not math.isfinite(value):
                raise ConfigError(field.name, value, "must be a finite number")
            if meta["kind"] in ("integer", "float"):
                if meta["lower_bound"] is not None and value < meta["lower_bound"]:
                    raise ConfigError(field.name, value, f"must be at least {meta['lower_bound']}")
                if meta["upper_bound"] is not None and value > meta["upper_bound"]:
                    raise ConfigError(field.name, value, f"must be at most {meta['upper_bound']}")
        if self.seed is None:  # every run is seeded: a resumed one draws what the uninterrupted one drew
            raise ConfigError(
                "seed", None, "must be an integer: it seeds the weights, the data order and the augmentation"
            )
        if self.model_options:
            import zoo

            accepted = zoo.spec(self.model).options()
            unknown = sorted(set(json.loads(self.model_options)) - set(accepted))
            if unknown:
                raise ConfigError(
                    "model_options",
                    self.model_options,
                    f"{', '.join(unknown)} is not an option of {self.model}; accepted: {', '.join(accepted) or 'none'}",
                )
        for option_name, _, (low, high) in AUGMENT_STRENGTHS.values():
            if high is None and getattr(self, option_name) <= low:
                raise ConfigError(option_name, getattr(self, option_name), f"must be above {low}")
        if self.head == "localize" and box_augmentation_error(self.augment):
            raise ConfigError("augment", self.augment, box_augmentation_error(self.augment))
        if self.keep_best is not None:
            from trainers import task

            monitored = [f"val_{name}" for name in task.metric_names(self.head) if not name.startswith("map_")]
            if self.keep_best not in monitored:
                raise ConfigError("keep_best", self.keep_best, f"accepted for head {self.head}: {', '.join(monitored)}")
            if not self.validation_split:
                raise ConfigError("keep_best", self.keep_best, "needs a validation split (validation_split is empty)")
        if self.drop_path:
            import zoo

            with_it = [name for name in zoo.names() if "drop_path" in zoo.spec(name).options()]
            if self.model not in with_it:
                raise ConfigError(
                    "drop_path",
                    self.drop_path,
                    f"model {self.model} has no stochastic depth; accepted for {', '.join(with_it)}",
                )
            if "drop_path" in json.loads(self.model_options or "{}"):
                raise ConfigError("drop_path", self.drop_path, "is given in model_options too; give it once")
        if len(self.loss_weights) != 2 or min(self.loss_weights) < 0 or sum(self.loss_weights) <= 0:
            raise ConfigError("loss_weights", self.loss_weights, LOSS_WEIGHTS_RULE)
        if self.two_phase and self.epochs is not None:
            raise ConfigError(
                "epochs",
                self.epochs,
                "is for single-phase runs; a two-phase run gives freeze_epochs and finetune_epochs only",
            )
        if self.unfreeze_from and not self.two_phase:
            raise ConfigError("unfreeze_from", self.unfreeze_from, "needs freeze_epochs and finetune_epochs")
        if (self.lr_decay > 0 or self.finetune_decay > 0) and self.lr_schedule == "cosine":
            raise ConfigError("lr_schedule", self.lr_schedule, "and lr_decay are two schedules; choose one")
        if self.warmup_epochs and (self.lr_decay > 0 or self.finetune_decay > 0):
            raise ConfigError(
                "warmup_epochs",
                self.warmup_epochs,
                "works with lr_schedule constant or cosine, not with lr_decay (Keras 2's decay); drop one",
            )
        phase_epochs = [e for e in (self.freeze_epochs, self.finetune_epochs) if e] or [self.single_phase_epochs]
        if self.warmup_epochs and self.warmup_epochs >= min(phase_epochs):
            raise ConfigError(
                "warmup_epochs",
                self.warmup_epochs,
                f"must be fewer than each phase's epochs ({', '.join(map(str, phase_epochs))}); "
                f"warmup starts every phase",
            )
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise ConfigError("clipnorm", self.clipnorm, "must be a positive norm (or unset)")

    # --- flags

    def flag_lines(self) -> list[str]:
        """The run's settings as flags, one a line: what ``flags.txt`` holds (see `from_flagfile`)."""
        lines = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in UNRECORDED_FIELDS or value is None:
                continue
            if isinstance(value, bool):
                lines.append(f"--{field.name}" if value else f"--no{field.name}")
            elif isinstance(value, tuple):
                lines.append(f"--{field.name}={','.join(_format(v) for v in value)}")
            else:
                lines.append(f"--{field.name}={_format(value)}")
        return lines

    @classmethod
    def from_flags(cls, flag_values) -> TrainConfig:
        """A config from parsed absl flags that `define_flags` defined."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in flag_values:
                values[field.name] = flag_values[field.name].value
        return cls(**values)

    @classmethod
    def from_recipe(cls, name: str, **overrides) -> TrainConfig:
        """The config of a shipped recipe (`trainers/recipes/NAME.flags`), with ``overrides``."""
        return dataclasses.replace(cls.from_flagfile(recipe_path(name)), **overrides)

    @classmethod
    def from_flagfile(cls, path: str) -> TrainConfig:
        """The config a run directory's ``flags.txt`` records (flags absent there keep defaults)."""
        flag_values = flags.FlagValues()
        define_flags(flag_values)
        flag_values(["trainer", f"--flagfile={path}"])
        return cls.from_flags(flag_values)


# --------------------------------------------------------------------------------------- flags

# The flags of the data a model sees, which the programs that read a model back share.
DATA_FLAGS = ("dataset", "data_dir", "image_size", "batch_size", "skip_bad_files", "max_image_pixels", "follow_links")


def define_flags(
    flag_values: flags.FlagValues | None = None, names=None, *, defaults: dict | None = None, helps: dict | None = None
) -> list[str]:
    """Define `TrainConfig`'s fields (all, or ``names``) as flags; returns the names defined.

    ``defaults``/``helps`` replace a field's default or help text for a program that uses the flag
    differently (evaluate's ``--dataset`` defaults to the run's own). Names already defined in
    ``flag_values`` are left as they are, so calling this twice is harmless.
    """
    # The flags belong to the program that asks for them, so its --help lists them (absl shows the
    # main module's own flags); without this they would all be this module's, shown by --helpfull only.
    flags.disclaim_key_flags()
    flag_values = flags.FLAGS if flag_values is None else flag_values
    defaults, helps = defaults or {}, helps or {}
    defined = []
    for field in dataclasses.fields(TrainConfig):
        if (names is not None and field.name not in names) or field.name in flag_values:
            continue
        meta = field.metadata
        default = defaults.get(field.name, field.default)
        help_text = helps.get(field.name, meta["help"])
        kind = meta["kind"]
        bounds = {k: meta[k] for k in ("lower_bound", "upper_bound") if meta[k] is not None}
        if kind == "enum":
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            flags.DEFINE_enum(field.name, default, list(choices), help_text, flag_values=flag_values)
        elif kind == "list":
            flags.DEFINE_list(
                field.name,
                [str(v) for v in default] if default is not None else None,
                help_text,
                flag_values=flag_values,
            )
        elif kind == "integer":
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values, **bounds)
        elif kind == "float":
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values, **bounds)
        elif kind == "boolean":
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)
        defined.append(field.name)
    return defined


def _split(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _canonical_options(options) -> str | None:
    """``model_options`` (a dict, or its JSON) as compact JSON with sorted keys, None when empty."""
    if options is None or options == "" or options == {}:
        return None
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError as error:
            raise ConfigError("model_options", options, f'is not JSON ({error.msg}); e.g. {{"dropout": 0.3}}') from None
    if not isinstance(options, dict):
        raise ConfigError("model_options", options, 'must be a JSON object of builder options, e.g. {"dropout": 0.3}')
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}, sort_keys=True) or None


def _format(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------------------- recipes

RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


def recipe_names() -> list[str]:
    return sorted(name[: -len(".flags")] for name in os.listdir(RECIPES_DIR) if name.endswith(".flags"))


def recipe_path(name: str) -> str:
    """The flag file of recipe ``name``; ConfigError listing the recipes when there is none."""
    if name not in recipe_names():
        raise ConfigError("recipe", name, f"accepted: {', '.join(recipe_names())} (or 'list')")
    return os.path.join(RECIPES_DIR, f"{name}.flags")


def recipe_summary(name: str) -> str:
    """The first comment line of a recipe: what it trains."""
    with open(recipe_path(name)) as f:
        for line in f:
            if line.startswith("#"):
                return line.lstrip("# ").strip()
    return ""


# --------------------------------------------------------------------------------------- search space


def search_space(hp, config: TrainConfig) -> dict:
    """What `trainers.tune` may vary around ``config``, declared on ``hp`` (keras-tuner's
    `HyperParameters`), as `TrainConfig` overrides.

    The model's own hyperparameters are declared beside its builder (`zoo.spec(name).search_space`)
    and land in ``model_options`` (or ``model``, for ResNet depth); how any model trains is declared
    here: optimizer, learning rate and schedule, augmentation on/off, label smoothing, weight decay,
    a warmup epoch, weight averaging (EMA), and for a two-phase transfer run the fine-tuning
    learning rate and where to unfreeze.
    """
    import zoo

    overrides = {
        "optimizer": hp.Choice("optimizer", list(OPTIMIZERS), default=config.optimizer),
        "learning_rate": hp.Float(
            "learning_rate", 1e-4, 0.1, sampling="log", default=min(max(config.learning_rate, 1e-4), 0.1)
        ),
    }
    if config.lr_decay == 0 and config.finetune_decay == 0:  # a decay is a schedule of its own
        overrides["lr_schedule"] = hp.Choice("lr_schedule", list(LR_SCHEDULES), default=config.lr_schedule)
    # Crop and flip on or off (the run's own, or both), then a policy on top (localize: erase only).
    own_base = tuple(name for name in config.augment if name in SEARCHED_BASE)
    own_policy = ",".join(name for name in config.augment if name not in SEARCHED_BASE) or "none"
    augment_on = hp.Boolean("augment", default=bool(own_base))
    searched = SEARCHED_POLICIES if config.head == "classify" else ("erase",)
    policies = ["none", *searched] + ([own_policy] if own_policy not in searched else [])
    policy = hp.Choice("augment_policy", list(dict.fromkeys(policies)), default=own_policy)
    overrides["augment"] = ((own_base or SEARCHED_BASE) if augment_on else ()) + (
        tuple(policy.split(",")) if policy != "none" else ()
    )
    # The regularizers (timm's usual values): label smoothing, decoupled weight decay, a warmup
    # epoch (where every phase has more than one and no Keras 2 decay is set), weight averaging.
    overrides["label_smoothing"] = hp.Float(
        "label_smoothing", 0.0, 0.2, step=0.05, default=min(round(config.label_smoothing / 0.05) * 0.05, 0.2)
    )
    decays = [0.0, 1e-5, 1e-4, 1e-3]
    overrides["weight_decay"] = hp.Choice(
        "weight_decay", decays, default=config.weight_decay if config.weight_decay in decays else 0.0
    )
    phase_epochs = [e for e in (config.freeze_epochs, config.finetune_epochs) if e] or [config.single_phase_epochs]
    if min(phase_epochs) > 1 and config.lr_decay == 0 and config.finetune_decay == 0:
        warmup = hp.Boolean("warmup", default=config.warmup_epochs > 0)
        overrides["warmup_epochs"] = max(config.warmup_epochs, 1) if warmup else 0
    overrides["ema"] = hp.Boolean("ema", default=config.ema)
    spec = zoo.spec(config.model)
    if config.two_phase:
        overrides["finetune_learning_rate"] = hp.Float(
            "finetune_learning_rate", 1e-5, 1e-2, sampling="log", default=min(max(config.finetune_rate, 1e-5), 1e-2)
        )
        if spec.unfreeze_points:
            where = hp.Choice("unfreeze_from", ["all", *spec.unfreeze_points])
            overrides["unfreeze_from"] = None if where == "all" else where
    build = spec.declare_space(hp)
    overrides["model"] = build.pop("model", config.model)
    # The run's own model options (drop_path is a field of its own, not one of them), then the space's.
    own = {k: v for k, v in config.builder_options.items() if k != "drop_path"}
    overrides["model_options"] = {**own, **build} or None
    return overrides
