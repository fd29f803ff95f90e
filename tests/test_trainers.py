"""The trainer programs end to end, as a user runs them: subprocesses on tiny shapes data."""

import glob
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests import conftest
from tests.conftest import (
    as_flags,
    free_port,
    logged,
    program_env,
    program_in_process,
    run_program,
    start_program,
    train_in_process,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = as_flags(conftest.TINY)

pytestmark = pytest.mark.slow


def env(**extra):
    """`program_env`, the output unbuffered (tests read it line by line while a program runs)."""
    return program_env(PYTHONUNBUFFERED="1", **extra)


def run(program, *args, check=True, **extra_env):
    result = run_program(["-m", f"trainers.{program}", *args], PYTHONUNBUFFERED="1", **extra_env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{program} {args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def epoch_steps(log_dir, tag="epoch_loss"):
    return [step for step, _ in logged(log_dir, tag)]


def write_png(path, seed=0):
    from pipelines import shapes

    image = shapes.render(seed, height=32, width=32)["image"]
    tf.io.write_file(path, tf.io.encode_png(tf.cast(image, tf.uint8)))
    return path


DECAYED_CNN = [
    "--model=fashion_cnn",
    "--epochs=2",
    "--augment=crop,flip",
    "--optimizer=adam",
    "--learning_rate=0.001",
    "--lr_decay=0.5",
    *TINY,
]


def test_train_evaluate_predict_then_a_rerun_is_left_alone(tmp_path, capsys, caplog):
    """Training as the program runs in a process, end to end; evaluate, predict and the reruns in
    process (each program's own parser and main: `program_in_process`), where what is checked is
    what they say and leave."""
    model_dir = str(tmp_path / "run")
    out = run("train", f"--model_dir={model_dir}", *DECAYED_CNN)
    # Keras 2's decay, lr / (1 + decay * step), after 4 and 8 steps of 16 images.
    learning_rates = logged(os.path.join(model_dir, "logs", "train"), "epoch_learning_rate")
    assert [step for step, _ in learning_rates] == [0, 1]
    np.testing.assert_allclose([lr for _, lr in learning_rates], [0.001 / 3, 0.001 / 5], rtol=1e-4)
    for artifact in (
        "flags.txt",
        "model.keras",
        "export/saved_model.pb",
        "metrics.json",
        "class_names.json",
        "checkpoints/train.weights.h5",
    ):
        assert os.path.exists(os.path.join(model_dir, artifact)), artifact
    assert not os.path.exists(os.path.join(model_dir, "backup"))  # removed once finished
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert metrics["split"] == "test[:32]" and metrics["num_examples"] == 32 and 0 <= metrics["accuracy"] <= 1
    assert epoch_steps(os.path.join(model_dir, "logs", "train")) == [0, 1]
    assert epoch_steps(os.path.join(model_dir, "logs", "validation")) == [0, 1]
    assert glob.glob(os.path.join(model_dir, "logs", "train_images", "events.*"))
    assert "epoch 2 done" in out.stderr and "tensorboard --logdir" in out.stdout
    # The program's own INFO lines, not TensorFlow's SavedModel writer's (trainers.cli.quiet_libraries).
    assert "] data: shapes train[:64]" in out.stderr, out.stderr[-3000:]
    assert "fingerprint" not in out.stderr and "Sharding callback" not in out.stderr, out.stderr[-3000:]

    # The SavedModel serves raw pixels.
    served = tf.saved_model.load(os.path.join(model_dir, "export"))
    probabilities = served.serve(tf.zeros([2, 32, 32, 3]))
    assert probabilities.shape == (2, 5)

    # On its run directory, evaluate uses the run's settings (its test split, the central crop that
    # follows --augment=crop): the same numbers as metrics.json.
    output = tmp_path / "new" / "folder" / "eval.json"  # created
    status, evaluation, err = program_in_process(
        "trainers.evaluate", [f"--model_path={model_dir}", "--output", output], capsys
    )
    assert status == 0, err[-3000:]
    saved = json.load(open(output))
    assert saved["split"] == "test[:32]" and saved["dataset"] == "shapes"
    for key in ("accuracy", "loss"):
        assert saved[key] == pytest.approx(metrics[key], abs=1e-5), key
    assert "accuracy" in evaluation
    # The class report: in metrics.json and evaluate's JSON alike, printed by evaluate, and in
    # TensorBoard (the matrix as a picture, the report as tables).
    assert saved["report"] == metrics["report"]
    matrix = np.array(metrics["report"]["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == 32
    assert np.trace(matrix) / 32 == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert "top5_accuracy" not in metrics  # 5 classes: top-5 is always right
    assert "confusion matrix (rows: true class, columns: predicted" in evaluation
    assert re.search(r"^circle +\d\.\d{3} +\d\.\d{3} +\d\.\d{3} +\d+$", evaluation, re.M)
    evaluation_logs = os.path.join(model_dir, "logs", "evaluation")
    tags = {
        value.tag
        for path in glob.glob(os.path.join(evaluation_logs, "events.*"))
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
    }
    assert tags == {
        "confusion matrix (test[:32]; rows: true class)",
        "class report (test[:32])",
        "confusion matrix (test[:32])",
    }

    image = write_png(str(tmp_path / "shape.png"))
    status, prediction, err = program_in_process(
        "trainers.predict", [f"--model_path={model_dir}", "--top_k=2", image], capsys
    )
    assert status == 0, err[-3000:]
    lines = prediction.strip().splitlines()
    assert lines[0] == image and len(lines) == 3
    assert any(name in lines[1] for name in ("circle", "square", "triangle", "diamond", "cross"))
    assert lines[1].rstrip().endswith("%")

    status, again, _ = train_in_process([f"--model_dir={model_dir}", *DECAYED_CNN], capsys)
    assert status == 0 and "holds a finished run" in again
    assert epoch_steps(os.path.join(model_dir, "logs", "train")) == [0, 1]

    # --overwrite trains again from scratch, leaving nothing of the old run's logs.
    caplog.set_level("INFO")
    fresh = [f"--model_dir={model_dir}", *DECAYED_CNN, "--epochs=1", "--overwrite"]  # the last flag wins
    status, _, stderr = train_in_process(fresh, capsys)
    assert status == 0, stderr[-3000:]
    assert "epoch 1 done" in caplog.text
    assert epoch_steps(os.path.join(model_dir, "logs", "train")) == [0]


def test_mixed_precision_xla_and_steps_per_execution_on_cpu(tmp_path, capsys):
    # The GPU paths' switches, exercised on the CPU (bfloat16 there, emulated and slow without
    # AVX512_BF16: a narrow ResNet-18) so they at least run; in process, as the program runs them.
    model_dir = str(tmp_path / "run")
    status, _, stderr = train_in_process(
        [
            f"--model_dir={model_dir}",
            "--model=resnet18",
            '--model_options={"widths": [8, 8, 16, 16]}',
            "--epochs=1",
            "--mixed_precision",
            "--jit_compile",
            "--steps_per_execution=2",
            "--optimizer=adam",
            "--learning_rate=0.001",
            *TINY,
        ],
        capsys,
    )
    assert status == 0, stderr[-3000:]
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert np.isfinite(metrics["loss"])
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # the run's policy did not leak
    from trainers.saved import open_saved

    trained = open_saved(model_dir).model.get_layer("backbone").get_layer("stage1_unit1")
    assert trained.dtype_policy.name == "mixed_bfloat16"  # it trained in mixed precision


def test_two_phase_localize_on_two_replicas(tmp_path, capsys):
    initial = zoo.build("fashion_cnn", num_classes=5, input_shape=(32, 32, 3), head="localize")
    weights = str(tmp_path / "initial.weights.h5")
    initial.save_weights(weights)
    model_dir = str(tmp_path / "run")
    out = run(
        "train",
        f"--model_dir={model_dir}",
        "--model=fashion_cnn",
        "--head=localize",
        "--freeze_epochs=1",
        "--finetune_epochs=1",
        "--finetune_learning_rate=0.01",
        f"--weights={weights}",
        "--strategy=mirrored",
        "--logical_cpus=2",
        "--loss_weights=0.7,0.3",
        *TINY,
    )
    assert "with 2 replica(s)" in out.stderr
    assert "phase frozen" in out.stderr and "phase finetune" in out.stderr

    def backbone_kernels(path):
        model = zoo.build("fashion_cnn", num_classes=5, input_shape=(32, 32, 3), head="localize")
        _load_quietly(model, path)
        backbone = zoo.backbone_of(model)
        return [layer.kernel.numpy() for layer in backbone.layers if hasattr(layer, "kernel")]

    start, frozen, finetuned = (
        backbone_kernels(p)
        for p in (
            weights,
            os.path.join(model_dir, "checkpoints", "frozen.weights.h5"),
            os.path.join(model_dir, "checkpoints", "finetune.weights.h5"),
        )
    )
    for a, b in zip(start, frozen):
        np.testing.assert_array_equal(a, b)  # the frozen phase left the backbone alone
    assert any(not np.array_equal(a, b) for a, b in zip(frozen, finetuned))

    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert {"class_accuracy", "bbox_mse", "loss"} <= set(metrics)
    # evaluate weights the losses as the run did (0.7/0.3), so its loss is the run's.
    # (evaluate and predict in process: the programs' own parsers and mains.)
    status, _, err = program_in_process(
        "trainers.evaluate", [f"--model_path={model_dir}", "--output", tmp_path / "eval.json"], capsys
    )
    assert status == 0, err[-3000:]
    evaluated = json.load(open(tmp_path / "eval.json"))
    for key in ("loss", "class_accuracy", "bbox_mse"):
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-5), key
    image = write_png(str(tmp_path / "shape.png"))
    status, prediction, err = program_in_process("trainers.predict", [f"--model_path={model_dir}", image], capsys)
    assert status == 0 and "box [ymin, xmin, ymax, xmax] = [" in prediction, err[-3000:]

    # flags.txt reruns the same run as is.
    status, stdout, _ = train_in_process([f"--flagfile={os.path.join(model_dir, 'flags.txt')}"], capsys)
    assert status == 0 and "holds a finished run" in stdout


def _load_quietly(model, path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(path)


def test_kill_9_then_rerun_resumes_in_the_right_phase(tmp_path, capsys, caplog):
    """kill -9 of the program mid-phase; the rerun in process (it reads what the kill left)."""
    model_dir = str(tmp_path / "run")
    args = [
        "train",
        f"--model_dir={model_dir}",
        "--model=fashion_cnn",
        "--freeze_epochs=2",
        "--finetune_epochs=4",
        "--dataset=shapes",
        "--train_split=train[:256]",
        "--validation_split=",
        "--test_split=test[:32]",
        "--image_size=32",
        "--batch_size=32",
    ]
    metadata = os.path.join(model_dir, "backup", "finetune", "training_metadata.json")
    process = start_program(
        ["-m", f"trainers.{args[0]}", *args[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        PYTHONUNBUFFERED="1",
    )
    # The epoch's summary line comes after its backup is written (BackupAndRestore runs first):
    # kill on the line for the third epoch, an event the trainer reports, not after a sleep.
    for line in process.stderr:
        if "[finetune] epoch 3 done" in line:
            break
    assert process.poll() is None, "training finished before it could be killed; make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    done_epochs = json.load(open(metadata))["epoch"]
    assert 3 <= done_epochs < 6

    caplog.set_level("INFO")
    status, out, err = train_in_process(args[1:], capsys)
    assert status == 0, err[-3000:]
    log = out + caplog.text
    assert "phase finetune: epochs" in log and "phase frozen" not in log  # the finished phase is not trained again
    assert f"Epoch {done_epochs + 1}/6" in log and f"Epoch {done_epochs}/6" not in log
    steps = epoch_steps(os.path.join(model_dir, "logs", "train"))
    assert len(steps) == len(set(steps)), f"epochs logged twice: {steps}"
    assert steps[-1] == 5
    assert json.load(open(os.path.join(model_dir, "state.json")))["finished"]


def test_a_crash_after_training_but_before_export_finishes_from_the_checkpoint(tmp_path, capsys, caplog):
    model_dir = str(tmp_path / "run")
    args = [f"--model_dir={model_dir}", "--model=fashion_cnn", "--epochs=1", *TINY]
    status, _, err = train_in_process(args, capsys)
    assert status == 0, err[-3000:]
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    # What a kill during the final save leaves: trained phases, no artifacts, not finished.
    for name in ("model.keras", "metrics.json"):
        os.remove(os.path.join(model_dir, name))
    state_path = os.path.join(model_dir, "state.json")
    json.dump(dict(json.load(open(state_path)), finished=False), open(state_path, "w"))
    caplog.set_level("INFO")
    status, out, err = train_in_process(args, capsys)
    assert status == 0, err[-3000:]
    assert "resuming from" in caplog.text and "Epoch 1/1" not in out
    assert json.load(open(os.path.join(model_dir, "metrics.json")))["loss"] == pytest.approx(metrics["loss"], rel=1e-5)


def run_two_workers(model_dir, *args, timeout=300, **extra_env):
    """Two local `trainers.train` workers of one multi-worker run: their exit codes and outputs."""
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            start_program(
                ["-m", "trainers.train", f"--model_dir={model_dir}", "--strategy=multi_worker", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                PYTHONUNBUFFERED="1",
                TF_CONFIG=tf_config,
                **extra_env,
            )
        )
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:  # out of step: one waits for the other forever
                p.kill()
                p.communicate()
    return [p.returncode for p in processes], outputs


def final_checksums(outputs):
    return [line.rsplit(" ", 1)[-1] for out in outputs for line in out.splitlines() if "final weights checksum" in line]


def test_killed_workers_resume_in_step_when_one_backup_is_damaged(tmp_path):
    # Both workers die after their first epoch's backup; the chief's was cut off mid-write. Each
    # resuming from its own folder, the chief would restart the phase while worker 1 went on from
    # epoch 2, and they would wait on each other for ever. They restart the phase together, and
    # finish as two local workers of one run do: identical weights, the chief's model saved.
    run = tmp_path / "run"
    settings = ("--model=fashion_cnn", "--epochs=2", *TINY)
    codes, outputs = run_two_workers(run, *settings, ZOO_FAULT_POINT="first_backup")
    assert codes == [-signal.SIGKILL, -signal.SIGKILL], outputs[0][-2000:] + outputs[1][-2000:]
    chief_weights = run / "backup" / "train" / "chief" / "latest.weights.h5"
    assert (run / "backup" / "train" / "worker1" / "latest.weights.h5").exists()
    chief_weights.write_bytes(chief_weights.read_bytes()[:100])
    codes, outputs = run_two_workers(run, *settings, timeout=120)
    assert codes == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    for out in outputs:
        assert "hold no point every worker can resume from; restarting the phase" in out
    checksums = final_checksums(outputs)
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert "chief: True" in outputs[0] and "chief: False" in outputs[1]
    assert (run / "model.keras").exists()


def test_a_worker_that_never_starts_is_named_after_peer_timeout(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    result = run_program(
        [
            "-m",
            "trainers.train",
            f"--model_dir={tmp_path / 'run'}",
            "--strategy=multi_worker",
            "--peer_timeout=3",
            *TINY,
        ],
        timeout=120,  # without the timeout the strategy waits an hour for the missing worker
        TF_CONFIG=tf_config,
    )
    assert result.returncode == -signal.SIGKILL  # the one way to end the strategy's blocked call
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: multi_worker: worker 1 at 127.0.0.1:{ports[1]} did not join within 3 s; start it with its own "
        "TF_CONFIG, or check the address (peer_timeout sets the wait)"
    ), result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "run")


BAD_FLAGS = [
    (["--epochs=0"], "flag --epochs=0"),
    (["--optimizer=adagrad"], "flag --optimizer=adagrad: value should be one of"),
    (["--model=resnet99"], "flag --model=resnet99"),
    (["--head=segment"], "flag --head=segment"),
    (["--augment=rotate"], "--augment=rotate: accepted: crop, flip"),
    (["--loss_weights=1,2,3"], "--loss_weights=1.0,2.0,3.0: must be two non-negative numbers"),
    (["--learning_rate=-1"], "flag --learning_rate=-1"),
    (["--strategy=tpu"], "flag --strategy=tpu"),
    (["--lr_decay=0.1", "--lr_schedule=cosine"], "--lr_schedule=cosine: and lr_decay are two schedules"),
    (["--dataset=no_such_set"], "--dataset=no_such_set: unknown dataset 'no_such_set'"),
    (["--dataset=dir:/no/such/folder"], "image folder '/no/such/folder' does not exist"),
    (["--model=xception"], "--model=xception: cannot be built for dataset 'shapes' (images (32, 32, 3)"),
    (["--train_split=train[:8]"], "--batch_size=16: is larger than train_split='train[:8]' (8 examples)"),
    (["--train_split=train[:0]"], "--dataset=shapes: split 'train[:0]' of 'shapes' holds no examples; give a split"),
    (
        ["--validation_split=validation[:0]"],
        "--validation_split=validation[:0]: split 'validation[:0]' of 'shapes' holds",
    ),
    (["--test_split=test[:0]"], "--test_split=test[:0]: split 'test[:0]' of 'shapes' holds no examples"),
    (["--seed=-5"], "flag --seed=-5: -5 is not an integer in the range [0, 2147483647]"),
    (["--unfreeze_from=block1"], "--unfreeze_from=block1: needs freeze_epochs and finetune_epochs"),
    (["--strategy=multi_worker"], "needs TF_CONFIG"),
    (["--test_split=tset"], "--test_split=tset: bad split 'tset'"),
    (["--validation_split=train[:5]+nope"], "--validation_split=train[:5]+nope: bad split"),
    (["--epochs=3", "--freeze_epochs=1"], "--epochs=3: is for single-phase runs"),
    (["stray_argument"], "unexpected arguments ['stray_argument']"),
]


def test_every_bad_flag_gives_one_line_and_a_nonzero_exit(tmp_path, capsys, monkeypatch):
    """Each case in process (the program's own parser and main); three of them as the program too,
    which proves the same line and exit status come out of a real process, without a traceback."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    as_processes = {"--epochs=0", "--loss_weights=1,2,3", "--dataset=dir:/no/such/folder"}
    processes = {}
    for index, (flags, _) in enumerate(BAD_FLAGS):
        if flags[0] in as_processes:
            processes[index] = start_program(
                ["-m", "trainers.train", f"--model_dir={tmp_path / f'process{index}'}", *TINY, *flags],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                TF_CONFIG=None,
            )
    checked = 0
    for index, (flags, expected) in enumerate(BAD_FLAGS):
        status, _, stderr = train_in_process([f"--model_dir={tmp_path / f'run{index}'}", *TINY, *flags], capsys)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert status == 2, (flags, stderr[-2000:])
        assert len(errors) == 1 and expected in errors[0], (flags, errors)
        checked += 1
    assert checked == len(BAD_FLAGS) and len(processes) == len(as_processes)
    for index, process in processes.items():
        flags, expected = BAD_FLAGS[index]
        _, stderr = process.communicate(timeout=300)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert process.returncode == 2, (flags, stderr[-2000:])
        assert len(errors) == 1 and expected in errors[0], (flags, errors)
        assert "Traceback" not in stderr, (flags, stderr[-2000:])
    assert not [path for path in os.listdir(tmp_path) if path.startswith(("run", "process"))]


def test_help_shows_the_programs_doc_and_flags_as_a_module_and_as_an_installed_script():
    # absl's --help lists the __main__ module's own flags: the config flags defined through
    # trainers.cli belong to the program, and the installed script runs the program as -m does.
    as_module = run("evaluate", "--help", check=False)
    for text in ("Evaluate a saved model on a split", "--model_path:", "--dataset:", "--batch_size:"):
        assert text in as_module.stdout, text
    script = os.path.join(os.path.dirname(sys.executable), "zoo-evaluate")
    if not os.path.exists(script):
        pytest.skip(f"{script} is not installed (pip install -e . installs it)")
    as_script = subprocess.run([script, "--help"], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert as_script.stdout.split("flags:", 1)[1] == as_module.stdout.split("flags:", 1)[1]


def test_other_programs_reject_bad_input_in_one_line(tmp_path, capsys):
    """Two cases as the programs in processes of their own (the line, the status, no traceback),
    the rest in process."""
    missing = run("evaluate", "--model_path=/no/such/run", check=False)
    assert missing.returncode == 2 and "error: --model_path=/no/such/run: no such model file" in missing.stderr
    no_images = run("predict", "--model=resnet50", check=False)
    assert no_images.returncode == 2 and "give one or more image files" in no_images.stderr
    assert not any("Traceback" in out.stderr for out in (missing, no_images))
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    image = write_png(str(tmp_path / "shape.png"))
    corrupt = tmp_path / "broken.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    cases = [
        ("predict", ["--model=resnet50", not_an_image], "is not a JPEG, PNG, GIF or BMP image"),
        (
            "predict",
            ["--model=resnet18", "--weights=imagenet", image],
            "--model=resnet18 has no pretrained ImageNet classifier to predict with; accepted: --model=resnet50, ",
        ),
        ("predict", ["--model=resnet50", tmp_path], "is a directory; give image files"),
        ("evaluate", [f"--model_path={corrupt}"], "is not a valid Keras model file"),
    ]
    checked = 0
    for program, args, message in cases:
        status, _, err = program_in_process(f"trainers.{program}", args, capsys)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert status == 2 and len(errors) == 1 and message in errors[0], (program, args, err[-2000:])
        checked += 1
    assert checked == len(cases) == 4


def test_zoo_lists_every_model_with_its_size(capsys):
    out = run_program(["-m", "zoo", "--nosummary", "fashion_cnn", "resnet34"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resnet34" in out.stdout and "21,289,802" in out.stdout  # 10 classes at 224x224x3
    status, _, err = program_in_process("zoo.__main__", ["resnet99"], capsys)
    assert status == 2 and "unknown model 'resnet99'" in err
    # A bad flag is one line and status 2, as in the trainers (absl's own parser: a FATAL line and 1).
    bad = run_program(["-m", "zoo", "--model=resnet18"])
    assert bad.returncode == 2 and bad.stderr == "error: Unknown command line flag 'model'\n", bad.stderr[-2000:]
    status, _, err = program_in_process("zoo.__main__", ["--num_classes=1", "resnet18"], capsys)
    assert status == 2 and err == "error: flag --num_classes=1: 1 is not integer >= 2\n", err


def test_a_nan_loss_stops_the_run_with_a_clear_message(tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    settings = [f"--model_dir={model_dir}", "--model=fashion_cnn", "--epochs=2", "--momentum=0", *TINY]
    # The loss grows with the rate (1e30 gave a finite 1.9e29 with some dropout masks); at 1e38 the
    # second step's update overflows float32 whatever the masks.
    status, _, err = train_in_process([*settings, "--learning_rate=1e38"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 1 and len(errors) == 1, err[-3000:]
    assert "loss became nan" in errors[0]
    # It names a checkpoint only where one exists.
    backup = os.path.join(model_dir, "backup", "train")
    if os.path.isdir(backup) and os.listdir(backup):
        assert f"keeping the last good checkpoint in {backup}" in errors[0]
    else:
        assert "no epoch had finished, so there is nothing to resume from" in errors[0]
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))
    # The advised rerun, with a lower learning rate, resumes and finishes (no identity clash).
    status, _, err = train_in_process([*settings, "--learning_rate=0.01"], capsys)
    assert status == 0 and "Traceback" not in err, err[-3000:]
    assert json.load(open(os.path.join(model_dir, "state.json")))["finished"]
    assert "--learning_rate=0.01" in open(os.path.join(model_dir, "flags.txt")).read()
