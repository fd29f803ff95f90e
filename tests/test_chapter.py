"""Chapter 14's own figures and numbers, made by the library from the chapter's two photos.

The photos are scikit-learn's sample images (china.jpg, flower.jpg), as in the chapter. The
expected numbers are computed here from the photos, independently of the code under test; where
the chapter prints a value, it is checked too, as the figure a reader compares against.
"""

import os
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import pipelines
import zoo
from tests.conftest import program_in_process
from trainers import predict
from trainers.metrics import interpolated_precisions, mean_average_precision
from zoo.filters import CHAPTER_WINDOW
from zoo.transposed_conv import transposed_conv_example

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the chapter prints, to the digits it prints.
CHAPTER_GLOBAL_AVERAGES = [[0.2789, 0.2251, 0.2097], [0.5129, 0.4595, 0.3342]]
CHAPTER_PRECISIONS = [0.91, 0.94, 0.96, 0.94, 0.95, 0.92, 0.80, 0.60, 0.45, 0.20, 0.10]
CHAPTER_MAP = 0.7136
CHAPTER_RESNET50_TOP3 = {  # decode_predictions(top=3) of the pretrained ResNet-50, in percent
    "china.jpg": [("bell_cote", 82.35), ("palace", 6.75), ("monastery", 4.19)],
    "flower.jpg": [("honeycomb", 49.83)],
}
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"


def run(capsys, module, *args):
    """``python -m MODULE ARGS``, in this process: `program_in_process`."""
    return program_in_process(module, args, capsys)


def test_the_photos_are_the_chapters():
    photos = pipelines.sample_photos()
    assert photos.shape == (2, 427, 640, 3) and photos.dtype == np.float32
    assert 0 <= photos.min() and photos.max() <= 1
    # The files the commands read hold the same pixels (JPEGs decoded as Pillow decodes them).
    for path, photo in zip(pipelines.sample_photo_paths(), photos):
        decoded = pipelines.load_images([path], None, 3, central_crop=False, exact_jpeg=True)[0].numpy()
        np.testing.assert_array_equal(decoded, np.round(photo * 255))


def test_without_scikit_learn_the_photos_are_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(pipelines.DataError, match=r"come with scikit-learn: pip install scikit-learn"):
        pipelines.sample_photo_paths()


@pytest.mark.slow
def test_pooling_prints_the_global_averages_of_the_chapters_window(tmp_path, capsys):
    windows = pipelines.sample_photos()[:, CHAPTER_WINDOW[0], CHAPTER_WINDOW[1]]
    assert windows.shape == (2, 70, 120, 3)
    expected = windows.astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_allclose(expected, CHAPTER_GLOBAL_AVERAGES, atol=5e-5)  # the chapter's printout
    shown = run(capsys, "trainers.show", "pooling", f"--out={tmp_path}")
    assert shown.returncode == 0, shown.stderr[-2000:]
    printed = {}
    for line in shown.stdout.splitlines():
        if line.strip().startswith(("china.jpg", "flower.jpg")):
            name, rest = line.split(maxsplit=1)
            assert "[150:220, 130:250]" in rest
            printed[name] = [float(v) for v in rest.rsplit("[", 1)[1].rstrip("]").split(",")]
    np.testing.assert_allclose([printed["china.jpg"], printed["flower.jpg"]], expected, atol=5e-5)
    assert os.path.exists(tmp_path / "pooling.png")


def test_transposed_convolution_by_hand_equals_the_layer():
    images = tf.image.resize(pipelines.sample_photos(), (224, 224)).numpy()
    layer, output, manual = transposed_conv_example(images)
    assert output.shape == (2, 449, 449, 5)
    np.testing.assert_allclose(manual, output, atol=1e-5)
    # Seeded: the same kernel again.
    again, _, _ = transposed_conv_example(images[:1])
    np.testing.assert_array_equal(again.kernel.numpy(), layer.kernel.numpy())


def test_the_chapters_map_example():
    recalls = np.linspace(0, 1, 11)
    maximum = interpolated_precisions(CHAPTER_PRECISIONS, recalls)
    # The chapter's rule, spelled out: the largest precision at this recall or any higher one.
    expected = [max(CHAPTER_PRECISIONS[i:]) for i in range(11)]
    np.testing.assert_allclose(maximum, expected)
    assert round(float(maximum.mean()), 4) == CHAPTER_MAP
    # The same function is what mean_average_precision averages: one class, detections whose
    # hits make a curve, whose AP is the mean of its interpolated precisions.
    truth = [{"boxes": [[0, 0, 1, 1]], "classes": [0]}] * 3
    found = [{"boxes": [[0, 0, 1, 1], [0, 0, 0.1, 0.1]], "classes": [0, 0], "scores": [0.9, 0.95]}] * 3
    result = mean_average_precision(truth, found)
    recall, precision = result.recall[0], result.precision[0]
    np.testing.assert_allclose(result.interpolated[0], interpolated_precisions(precision, recall))
    assert result.mean == pytest.approx(float(interpolated_precisions(precision, recall).mean()))
    with pytest.raises(ValueError, match=r"recall_points must be 11, 101 or None, received 7"):
        interpolated_precisions(CHAPTER_PRECISIONS, recalls, recall_points=7)


@pytest.mark.slow
def test_show_pr_draws_the_chapters_example_and_refuses_a_bad_list(tmp_path, capsys):
    shown = run(
        capsys, "trainers.show", "pr", f"--out={tmp_path}", "--precisions=" + ",".join(map(str, CHAPTER_PRECISIONS))
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "mAP (mean of the maximum precisions): 0.7136" in shown.stdout
    assert "maximum precision: 0.96 0.96 0.96 0.95 0.95 0.92 0.80" in shown.stdout
    for bad in ("0.9,0.8", "0.91,0.94,0.96,0.94,0.95,0.92,0.80,0.60,0.45,0.20,1.5", "a,b,c,d,e,f,g,h,i,j,k"):
        refused = run(capsys, "trainers.show", "pr", f"--out={tmp_path / 'bad'}", f"--precisions={bad}")
        assert refused.returncode == 2
        assert (
            refused.stderr.strip().splitlines()[-1].startswith(f"error: --precisions={bad}: give 11 numbers in [0, 1]")
        )
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / "bad").exists()


def _write_legacy_weights(model, path):
    """``model``'s weights in the layout of the ImageNet files Keras downloads (Keras 2's
    weights-only HDF5: layer_names on the root, weight_names and datasets per layer)."""
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        file.attrs["backend"] = b"tensorflow"
        file.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = file.create_group(layer.name)
            names = [f"{layer.name}/{weight.name}:0".encode() for weight in layer.weights]
            group.attrs["weight_names"] = names
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name.decode(), data=value)


@pytest.mark.slow
def test_predict_prepares_the_photos_as_the_chapter_does(tmp_path, capsys):
    """The chapter: resize the whole photo to 224x224, preprocess_input(x * 255), predict; here
    the zoo's ResNet-50 with the same weights, through predict's own loading."""
    plain = keras.applications.ResNet50(weights=None)
    path = tmp_path / "plain_resnet50.weights.h5"
    plain.save_weights(path)
    model = predict.build_pretrained("resnet50", str(path), None)
    ours = model.predict(predict.model_inputs(model, pipelines.sample_photo_paths(), False, pretrained=True), verbose=0)
    images_resized = tf.image.resize(pipelines.sample_photos(), [224, 224])
    inputs = keras.applications.resnet50.preprocess_input(images_resized * 255)
    theirs = plain.predict(inputs, verbose=0)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert ours.max() > 0.01  # random weights still give a far from uniform answer: a real check
    # The command: the chapter's photos by default, the top classes in the chapter's format.
    printed = run(capsys, "trainers.predict", "--model=resnet50", f"--weights={path}", "--chapter_photos", "--top_k=2")
    assert printed.returncode == 0, printed.stderr[-2000:]
    rows = [line.split() for line in printed.stdout.splitlines() if line.strip().endswith("%")]
    assert len(rows) == 4  # 2 photos x top 2
    for photo in range(2):
        class_id, percent = rows[2 * photo][0], float(rows[2 * photo][-1].rstrip("%"))
        if class_id.isdigit():  # offline: class ids (with ImageNet's index in Keras's cache: WordNet ids)
            assert int(class_id) == int(np.argmax(theirs[photo]))
        assert percent == pytest.approx(100 * float(theirs[photo].max()), abs=0.006)


@pytest.mark.slow
def test_weights_files_a_user_has_load_into_the_zoo_models(tmp_path, capsys):
    images = np.random.default_rng(0).uniform(0, 255, (2, 71, 71, 3)).astype("float32")
    # The ImageNet file's own layout, and save_weights of a plain application: the same numbers.
    resnet = keras.applications.ResNet50(weights=None, input_shape=(71, 71, 3))
    legacy, native = tmp_path / IMAGENET_FILE, tmp_path / "resnet50.weights.h5"
    _write_legacy_weights(resnet, legacy)
    resnet.save_weights(native)
    want = resnet(keras.applications.resnet50.preprocess_input(images.copy()))
    for path in (legacy, native):
        model = zoo.build("resnet50", num_classes=1000, input_shape=(71, 71, 3), weights=path)
        np.testing.assert_allclose(model(images), want, rtol=1e-4, atol=1e-6, err_msg=str(path))
    xception = keras.applications.Xception(weights=None, input_shape=(71, 71, 3))
    native_x = tmp_path / "xception.weights.h5"
    xception.save_weights(native_x)
    model = zoo.build("xception", num_classes=1000, input_shape=(71, 71, 3), weights=native_x)
    np.testing.assert_allclose(model(images), xception(images / 127.5 - 1), rtol=1e-4, atol=1e-6)
    # Without its top, it still starts a transfer-learning base.
    notop = keras.applications.Xception(weights=None, include_top=False)
    native_notop = tmp_path / "xception_notop.weights.h5"
    notop.save_weights(native_notop)
    transfer = zoo.build("xception", num_classes=5, input_shape=(71, 71, 3), weights=native_notop)
    for got, want in zip(
        zoo.backbone_of(transfer).get_layer("block14_sepconv2").get_weights(),
        notop.get_layer("block14_sepconv2").get_weights(),
    ):
        np.testing.assert_array_equal(got, want)
    # A file that does not fit is one line naming it, from the command as from the library.
    with pytest.raises(ValueError, match=r"is a plain Xception without its top") as error:
        zoo.build("xception", num_classes=1000, input_shape=(71, 71, 3), weights=native_notop, imagenet_top=True)
    assert "\n" not in str(error.value)
    wrong = run(capsys, "trainers.predict", "--model=xception", f"--weights={native}", "--chapter_photos")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    last = wrong.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --model=xception --weights={native}: weights file")
    assert "was not saved by a plain keras.applications.Xception" in last


@pytest.mark.skipif(
    not os.path.exists(os.path.expanduser(f"~/.keras/models/{IMAGENET_FILE}"))
    or not os.path.exists(os.path.expanduser("~/.keras/models/imagenet_class_index.json")),
    reason=f"the ImageNet weights are not in Keras's cache (~/.keras/models/{IMAGENET_FILE} and "
    "imagenet_class_index.json); keras.applications.ResNet50(weights='imagenet') downloads them",
)
def test_pretrained_resnet50_gives_the_chapters_predictions(capsys):
    printed = run(capsys, "trainers.predict", "--model=resnet50", "--weights=imagenet", "--chapter_photos", "--top_k=3")
    assert printed.returncode == 0, printed.stderr[-2000:]
    found, current = {}, None
    for line in printed.stdout.splitlines():
        if line.endswith((".jpg", ".png")):
            current = os.path.basename(line)
            found[current] = []
        elif current and line.strip().endswith("%"):
            _, name, percent = line.split()[0], line.split()[2], float(line.split()[-1].rstrip("%"))
            found[current].append((name, percent))
    for photo, top in CHAPTER_RESNET50_TOP3.items():
        for (name, percent), (got_name, got_percent) in zip(top, found[photo]):
            assert got_name == name, (photo, found[photo])
            assert abs(got_percent - percent) <= 0.1, (photo, found[photo])


NOTEBOOK = os.path.join(REPO, "docs", "chapter14.ipynb")


def test_the_notebook_keeps_its_outputs():
    """It reads like the chapter on any notebook viewer: every code cell was run, in order."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the test extra (pip install -e '.[test]')")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert all(cell.outputs for cell in cells)
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat comes with the test extra (pip install -e '.[test]')")
    nbclient = pytest.importorskip("nbclient", reason="nbclient comes with the test extra (pip install -e '.[test]')")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    text = "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "[0.2789, 0.2251, 0.2097]" in text and "[0.5129, 0.4595, 0.3342]" in text
    assert "0.7136" in text and "(2, 449, 449, 5) largest difference:" in text
    assert "21,306,826 parameters" in text
