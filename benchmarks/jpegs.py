"""What the benchmarks share: a folder of JPEGs to time (the user's, or one written here) and the timer."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import tensorflow as tf
from absl import app


def write_jpegs(root, count):
    """Photo-sized JPEGs (500x375, smooth content plus noise, like real photos compress)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = os.path.join(root, f"class{i % 5}")
        os.makedirs(folder, exist_ok=True)
        low = rng.uniform(0, 255, (8, 10, 3))
        image = tf.image.resize(low[None], (375, 500))[0] + rng.normal(0, 12, (375, 500, 3))
        image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
        tf.io.write_file(os.path.join(folder, f"{i:05d}.jpg"), tf.io.encode_jpeg(image, quality=90))


def replicate(root, target, times):
    """A folder with ``times`` hard links to each file of ``root`` (more files, the same bytes).

    Hard, not symbolic: the folder source lists a file reached through symlinks once (by its real
    path), while hard links are files of their own. Across filesystems each file is copied once,
    and the copy linked.
    """
    for cls in sorted(os.listdir(root)):
        src = os.path.join(root, cls)
        if not os.path.isdir(src):
            continue
        os.makedirs(os.path.join(target, cls), exist_ok=True)
        for name in os.listdir(src):
            first = os.path.join(target, cls, f"0_{name}")
            try:
                os.link(os.path.join(src, name), first)
            except OSError:  # another filesystem, or links not allowed there
                shutil.copyfile(os.path.join(src, name), first)
            for k in range(1, times):
                os.link(first, os.path.join(target, cls, f"{k}_{name}"))


def list_jpegs(root):
    paths, labels = [], []
    for label, cls in enumerate(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))):
        for name in sorted(os.listdir(os.path.join(root, cls))):
            if name.lower().endswith((".jpg", ".jpeg")):
                paths.append(os.path.join(root, cls, name))
                labels.append(label)
    return paths, labels


def prepare_folder(images_dir, num_files, images, batch_size, tmp):
    """``(root, paths, labels)`` of the JPEGs to time, under ``tmp`` unless ``images_dir`` is given.

    ``images_dir`` None: ``num_files`` JPEGs are written. An epoch must be longer than a
    measurement of ``images`` (plus warm-up), or pipeline restarts at epoch ends are timed instead
    of throughput: a small folder is linked several times over. Bad folders raise `app.UsageError`.
    """
    if images_dir is not None and not os.path.isdir(images_dir):
        raise app.UsageError(f"--images_dir={images_dir!r} is not a folder")
    source = images_dir
    if source is None:
        source = os.path.join(tmp, "jpegs")
        print(f"writing {num_files} JPEGs (500x375) to {source} ...")
        write_jpegs(source, num_files)
    paths, labels = list_jpegs(source)
    if not paths:
        raise app.UsageError(f"no JPEGs in class subfolders of {source!r}")
    times = -(-(images + 4 * batch_size) // len(paths))
    root = source
    if times > 1:
        root = os.path.join(tmp, "linked")
        replicate(source, root, times)
        paths, labels = list_jpegs(root)
    return root, paths, labels


def images_per_second(make_dataset, images, batch_size, warmup_batches=3):
    """Fresh iterator each time, so no pipeline works ahead while another one is timed."""
    iterator = iter(make_dataset())
    for _ in range(warmup_batches):  # tracing, thread start-up, autotuning
        next(iterator)
    steps = -(-images // batch_size)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    elapsed = time.perf_counter() - start
    del iterator
    return steps * batch_size / elapsed
