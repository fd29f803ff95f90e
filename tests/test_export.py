"""trainers.export: artifacts that take raw pixels, checked by running them in their own runtime,
and trainers.predict on them."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import trainers.training
import zoo
from pipelines import ops, shapes
from tests.conftest import TINY, program_in_process, run_program
from trainers import deploy
from trainers.config import TrainConfig
from trainers.saved import open_saved

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(program, *args):
    """``python -m trainers.PROGRAM ARGS`` (or ``python SCRIPT ARGS`` for a path) from the repository."""
    command = [program] if program.endswith(".py") else ["-m", f"trainers.{program}"]
    return run_program([*command, *args])


@pytest.fixture(scope="module")
def localize_run(tmp_path_factory):
    """A tiny trained box model whose evaluation crops (it trained on random crops)."""
    config = TrainConfig(
        model_dir=str(tmp_path_factory.mktemp("export") / "run"),
        model="fashion_cnn",
        head="localize",
        epochs=1,
        augment=("crop", "flip"),
        **{**TINY, "test_split": "test[:16]"},
    )
    return trainers.training.train(config).run.root


# ------------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "format, quantize, outputs, head, message",
    [
        ("tflite", "int4", None, None, "--quantize=int4: unknown quantization; accepted: none, float16, dynamic, int8"),
        ("onnx", "int8", None, None, "--quantize=int8 applies to --format=tflite only (received --format=onnx)"),
        ("saved_model", "none", "class,mask", None, "--outputs=class,mask: accepted: 'class' or 'class,bbox'"),
        (
            "tflite",
            "none",
            "class,bbox",
            "classify",
            "--outputs=class,bbox: the model has no box head (it classifies only); accepted: class",
        ),
        ("keras2", "none", None, None, "--format=keras2: unknown format; accepted: saved_model, tflite, onnx"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_value(format, quantize, outputs, head, message):
    with pytest.raises(deploy.ExportError) as caught:
        deploy.check_request(format, quantize, outputs, head)
    assert str(caught.value) == message


def test_an_artifact_file_must_be_named_as_its_format_is():
    with pytest.raises(deploy.ExportError) as caught:
        deploy.check_output_name("out/model.bin", "tflite")
    assert str(caught.value) == "--output=out/model.bin: a tflite artifact's name must end in .tflite"
    with pytest.raises(deploy.ExportError, match=r"must end in \.onnx"):
        deploy.check_output_name("model.tflite", "onnx")
    deploy.check_output_name("anything", "saved_model")  # a folder


def test_outputs_default_to_what_the_model_has_and_may_drop_the_box():
    assert deploy.check_request("onnx", "none", None, "localize") == ("class", "bbox")
    assert deploy.check_request("onnx", "none", "class", "localize") == ("class",)
    assert deploy.check_request("onnx", "none", None, "classify") == ("class",)


def test_names_of_artifacts_and_of_those_that_failed_their_check(tmp_path):
    model = str(tmp_path / "run" / "model.keras")
    folder = str(tmp_path / "run" / "deploy")
    assert deploy.default_output(model, "tflite", "int8") == os.path.join(folder, "model-int8.tflite")
    assert deploy.default_output(model, "tflite") == os.path.join(folder, "model.tflite")
    assert deploy.default_output(model, "saved_model") == os.path.join(folder, "saved_model")
    assert deploy.failed_name("/d/model-int8.tflite") == "/d/model-int8.failed-check.tflite"
    assert deploy.failed_name("/d/saved_model/") == "/d/saved_model.failed-check"
    assert deploy.sidecar("/d/saved_model/") == "/d/saved_model.json"


def test_an_existing_path_that_is_not_ours_is_never_overwritten(tmp_path):
    theirs = tmp_path / "model.tflite"
    theirs.write_bytes(b"someone's model")
    with pytest.raises(deploy.ExportError, match=r"exists and is not an artifact of trainers.export"):
        deploy.check_destination(str(theirs))
    (tmp_path / "model.tflite.json").write_text(json.dumps({"producer": "someone else"}))
    with pytest.raises(deploy.ExportError):
        deploy.check_destination(str(theirs))
    (tmp_path / "model.tflite.json").write_text(json.dumps({"producer": deploy.PRODUCER}))
    deploy.check_destination(str(theirs))  # ours: may be replaced
    deploy.check_destination(str(tmp_path / "free.onnx"))
    assert theirs.read_bytes() == b"someone's model"


# ------------------------------------------------------------------------- the artifact model


def test_uncrop_box_undoes_crop_box():
    box = tf.constant([0.3, 0.4, 0.6, 0.7])
    window = ops.central_crop_window(60, 100)  # trims the longer side
    on_crop = ops.crop_box(box, *window, 60, 100)
    np.testing.assert_allclose(ops.uncrop_box(on_crop, *window, 60, 100), box, atol=1e-6)
    batch = tf.stack([on_crop, on_crop])
    np.testing.assert_allclose(ops.uncrop_box(batch, *window, 60, 100), tf.stack([box, box]), atol=1e-6)


def test_the_deployable_model_crops_resizes_and_puts_the_box_back_as_the_pipeline_does():
    model = zoo.build("fashion_cnn", num_classes=3, input_shape=(24, 24, 3), head="localize")
    raw = np.random.default_rng(0).uniform(0, 255, (1, 40, 64, 3)).astype(np.float32)  # wider than tall
    wrapped = deploy.deployable(model, central_crop=True, outputs=("class", "bbox"))
    got = wrapped(raw)
    # The evaluation pipeline's way: the central crop, then the resize, then the model.
    cropped, _ = ops.central_crop(raw[0])
    resized, _ = ops.resize(cropped, size=(24, 24))
    expected = model(resized[None])
    np.testing.assert_allclose(got["class"], expected["class"], atol=1e-5)
    window = ops.central_crop_window(40, 64)
    np.testing.assert_allclose(got["bbox"], ops.uncrop_box(expected["bbox"], *window, 40, 64), atol=1e-5)
    assert int(window[3]) < 64  # the crop did trim: the box really moved
    plain = deploy.deployable(model, central_crop=False, outputs=("class",))
    assert set(plain(raw)) == {"class"}


def test_a_mixed_precision_model_is_exported_from_a_float32_copy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = zoo.build("resnet18", num_classes=3, input_shape=(32, 32, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = deploy.float32_copy(model)
    assert copy is not model
    assert {layer.dtype_policy.name for layer in copy._flatten_layers() if hasattr(layer, "dtype_policy")} == {
        "float32"
    }
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(copy(images), model(images), atol=2e-2)
    plain = zoo.build("fashion_cnn", num_classes=3, input_shape=(16, 16, 1))
    assert deploy.float32_copy(plain) is plain


# ------------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("format, quantize", [("saved_model", "none"), ("tflite", "int8"), ("onnx", "none")])
def test_each_format_is_written_checked_by_running_it_and_predicts(localize_run, format, quantize, tmp_path):
    output = str(tmp_path / {"saved_model": "sm", "tflite": "m.tflite", "onnx": "m.onnx"}[format])
    result = deploy.export(
        localize_run, format, output=output, quantize=quantize, calibration_steps=1, progress=lambda line: None
    )
    assert result.path == output and os.path.exists(output) and result.passed
    meta = json.load(open(deploy.sidecar(output)))
    assert meta["producer"] == deploy.PRODUCER and meta["outputs"] == ["class", "bbox"]
    assert meta["central_crop"] is True and meta["check"]["examples"] == 16 and meta["check"]["passed"]
    check = result.check
    assert 0 <= check.accuracy <= 1 and 0 <= check.box_iou <= 1 and check.seconds_per_image > 0
    saved = open_saved(localize_run)
    # Same pixels, same preprocessing, same model; a run trained in mixed precision (the default on
    # CPUs with bfloat16 instructions) is exported from a float32 copy, which differs from the
    # bfloat16 Keras model by bfloat16's rounding (measured: 4e-4).
    tolerance = 0.05 if quantize == "int8" else 1e-4 if deploy.computes_in_float32(saved.model) else 1e-2
    assert check.max_probability_difference < tolerance

    # The artifact, loaded in its runtime, on an image of another size than the model's.
    image = shapes.render(3, height=48, width=80)["image"]
    artifact = deploy.Artifact.open(output)
    got = artifact(np.asarray(image, np.float32)[None])
    expected = deploy.deployable(saved.model, central_crop=True, outputs=("class", "bbox"))(
        np.asarray(image, np.float32)[None]
    )
    np.testing.assert_allclose(got["class"], expected["class"], atol=tolerance)
    np.testing.assert_allclose(got["bbox"], expected["bbox"], atol=tolerance)


@pytest.mark.slow
def test_the_programs_export_refuse_and_predict_with_the_artifact(localize_run, tmp_path, capsys):
    """The export as the program runs in a process; predict and the refusals in process (the
    programs' own parsers, mains and error handling)."""
    image = str(tmp_path / "wide.png")
    tf.io.write_file(image, tf.io.encode_png(tf.cast(shapes.render(5, height=40, width=72)["image"], tf.uint8)))
    out = run("export", f"--model_path={localize_run}", "--format=tflite")
    assert out.returncode == 0, out.stderr[-2000:]
    artifact = os.path.join(localize_run, "deploy", "model.tflite")
    assert f"written to {artifact}" in out.stdout
    assert "checked on 'test[:16]': 16 raw images" in out.stdout
    assert out.stdout.splitlines()[-1].lstrip().startswith("tflite ")

    # predict prints the same thing for the artifact as for the run (boxes on the whole image).
    _, from_run, _ = program_in_process("trainers.predict", [f"--model_path={localize_run}", image], capsys)
    status, from_artifact, err = program_in_process("trainers.predict", [f"--model_path={artifact}", image], capsys)
    assert status == 0, err[-2000:]
    run_lines, artifact_lines = from_run.splitlines(), from_artifact.splitlines()
    assert len(run_lines) == len(artifact_lines) == 5
    assert [line.split()[:3] for line in run_lines[1:4]] == [line.split()[:3] for line in artifact_lines[1:4]]
    run_box = [float(v) for v in run_lines[4].split("[")[-1].rstrip("]").split(",")]
    artifact_box = [float(v) for v in artifact_lines[4].split("[")[-1].rstrip("]").split(",")]
    np.testing.assert_allclose(artifact_box, run_box, atol=2e-3)

    # Refusals: one line each, status 2, nothing written.
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"not ours")
    empty = tmp_path / "empty"
    empty.mkdir()
    saved_model = os.path.join(localize_run, "export")  # what the trainer writes beside model.keras
    not_a_model, its_run = "not a run directory or a .keras file", f"its run directory is {localize_run}"
    refusals = [
        ("export", ["--format=onnx", f"--output={theirs}"], "exists and is not an artifact of trainers.export"),
        ("export", ["--format=tflite", "--quantize=int3"], "--quantize=int3: unknown quantization"),
        ("export", ["--format=pickle"], "--format=pickle: value should be one of"),
        ("export", [f"--model_path={empty}"], "no such model file"),
        ("predict", [f"--model_path={artifact}", "--central_crop", image], "is an exported model"),
        # The run's own SavedModel (export/) and an artifact are no Keras model for the programs
        # that read one; predict runs artifacts, but export/ has no sidecar.
        ("evaluate", [f"--model_path={saved_model}"], f"is a SavedModel folder, {not_a_model}; {its_run}"),
        # An empty slice is refused before anything is evaluated (it was a traceback).
        ("evaluate", ["--split=test[:0]"], "--split=test[:0]: split 'test[:0]' of 'shapes' holds no examples"),
        ("export", ["--format=onnx", "--check_split=test[:0]"], "split 'test[:0]' of 'shapes' holds no examples"),
        # evaluate's --output is checked before the evaluation (it was a traceback after it).
        ("evaluate", [f"--output={tmp_path}"], f"--output={tmp_path}: is a folder; give the JSON file to write"),
        ("evaluate", [f"--output={theirs}/m.json"], f"--output={theirs}/m.json: {theirs} is a file, not a folder"),
        ("export", [f"--model_path={artifact}", "--format=onnx"], f"is a TFLite file, {not_a_model}; {its_run}"),
        (
            "predict",
            [f"--model_path={saved_model}", image],
            f"{saved_model} is a SavedModel folder without the export.json that trainers.export writes beside "
            f"its artifacts; accepted: a run directory, a .keras file or an artifact of trainers.export; {its_run}",
        ),
    ]
    for program, args, message in refusals:
        model_path = [] if any(arg.startswith("--model_path=") for arg in args) else [f"--model_path={localize_run}"]
        status, _, err = program_in_process(f"trainers.{program}", [*model_path, *args], capsys)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert status == 2 and err.strip().splitlines() == errors and message in errors[0], (args, err[-2000:])
    assert theirs.read_bytes() == b"not ours"


def export_in_process(argv, capsys):
    """``python -m trainers.export ARGV`` in this process: (exit status, stdout, stderr)."""
    return program_in_process("trainers.export", argv, capsys)


@pytest.mark.slow
def test_an_artifact_that_loses_accuracy_is_kept_under_a_name_saying_so(localize_run, tmp_path, monkeypatch, capsys):
    """A conversion that loses 3 points, simulated by the check's result (the check itself is run
    for real in the tests above): exit status 1, the artifact under its failed-check name, and a
    good artifact already at the path left as it was."""
    real_check = deploy.check

    def losing(artifact, saved, split, max_accuracy_drop=deploy.DEFAULT_MAX_ACCURACY_DROP):
        result = real_check(artifact, saved, split, max_accuracy_drop)
        return dataclasses.replace(result, keras_accuracy=0.9, accuracy=0.87)

    output = str(tmp_path / "model.tflite")
    status, out, _ = export_in_process(
        [f"--model_path={localize_run}", "--format=tflite", f"--output={output}"], capsys
    )
    assert status == 0 and os.path.exists(output)
    good = open(output, "rb").read()
    monkeypatch.setattr(deploy, "check", losing)
    argv = [f"--model_path={localize_run}", "--format=tflite", "--quantize=dynamic", f"--output={output}"]
    status, out, err = export_in_process(argv, capsys)
    failed = str(tmp_path / "model.failed-check.tflite")
    assert status == 1
    assert err.strip() == (
        "error: the tflite dynamic artifact's accuracy is 3.00 points below the Keras model's (more than "
        f"--max_accuracy_drop=1); kept as {failed}"
    )
    assert os.path.exists(failed) and open(output, "rb").read() == good
    meta = json.load(open(deploy.sidecar(failed)))
    assert meta["check"]["passed"] is False and meta["quantization"] == "dynamic"
    status, _, _ = export_in_process([*argv, "--max_accuracy_drop=5"], capsys)
    assert status == 0 and open(output, "rb").read() != good  # ours: replaced


def test_a_bare_model_checked_on_data_of_other_classes_is_refused_in_one_line(tmp_path, capsys):
    model = zoo.build("fashion_cnn", num_classes=3, input_shape=(32, 32, 1))
    model.save(tmp_path / "three.keras")
    argv = [f"--model_path={tmp_path / 'three.keras'}", "--format=saved_model", "--check_split=test[:4]"]
    status, out, err = export_in_process(argv, capsys)  # a bare file: the defaults' dataset, shapes
    assert status == 2
    assert err.strip() == (
        "error: --check_split=test[:4]: --dataset=shapes has 5 classes but the model predicts 3: give the dataset "
        "it was trained on (--dataset), or --check_split=''"
    )
    assert not os.path.exists(tmp_path / "deploy" / "saved_model")
    assert [name for name in os.listdir(tmp_path / "deploy") if name.startswith(".export-")] == []


@pytest.mark.slow
def test_the_export_benchmark_prints_a_row_per_artifact_beside_the_keras_baseline(localize_run, tmp_path):
    script = os.path.join(REPO, "benchmarks", "export_table.py")
    result = run(script, f"--work={tmp_path}", "--formats=onnx", localize_run)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    table = lines[lines.index("| --- | --- | --- | --- | --- | --- | --- | --- |") + 1 :]
    assert len(table) == 2, result.stdout  # the Keras baseline and the one artifact
    assert table[0].startswith("| run | keras predict_on_batch |")
    cells = [cell.strip() for cell in table[-1].strip("|").split("|")]
    assert cells[1] == "onnx" and cells[2].endswith(" MB") and float(cells[6]) > 0 and float(cells[7]) > 0
    assert os.path.exists(tmp_path / "run" / "model.onnx")
