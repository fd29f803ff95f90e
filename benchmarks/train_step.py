"""Train-step throughput of zoo models on synthetic data, under whichever Keras backend is active.

    KERAS_BACKEND=jax python benchmarks/train_step.py --models=resnet34 --batch_size=256 \\
        --image_size=224 --sweep --baseline                                   # on a GPU
    python benchmarks/train_step.py --models=all --batch_size=4 --image_size=32 --steps=2   # tiny, CPU

For each model and setting it prints (and appends to ``--out`` as JSON lines): the first step's
time (tracing and compiling), the median step time over ``--steps`` steps after a warm-up, and
images/s. Data is one synthetic batch of raw pixels in [0, 255] put on the device once, so the
input pipeline is out of the figure; each step syncs (`train_on_batch` returns its loss). With
``--steps_per_execution`` > 1 the steps run through `fit` on an in-memory array instead (the only
way Keras runs several steps per call), one epoch being one call.

``--regularize=ema,weight_decay,drop_path,label_smoothing`` trains with the trainer's regularizers
(any of them), to see what each costs a step. ``--sweep`` measures, on the first model, the settings
the trainer controls, one at a time from the defaults: precision (float32 / mixed bfloat16 or
float16), float32 matmul precision (TF32 on or off), XLA (on vs off, under TensorFlow and JAX),
steps per execution (1 vs 8), and the optimizer update (SGD with momentum vs AdamW). ``--baseline``
adds torchvision's model of the same name (resnet18/34/50) trained in PyTorch eager mode with the
same batch, precision and SGD, in this process, and prints ours / torchvision.
``--phase=frozen|finetune`` trains a transfer model's heads only, or its backbone too with
BatchNormalization frozen, as the trainer's two phases do.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()  # TF_CPP_MIN_LOG_LEVEL=2 unless set; no CUDA probe's ERROR line

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
USUAL_SIZE = {"fashion_cnn": 28}


def define_flags() -> None:
    flags.DEFINE_list("models", ["resnet34"], "Zoo models to measure, or 'all'.")
    flags.DEFINE_integer("batch_size", 32, "Images per step.", lower_bound=1)
    flags.DEFINE_integer("image_size", 224, "Square image size (fashion_cnn keeps 28 unless --same_size).")
    flags.DEFINE_boolean("same_size", False, "Use --image_size for fashion_cnn too.")
    flags.DEFINE_integer("steps", 20, "Timed steps (after one warm-up step).", lower_bound=1)
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"], "Keras dtype policy.")
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA (Keras' 'auto': on for JAX).")
    flags.DEFINE_integer("steps_per_execution", 1, "Steps per call (through fit when > 1).", lower_bound=1)
    flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adamw"], "Optimizer of the step.")
    flags.DEFINE_boolean("tf32", True, "Allow TF32 for float32 matmuls and convolutions.")
    flags.DEFINE_boolean("sweep", False, "Measure each setting the trainer controls, on the first model.")
    flags.DEFINE_boolean("baseline", False, "Also torchvision's model of the same name in PyTorch eager mode.")
    flags.DEFINE_enum(
        "phase",
        "all",
        ["all", "frozen", "finetune"],
        "Transfer models: train everything (all), the heads only (frozen), or fine-tune as the trainer's "
        "second phase does (backbone trainable, BatchNormalization kept frozen).",
    )
    flags.DEFINE_list(
        "regularize",
        [],
        f"Train with these of the trainer's regularizers ({', '.join(REGULARIZERS)}), at the values the trainer's "
        "docs use: EMA momentum 0.999, weight decay 5e-5 (biases, gamma, beta excluded), drop_path 0.1, label "
        "smoothing 0.1.",
    )
    flags.DEFINE_string("out", None, "Append each result to this file as a JSON line.")


REGULARIZERS = ("ema", "weight_decay", "drop_path", "label_smoothing")


def device_name() -> str:
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return jax.devices()[0].device_kind
        if backend == "torch":
            return torch_device_name()
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "cpu"
    except Exception as error:  # noqa: BLE001  (a name for the report, never a reason to stop)
        return f"unknown ({type(error).__name__})"


def set_tf32(allowed: bool) -> None:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "default" if allowed else "highest")
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(allowed)
    else:
        set_torch_tf32(allowed)


def set_torch_tf32(allowed: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed


def torch_device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def measure(name: str, setting: dict) -> dict:
    """Build ``name`` under ``setting``, train ``--steps`` steps on one synthetic batch, time them."""
    import zoo

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(setting["precision"])
    set_tf32(setting["tf32"])
    size = FLAGS.image_size if FLAGS.same_size else USUAL_SIZE.get(name, FLAGS.image_size)
    channels = 1 if name == "fashion_cnn" else 3
    batch = FLAGS.batch_size
    regularize = tuple(setting.get("regularize", ()))
    options = {"drop_path": 0.1} if "drop_path" in regularize else {}
    model = zoo.build(name, num_classes=10, input_shape=(size, size, channels), **options)
    if FLAGS.phase == "frozen":
        zoo.freeze_backbone(model)
    elif FLAGS.phase == "finetune":
        zoo.unfreeze_backbone(model, keep_batchnorm_frozen=True)
    extra = {}
    if "weight_decay" in regularize:
        extra["weight_decay"] = 5e-5
    if "ema" in regularize:
        extra.update(use_ema=True, ema_momentum=0.999)
    optimizer = (
        keras.optimizers.SGD(0.01, momentum=0.9, **extra)
        if setting["optimizer"] == "sgd"
        else keras.optimizers.AdamW(1e-3, **extra)
    )
    if "weight_decay" in regularize:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    jit = {"auto": "auto", "true": True, "false": False}[setting["jit_compile"]]
    spe = setting["steps_per_execution"]
    smoothing = "label_smoothing" in regularize  # the trainer's loss: cross-entropy on smoothed one-hot labels
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1) if smoothing else "sparse_categorical_crossentropy"
    model.compile(optimizer, loss, jit_compile=jit, steps_per_execution=spe)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, channels)).astype("float32")
    labels = rng.integers(0, 10, batch).astype("int32")
    if smoothing:
        labels = np.eye(10, dtype="float32")[labels]
    result = dict(
        model=name,
        backend=keras.backend.backend(),
        device=device_name(),
        batch_size=batch,
        image_size=size,
        phase=FLAGS.phase,
        **setting,
        xla=bool(model.jit_compile),  # what Keras made of jit_compile ("auto": off for TF on CPU, on for JAX)
    )
    if spe == 1:
        x, y = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)  # on the device once
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        result["first_step_s"] = time.perf_counter() - start
        times = []
        for _ in range(FLAGS.steps):
            start = time.perf_counter()
            loss = model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        step = statistics.median(times)
    else:
        # One epoch = one call of spe steps over spe copies of the batch.
        xs, ys = np.concatenate([images] * spe), np.concatenate([labels] * spe)
        start = time.perf_counter()
        model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        result["first_step_s"] = time.perf_counter() - start
        calls = max(1, FLAGS.steps // spe)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            history = model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            times.append((time.perf_counter() - start) / spe)
        loss = history.history["loss"][-1]
        step = statistics.median(times)
    result.update(step_ms=step * 1000, images_per_s=batch / step, loss=float(np.asarray(loss)))
    if not np.isfinite(result["loss"]):
        result["note"] = "non-finite loss"
    return result


def torchvision_baseline(name: str, setting: dict) -> dict | None:
    """torchvision's ``name`` in PyTorch eager mode, channels-last, SGD, autocast as ``setting``."""
    try:
        import torch
        import torchvision
    except ImportError:
        print("baseline: torch/torchvision not installed; skipped")
        return None
    if not hasattr(torchvision.models, name):
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_torch_tf32(setting["tf32"])
    torch.backends.cudnn.benchmark = True
    model = getattr(torchvision.models, name)(num_classes=10).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch, size = FLAGS.batch_size, FLAGS.image_size
    x = torch.rand(batch, 3, size, size, device=device).to(memory_format=torch.channels_last) * 255
    y = torch.randint(0, 10, (batch,), device=device)
    dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(setting["precision"])

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x / 255), y)
        loss.backward()
        optimizer.step()
        return loss

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return dict(
        model=f"torchvision.{name}",
        backend="torch eager",
        device=torch_device_name(),
        batch_size=batch,
        image_size=size,
        **setting,
        first_step_s=first,
        step_ms=median * 1000,
        images_per_s=batch / median,
        loss=float(loss),
    )


def sweep_changes(default: dict) -> list[dict]:
    """The settings ``--sweep`` tries, each one change from the ``default`` run's."""
    backend = keras.backend.backend()
    mixed = "mixed_float16" if backend == "tensorflow" and device_name() != "cpu" else "mixed_bfloat16"
    changes = [
        dict(precision="float32" if FLAGS.precision != "float32" else mixed),
        dict(tf32=not FLAGS.tf32),
        dict(steps_per_execution=8 if FLAGS.steps_per_execution == 1 else 1),
        dict(optimizer="adamw" if FLAGS.optimizer == "sgd" else "sgd"),
    ]
    if backend in ("tensorflow", "jax"):
        # XLA the other way from what the default run got (Keras resolved its "auto").
        changes.append(dict(jit_compile="false" if default["xla"] else "true"))
    return changes


def report(result: dict) -> None:
    keys = ("precision", "tf32", "jit_compile", "steps_per_execution", "optimizer")
    setting = " ".join(f"{k}={result[k]}" for k in keys)
    if result.get("regularize"):
        setting += " +" + "+".join(result["regularize"])
    if result.get("phase", "all") != "all":
        setting += f" phase={result['phase']}"
    print(
        f"{result['model']:<22} {result['backend']:<11} {setting:<86} first step {result['first_step_s']:7.2f} s  "
        f"step {result['step_ms']:8.2f} ms  {result['images_per_s']:9.1f} images/s{'  ' + result.get('note', '')}",
        flush=True,
    )
    if FLAGS.out:
        with open(FLAGS.out, "a") as f:
            f.write(json.dumps(result) + "\n")


def main(argv):
    import logging

    import zoo

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes: each setting is a new model

    names = zoo.names() if FLAGS.models == ["all"] else FLAGS.models
    unknown = [n for n in names if n not in zoo.names()]
    if unknown:
        print(
            f"error: --models: unknown {', '.join(unknown)}; accepted: {', '.join(zoo.names())} or all", file=sys.stderr
        )
        return 2
    wrong = [r for r in FLAGS.regularize if r not in REGULARIZERS]
    if wrong:
        print(f"error: --regularize={','.join(FLAGS.regularize)}: accepted: {', '.join(REGULARIZERS)}", file=sys.stderr)
        return 2
    if "drop_path" in FLAGS.regularize:
        without = [n for n in names if "drop_path" not in zoo.spec(n).options()]
        if without:
            print(f"error: --regularize=drop_path: {', '.join(without)} have no stochastic depth", file=sys.stderr)
            return 2
    default = dict(
        precision=FLAGS.precision,
        tf32=FLAGS.tf32,
        jit_compile=FLAGS.jit_compile,
        steps_per_execution=FLAGS.steps_per_execution,
        optimizer=FLAGS.optimizer,
        regularize=list(FLAGS.regularize),
    )
    print(f"backend {keras.backend.backend()}, device {device_name()}, batch {FLAGS.batch_size}", flush=True)
    ours = {}
    for index, name in enumerate(names):
        ours[name] = result = measure(name, default)
        report(result)
        if index == 0 and FLAGS.sweep:
            for change in sweep_changes(result):
                report(measure(name, {**default, **change}))
    if FLAGS.baseline:
        for name, result in ours.items():
            base = torchvision_baseline(name, default)
            if base is None:
                continue
            report(base)
            print(f"ours / torchvision, {name}: {result['images_per_s'] / base['images_per_s']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
