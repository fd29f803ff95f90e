"""trainers: the trainer as a library (`trainers.training.train(config)`) and its command-line programs.

    from trainers.config import TrainConfig
    from trainers.training import train
    result = train(TrainConfig(model_dir="runs/x", model="resnet18", dataset="shapes", epochs=5))

Each program (`python -m trainers.train|tune|evaluate|predict|show`) defines its flags when it
starts (`trainers.config.define_flags`, `trainers.cli`), turns them into a `TrainConfig` and calls
the library (`trainers.training`, `trainers.saved`, `trainers.steps`); programs never import each
other. BUILD.md's "Layout" is the map.
"""

import os
import platform

# oneDNN's CPU kernels: TensorFlow turns them on by itself only on some x86 CPUs (those with
# AVX-512), yet they train 2-3x faster on the others too (BUILD.md, training speed). On for x86
# CPUs before TensorFlow starts, unless the user chose: TF_ENABLE_ONEDNN_OPTS=0 opts out.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# The trainers are TensorFlow programs: start it here, before any of their modules imports it, so
# that its start-up lines obey TF_CPP_MIN_LOG_LEVEL (no "failed call to cuInit" error line in
# every process of a machine without a GPU; TF_CPP_MIN_LOG_LEVEL=0 shows them all).
from zoo import compat  # noqa: E402

compat.start_tensorflow_quietly()
