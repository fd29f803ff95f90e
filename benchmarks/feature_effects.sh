#!/usr/bin/env bash
# Each training feature's effect, one at a time, on a real image folder (scikit-learn's digits,
# benchmarks/digits_folder.py; test split kept aside): the chapter's Fashion-MNIST recipe
# (trainers/recipes/fashion_mnist_cnn.flags: Nadam, batch 32, standardized inputs), EPOCHS epochs,
# then the same with one flag added. Prints each run's test accuracy and its difference to the base.
# usage: bash benchmarks/feature_effects.sh [WORK_DIR] [EPOCHS]
set -euo pipefail
WORK=${1:-/tmp/effects}
EPOCHS=${2:-6}
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
[ -d "$WORK/digits" ] || $PY benchmarks/digits_folder.py --out="$WORK/digits"
BASE=(--flagfile=trainers/recipes/fashion_mnist_cnn.flags --dataset="dir:$WORK/digits" --image_size=28
      --train_split=train --validation_split=validation --test_split=test --epochs="$EPOCHS")
FEATURES=(
  "base:"
  "label_smoothing:--label_smoothing=0.1"
  "weight_decay:--weight_decay=1e-4"
  "warmup:--warmup_epochs=1"
  "cosine:--lr_schedule=cosine"
  "ema:--ema --ema_momentum=0.9"
  "keep_best:--keep_best=val_accuracy"
  "crop:--augment=crop"
  "randaugment:--augment=randaugment"
  "erase:--augment=erase"
  "mixup:--augment=mixup"
  "cutmix:--augment=cutmix"
)
for entry in "${FEATURES[@]}"; do
  name=${entry%%:*}; flag=${entry#*:}
  [ -f "$WORK/$name/metrics.json" ] || $PY -m trainers.train "${BASE[@]}" $flag --model_dir="$WORK/$name" > "$WORK/$name.log" 2>&1
done
for entry in "${FEATURES[@]}"; do
  name=${entry%%:*}; flag=${entry#*:}
  $PY -c "
import json, sys
base = json.load(open(sys.argv[1] + '/base/metrics.json'))['accuracy']
run = json.load(open(sys.argv[1] + '/' + sys.argv[2] + '/metrics.json'))['accuracy']
print(f'| {sys.argv[3] or \"(the recipe)\"} | {run:.4f} | {run - base:+.4f} |')" "$WORK" "$name" "$flag"
done
