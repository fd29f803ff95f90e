#!/bin/bash
# What each of the trainer's regularizers costs a train step on a GPU (BUILD.md, "Training speed"):
# ResNet-34 in mixed bfloat16 under Keras's JAX backend, plain, then with each of --ema,
# --weight_decay, --drop_path and --label_smoothing alone, then all four (benchmarks/train_step.py
# --regularize). For a GPU machine without TensorFlow: where Keras is not installed it installs the
# wheels in .whl/ (keras, namex, optree: `pip download --no-deps` them beforehand) into /tmp/site.
# Figures go to $OUT/regularizers.jsonl as JSON lines. From the repository root:
#   OUT=/tmp/out bash benchmarks/gpu_regularizers.sh
# Tiny, on a CPU, to try it: BATCH=2 SIZE=32 STEPS=1 MODEL=resnet18 bash benchmarks/gpu_regularizers.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ! python -c "import keras" 2>/dev/null; then
  pip install -q --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_MEM_FRACTION=${MEMF:-0.6}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
python -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())"
B="timeout ${TMO:-150} python benchmarks/train_step.py --models=${MODEL:-resnet34} --batch_size=${BATCH:-256} \
  --image_size=${SIZE:-224} --precision=${PRECISION:-mixed_bfloat16} --steps=${STEPS:-15} --out=$OUT/regularizers.jsonl"
for R in "" ema weight_decay drop_path label_smoothing ema,weight_decay,drop_path,label_smoothing; do
  $B --regularize="$R" 2>&1 | grep -E "images/s|error"
done
echo done
