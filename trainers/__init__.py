"""trainers: the trainer as a library (`trainers.train.train(config)`) and its command-line programs.

    from trainers.config import TrainConfig
    from trainers.train import train
    result = train(TrainConfig(model_dir="runs/x", model="resnet18", dataset="shapes", epochs=5))

Each program (`python -m trainers.train|evaluate|predict`) defines its flags when it starts
(`trainers.cli`), turns them into a `TrainConfig`, and calls the functions of `trainers.steps`.
"""

import os
import platform

# TensorFlow's C++ INFO lines (device setup, CUDA probing) drown the trainer's own; set before the
# first TensorFlow import, and only where the user has not chosen.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# oneDNN's CPU kernels: TensorFlow turns them on by itself only on some x86 CPUs (those with
# AVX-512), yet they train 2-3x faster on the others too (BUILD.md, training speed). On for x86
# CPUs before TensorFlow starts, unless the user chose: TF_ENABLE_ONEDNN_OPTS=0 opts out.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
