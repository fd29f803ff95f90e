#!/bin/bash
# The Xception fine-tuning and float16 figures of BUILD.md ("Training speed"), in one run on a GPU
# machine without TensorFlow: the zoo under Keras's JAX backend. Where Keras is not installed it
# installs the wheels in .whl/ (keras, namex, optree: `pip download --no-deps` them beforehand) into
# /tmp/site. Figures go to $OUT/figures.jsonl as JSON lines. From the repository root:
#   OUT=/tmp/out bash benchmarks/gpu_figures.sh
# Tiny, on a CPU, to try it: BATCH=2 SIZE=71 STEPS=1 NSTEPS=1 bash benchmarks/gpu_figures.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ! python -c "import keras" 2>/dev/null; then
  pip install -q --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_MEM_FRACTION=${MEMF:-0.6}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
python -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())"
B="timeout ${TMO:-150} python benchmarks/train_step.py --batch_size=${BATCH:-256} --image_size=${SIZE:-224} --out=$OUT/figures.jsonl"
$B --models=xception --phase=finetune --precision=float32 --steps=${STEPS:-10}
$B --models=xception --phase=finetune --precision=mixed_bfloat16 --steps=${STEPS:-10}
$B --models=resnet34 --precision=mixed_float16 --steps=${STEPS:-10}
$B --models=xception --phase=finetune --precision=mixed_bfloat16 --jit_compile=false --steps=${NSTEPS:-3}
$B --models=xception --phase=finetune --precision=float32 --jit_compile=false --steps=${NSTEPS:-3}
echo done
