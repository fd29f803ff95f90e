"""What --prune=median saves: the same 12-trial random search with and without pruning, on a real
image folder (scikit-learn's digits, `digits_folder.py`), the epochs trained and the best objective.

    python benchmarks/search_pruning.py --work=/tmp/pruning [--max_trials=12 --epochs=6]

Both searches draw the same trials (the random oracle is seeded by --seed): they differ only in
what pruning stops. Epochs are counted from each trial's TensorBoard logs; the best objective and
the pruned count from the search's own end table (`trainers.tune`'s output).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO]

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("work", None, "Folder for the digits and both searches (created).")
    flags.DEFINE_integer("max_trials", 12, "Trials of each search.")
    flags.DEFINE_integer("epochs", 6, "Epochs of a trial that is not stopped.")
    flags.DEFINE_integer("prune_after", 2, "--prune_after of the pruned search.")
    flags.DEFINE_integer("seed", 1, "Seed of both searches (the same trials).")
    flags.mark_flag_as_required("work")


def epochs_trained(search_dir: str) -> int:
    import tensorflow as tf

    count = 0
    for path in glob.glob(os.path.join(search_dir, "trials", "*", "execution*", "logs", "validation", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            count += sum(1 for value in event.summary.value if value.tag == "epoch_loss")
    return count


def main(argv):
    del argv
    from digits_folder import write_digits

    digits = os.path.join(FLAGS.work, "digits")
    if not os.path.isdir(digits):
        write_digits(digits)
    common = [
        "--model=fashion_cnn",
        f"--dataset=dir:{digits}",
        "--image_size=28",
        "--test_split=test",
        f"--epochs={FLAGS.epochs}",
        f"--max_trials={FLAGS.max_trials}",
        "--tuner=random",
        f"--seed={FLAGS.seed}",
    ]
    rows = []
    for name, extra in (
        ("no pruning", []),
        ("--prune=median", ["--prune=median", f"--prune_after={FLAGS.prune_after}"]),
    ):
        search_dir = os.path.join(FLAGS.work, "pruned" if extra else "plain")
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "trainers.tune", f"--model_dir={search_dir}", *common, *extra],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{name}: trainers.tune failed ({done.returncode}): {done.stderr[-2000:]}")
        counts = re.search(r"(\d+) trial\(s\) completed, (\d+) failed(?:, (\d+) pruned)?", done.stdout)
        best = re.search(r"^1\s+\S+\s+(\S+)", done.stdout, re.M)
        rows.append((name, epochs_trained(search_dir), counts.group(3) or "0", best.group(1), seconds))
        print(done.stdout[-1500:])
    print(f"{'search':<16} {'epochs trained':>14} {'pruned':>7} {'best val_accuracy':>18} {'time':>8}")
    for name, epochs, pruned, best, seconds in rows:
        print(f"{name:<16} {epochs:>14} {pruned:>7} {best:>18} {seconds:>7.0f}s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
