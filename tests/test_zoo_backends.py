"""The zoo uses Keras layers only, so its models build and train under Keras's JAX backend too.

The backend is chosen when Keras is first imported, so this runs in a fresh process with
KERAS_BACKEND=jax. Every model builds, predicts, and survives a .keras save and a safe-mode load
(the box head on two of them: it is the same Dense layer on every backbone). The zoo's own
networks, the Fashion CNN and ResNet-18, then train a step (the box head on the Fashion CNN);
ResNet-34 is ResNet-18's code, deeper, and ResNet-50 and Xception are keras.applications' code
behind our preprocessing layer (Xception's first training step takes about 50 s to compile on this
CPU under JAX). ResNet-34 and Xception were trained under JAX on a GPU, see BUILD.md, Training speed.
"""

import json
import os

import pytest

from tests.conftest import python_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, os, sys
import numpy as np
import keras
import zoo

assert keras.backend.backend() == "jax", keras.backend.backend()
out = {}
sizes = {"fashion_cnn": (16, 16, 1), "xception": (71, 71, 3)}
from zoo.applications import table_names
for name in sorted(set(zoo.names()) - set(table_names())):  # the table's rows: Keras's own code
    shape = sizes.get(name, (32, 32, 3))
    for head in ("classify", "localize") if name in ("fashion_cnn", "resnet18") else ("classify",):
        model = zoo.build(name, num_classes=3, input_shape=shape, head=head)
        images = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
        labels = np.array([0, 2])
        targets = labels if head == "classify" else {"class": labels, "bbox": np.full((2, 4), 0.5, "float32")}
        losses = "sparse_categorical_crossentropy" if head == "classify" else {
            "class": "sparse_categorical_crossentropy", "bbox": "mse"}
        model.compile(keras.optimizers.SGD(0.01), losses)
        record = {}
        path = os.path.join(sys.argv[1], f"{name}_{head}.keras")
        model.save(path)
        loaded = keras.models.load_model(path, compile=False)
        first, second = model.predict(images, verbose=0), loaded.predict(images, verbose=0)
        first, second = keras.tree.flatten(first), keras.tree.flatten(second)
        record["same_prediction"] = all(np.allclose(a, b, atol=1e-5) for a, b in zip(first, second))
        record["finite"] = all(np.isfinite(a).all() for a in first)
        if f"{name}/{head}" in sys.argv[2].split(","):  # TRAINED
            before = [w.copy() for w in model.get_weights()]
            loss = model.train_on_batch(images, targets)
            loss = loss[0] if isinstance(loss, (list, tuple)) else loss
            record["loss"] = float(loss)
            record["changed"] = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        out[f"{name}/{head}"] = record
print("RESULT " + json.dumps(out))
"""

# The zoo's own networks, trained a step under JAX.
TRAINED = ("fashion_cnn/classify", "fashion_cnn/localize", "resnet18/classify")


@pytest.mark.slow
def test_every_zoo_model_builds_trains_and_reloads_under_the_jax_backend(tmp_path):
    pytest.importorskip("jax", reason="the test extra installs jax[cpu]")
    result = python_code(
        SCRIPT, str(tmp_path), ",".join(TRAINED), timeout=600, extras=True, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = [row for row in result.stdout.splitlines() if row.startswith("RESULT ")][-1]
    records = json.loads(line[len("RESULT ") :])
    import zoo
    from zoo.applications import table_names

    own = sorted(set(zoo.names()) - set(table_names()))
    expected = [f"{n}/classify" for n in own] + ["fashion_cnn/localize", "resnet18/localize"]
    assert sorted(records) == sorted(expected)
    for key, record in records.items():
        assert record["same_prediction"] and record["finite"], (key, record)
        if key in TRAINED:
            assert record["changed"] and record["loss"] == pytest.approx(record["loss"]), (key, record)  # not NaN
