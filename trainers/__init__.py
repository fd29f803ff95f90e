"""trainers: the trainer as a library (`trainers.train.train(config)`) and its command-line programs.

    from trainers.config import TrainConfig
    from trainers.train import train
    result = train(TrainConfig(model_dir="runs/x", model="resnet18", dataset="shapes", epochs=5))

Each program (`python -m trainers.train|evaluate|predict`) defines its flags when it starts
(`trainers.cli`), turns them into a `TrainConfig`, and calls the functions of `trainers.steps`.
"""

import os

# TensorFlow's C++ INFO lines (device setup, CUDA probing) drown the trainer's own; set before the
# first TensorFlow import, and only where the user has not chosen.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
