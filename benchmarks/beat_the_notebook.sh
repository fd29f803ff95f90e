#!/usr/bin/env bash
# The bar of "training that beats a hand-tuned notebook", on a real image folder (scikit-learn's
# digits: benchmarks/digits_folder.py), its test split kept aside:
#   (a) the chapter's Fashion-MNIST recipe (trainers/recipes/fashion_mnist_cnn.flags: standardized
#       inputs, Nadam, batch 32, 10 epochs), on this folder;
#   (b) the trainer's defaults;
#   (c) a 10-trial Bayesian search over the trainer's space (10 epochs a trial, judged on the
#       validation holdout), then (d) its best.flags trained alone.
# Prints each one's test accuracy.   usage: bash benchmarks/beat_the_notebook.sh [WORK_DIR]
set -euo pipefail
WORK=${1:-/tmp/beat}
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
[ -d "$WORK/digits" ] || $PY benchmarks/digits_folder.py --out="$WORK/digits"
DATA=(--dataset="dir:$WORK/digits" --image_size=28 --train_split=train --validation_split=validation --test_split=test)
$PY -m trainers.train --flagfile=trainers/recipes/fashion_mnist_cnn.flags "${DATA[@]}" --model_dir="$WORK/chapter"
$PY -m trainers.train --model=fashion_cnn "${DATA[@]}" --model_dir="$WORK/defaults"
$PY -m trainers.tune --model=fashion_cnn "${DATA[@]}" --epochs=10 --max_trials=10 --tuner=bayesian \
  --model_dir="$WORK/search"
$PY -m trainers.train --flagfile="$WORK/search/best.flags" --model_dir="$WORK/best"
for run in chapter defaults best; do
  $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:<10} test accuracy {m['accuracy']:.4f} ({m['num_examples']} images)\")" \
    "$WORK/$run/metrics.json" "$run"
done
