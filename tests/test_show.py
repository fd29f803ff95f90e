"""`python -m trainers.show`: every kind of figure on tiny inputs, and its one-line errors."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

import trainers.training
import zoo
from pipelines import shapes
from tests.conftest import program_in_process, start_program
from trainers import show
from trainers.cli import UserError
from trainers.config import TrainConfig
from trainers.saved import open_saved

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A two-phase localize run on tiny shapes data (with TensorBoard logs of both phases)."""
    root = tmp_path_factory.mktemp("show") / "run"
    trainers.training.train(
        TrainConfig(
            model_dir=str(root),
            model="resnet18",
            head="localize",
            dataset="shapes",
            image_size=32,
            batch_size=8,
            train_split="train[:32]",
            validation_split="validation[:16]",
            test_split="test[:16]",
            freeze_epochs=1,
            finetune_epochs=1,
        ),
        export=False,  # show reads the logs and model.keras, never the SavedModel
    )
    return root


def start(kind, out, *args):
    return start_program(
        ["-m", "trainers.show", kind, f"--out={out}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        extras=True,  # matplotlib
    )


def show_in_process(kind, out, *args, capsys):
    """``python -m trainers.show KIND --out=OUT ARGS`` in this process: (exit status, stdout, stderr)."""
    return program_in_process("trainers.show", [kind, f"--out={out}", *args], capsys)


def test_each_kind_writes_a_png_of_the_expected_size_that_is_not_blank(tmp_path, tiny_run, capsys):
    photo = tmp_path / "photo.png"
    pixels = np.zeros((40, 50, 3), np.uint8)
    pixels[10:30, 24:27] = 255  # a vertical white line
    tf.io.write_file(str(photo), tf.io.encode_png(pixels))
    cases = {  # name: (command, the PNGs it writes with their rows of images)
        "filters": (["filters", photo, photo], {"filters": 2, "filters_zoom": 2, "filters_kernels": 1}),
        "chapter": (["filters"], {"filters": 2, "filters_zoom": 2, "filters_kernels": 1}),  # its two photos
        "pooling": (["pooling", photo], {"pooling": 1}),
        "transpose": (["transpose"], {"transpose": 2}),
        "transpose_own": (["transpose", photo], {"transpose": 1}),
        "dataset": (
            ["dataset", "--head=localize", "--augment=crop,flip", "--image_size=48", "--count=4"],
            {"dataset": 1},
        ),
        "dataset_mixed": (["dataset", "--augment=mixup,cutmix,erase", "--image_size=32", "--count=4"], {"dataset": 1}),
        "predictions": (["predictions", f"--model_path={tiny_run}", "--count=4"], {"predictions": 1}),
        "pr": (["pr", f"--model_path={tiny_run}"], {"pr": 1}),
        "confusion": (["confusion", f"--model_path={tiny_run}"], {"confusion": 1}),
        "history": (["history", tiny_run], {"history": 1}),
    }
    for name, (command, _) in cases.items():
        status, stdout, stderr = show_in_process(command[0], tmp_path / name, *command[1:], capsys=capsys)
        assert status == 0, (name, stderr[-3000:])
        written = {
            os.path.basename(line)[: -len(".png")]: line for line in stdout.splitlines() if line.endswith(".png")
        }
        assert set(written) == set(cases[name][1]), (name, stdout)
        for figure, rows in cases[name][1].items():
            image = tf.io.decode_png(tf.io.read_file(written[figure])).numpy()
            assert image.shape[:2] == show.figure_size(figure, rows), (name, figure, image.shape)
            assert image[..., :3].std() > 5, f"{name}: {figure} is blank"
        if name == "pooling":  # a small image: the middle third, not the chapter's window
            assert "global average pooling of each window (R, G, B):\n  photo.png        [13:26, 16:33]" in stdout
        if name == "transpose_own":
            assert "(1, 224, 224, 3) -> (1, 449, 449, 5)" in stdout
        if name == "pr":
            assert "mAP@0.5 (VOC 2007, 11 points) on test[:16]:" in stdout
        if name == "confusion":  # the run's own report, printed: the same matrix as metrics.json
            recorded = json.load(open(tiny_run / "metrics.json"))["report"]["confusion_matrix"]
            printed = [line.split()[1:] for line in stdout.splitlines()[-6:-1]]
            assert [[int(v) for v in row] for row in printed] == recorded


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, tiny_run, capsys):
    """Each case in process; the first also as the program in a process of its own."""
    (tmp_path / "notes.jpg").write_text("not an image")
    classifier = tmp_path / "classifier.keras"
    zoo.build("fashion_cnn", num_classes=3, input_shape=(28, 28, 1)).save(classifier)
    (tmp_path / "empty_run").mkdir()
    other_classes = (
        "--dataset=shapes has 5 classes but the model predicts 3: give the dataset it was trained on (--dataset)"
    )
    cases = [
        (["filters", tmp_path / "missing.jpg"], "image '" + str(tmp_path / "missing.jpg") + "' does not exist"),
        (["pooling", tmp_path / "notes.jpg"], "notes.jpg' is not a JPEG, PNG, GIF or BMP image"),
        (["history", tmp_path / "empty_run"], "empty_run has no TensorBoard logs"),
        (
            ["pr", f"--model_path={classifier}", "--dataset=shapes"],
            "the model has no box head; pr needs a localize model",
        ),
        (["sketch"], "unknown figure 'sketch'; accepted: filters, pooling, transpose, dataset, predictions, pr"),
        (["predictions"], "--model_path is required"),
        (["transpose", tmp_path / "notes.jpg"], "notes.jpg' is not a JPEG, PNG, GIF or BMP image"),
        (["pr", "--precisions=0.5"], "--precisions=0.5: give 11 numbers in [0, 1]"),
        # A model scored on data of another number of classes (was an IndexError or a ValueError).
        (["predictions", f"--model_path={classifier}", "--dataset=shapes"], other_classes),
        (["confusion", f"--model_path={classifier}", "--dataset=shapes"], other_classes),
        # An --out that cannot be a folder (was a traceback from os.makedirs, after the drawing).
        (["filters", f"--out={tmp_path / 'notes.jpg'}"], f"{tmp_path / 'notes.jpg'} is a file, not a folder"),
    ]
    process = start(*cases[0][0][:1], tmp_path / "out", *cases[0][0][1:])
    checked = 0
    for command, message in cases:
        status, _, stderr = show_in_process(command[0], tmp_path / "out", *command[1:], capsys=capsys)
        assert status == 2, (message, stderr[-2000:])
        assert message in stderr.strip().splitlines()[-1], (message, stderr[-2000:])
        checked += 1
    assert checked == len(cases) == 11
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 2 and cases[0][1] in stderr.strip().splitlines()[-1], stderr[-2000:]
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_without_matplotlib_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(UserError, match=r"figures need matplotlib: pip install '\.\[figures\]'"):
        show.show("filters", str(tmp_path))
    assert not (tmp_path / "filters.png").exists()


def test_data_with_other_class_names_is_scored_with_a_warning_naming_both(tiny_run, capsys):
    saved = open_saved(str(tiny_run))
    ours = types.SimpleNamespace(num_classes=5, class_names=shapes.CLASS_NAMES)
    theirs = types.SimpleNamespace(num_classes=5, class_names=("a", "b", "c", "d", "e"))
    assert saved.data_mismatch(ours) is None and saved.class_names_note(ours) is None
    assert saved.data_mismatch(theirs) is None
    assert saved.class_names_note(theirs) == (
        f"the data's classes (a, b, c, d, e) are not the model's ({', '.join(shapes.CLASS_NAMES)}); they are "
        "paired in that order"
    )
