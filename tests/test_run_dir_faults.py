"""Run directories that never lose work: ownership, locking, damaged files, changed settings, links.

Each case ends in a finished (resumed) run or a one-line refusal, and no file outside the run's
manifest is touched. The trainer runs in process on tiny shapes data.
"""

import errno
import json
import math
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

import pipelines
import trainers.training
import zoo
from pipelines.durable import disk_full
from tests.conftest import (
    interrupted_after_first_epoch,
    logged,
    run_program,
    start_program,
    tiny,
    train_in_process,
)
from trainers import steps, tune
from trainers.config import ConfigError, TrainConfig
from trainers.rundir import FAULT_POINT_VARIABLE, FAULT_POINTS, RunDir, readable_weights, repair_backup
from trainers.saved import load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow

TINY = tiny(train_split="train[:32]", validation_split="", test_split="test[:16]", image_size=16, model="fashion_cnn")


def config_for(root, **settings):
    return TrainConfig(model_dir=str(root), **{"epochs": 1, **TINY, **settings})


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """One finished `config_for` run, trained once per module and test worker."""
    root = tmp_path_factory.mktemp("trained_once") / "run"
    trainers.training.train(config_for(root))
    return root


@pytest.fixture
def finished_run(trained_once, tmp_path):
    """``tmp_path / "run"``: a copy of `trained_once`, for the tests whose subject is what happens
    to a finished run (a run moves with its folder: model_dir is not among the settings a rerun
    must match, `config.IDENTITY_FIELDS`)."""
    return shutil.copytree(trained_once, tmp_path / "run", symlinks=True)


def tree(root):
    """Every path under ``root`` with its size: what 'untouched' is checked against."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


def test_a_folder_that_is_not_a_run_directory_is_refused_and_left_alone(tmp_path):
    root = tmp_path / "project"
    (root / "export").mkdir(parents=True)
    (root / "export" / "saved_model.pb").write_text("someone else's export")
    (root / "model.keras").write_text("someone else's model")
    (root / "backup").mkdir()
    (root / "notes.txt").write_text("keep me")
    before = tree(root)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"model_dir=.*holds files that no run of this trainer wrote"):
            trainers.training.train(config_for(root, overwrite=overwrite))
        assert tree(root) == before


def test_overwrite_removes_only_what_the_run_wrote(finished_run):
    root = finished_run
    (root / "notes.txt").write_text("mine")
    (root / "data").mkdir()
    (root / "data" / "labels.csv").write_text("a,b")
    result = trainers.training.train(config_for(root, overwrite=True))
    assert not result.already_finished
    assert (root / "notes.txt").read_text() == "mine" and (root / "data" / "labels.csv").read_text() == "a,b"
    manifest = json.load(open(root / RunDir.MANIFEST))
    assert "notes.txt" not in manifest["files"] and "model.keras" in manifest["files"]


def test_a_second_trainer_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"host": __import__("socket").gethostname(), "pid": holder.pid, "since": 0}
        (root / RunDir.LOCK).write_text(json.dumps(lock))
        with pytest.raises(ConfigError, match=rf"in use by another trainer \(pid {holder.pid} on "):
            trainers.training.train(config_for(root))
        assert not (root / RunDir.MANIFEST).exists()  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (as after kill -9): its lock is stale and taken over.
    result = trainers.training.train(config_for(root))
    assert result.metrics["num_examples"] == 16 and not (root / RunDir.LOCK).exists()


def interrupted(root, monkeypatch, **settings):
    """Train 2 epochs but die right after epoch 1's backup: the backup folder."""
    interrupted_after_first_epoch(config_for(root, epochs=2, **settings), monkeypatch)
    backup = root / "backup" / "train"
    assert (backup / "latest.weights.h5").exists()
    return backup


def test_resuming_with_a_new_learning_rate_applies_it(tmp_path, monkeypatch, caplog):
    root = tmp_path / "run"
    interrupted(root, monkeypatch, optimizer="sgd", learning_rate=0.05)
    trainers.training.train(config_for(root, epochs=2, optimizer="sgd", learning_rate=0.001))
    assert "resuming with learning rate 0.001 (the backup had 0.05)" in caplog.text
    rates = logged(str(root / "logs" / "train"), "epoch_learning_rate")
    assert rates[-1][0] == 1 and rates[-1][1] == pytest.approx(0.001)


@pytest.mark.parametrize("damage", ["latest", "latest_and_previous", "metadata"])
def test_a_damaged_backup_falls_back_or_restarts_the_phase(tmp_path, monkeypatch, damage, caplog):
    root = tmp_path / "run"
    backup = interrupted(root, monkeypatch)
    if damage == "metadata":
        (backup / "training_metadata.json").write_text('{"epo')
    else:
        data = (backup / "latest.weights.h5").read_bytes()
        (backup / "latest.weights.h5").write_bytes(data[: len(data) // 3])
        if damage == "latest_and_previous":
            (backup / "latest.weights.h5.bkp").write_bytes(b"")
    result = trainers.training.train(config_for(root, epochs=2))
    assert np.isfinite(result.metrics["loss"])
    assert "restarting the phase" in caplog.text or "resuming from the one before" in caplog.text


def test_repair_backup_restores_the_previous_epoch(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup = tmp_path / "backup"
    backup.mkdir()
    model.save_weights(str(backup / "saved.weights.h5"))
    os.rename(backup / "saved.weights.h5", backup / "latest.weights.h5.bkp")
    (backup / "training_metadata.json.bkp").write_text('{"epoch": 0}')
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")  # cut off after the signature
    (backup / "training_metadata.json").write_text('{"epoch": 1}')
    assert repair_backup(str(backup)) == "previous"
    assert readable_weights(str(backup / "latest.weights.h5"))
    assert json.load(open(backup / "training_metadata.json")) == {"epoch": 0}
    assert repair_backup(str(backup)) == "ok"


def write_backup(folder, model, latest, previous=None, whole=True):
    """A BackupAndRestore folder: ``latest`` epoch (its weights cut off unless ``whole``) and the
    ``previous`` epoch's .bkp copies."""
    folder.mkdir(parents=True)
    model.save_weights(str(folder / "w.weights.h5"))
    weights = (folder / "w.weights.h5").read_bytes()
    if previous is not None:
        (folder / "latest.weights.h5.bkp").write_bytes(weights)
        (folder / "training_metadata.json.bkp").write_text(json.dumps({"epoch": previous, "batch": 0}))
    (folder / "latest.weights.h5").write_bytes(weights if whole else weights[:100])
    (folder / "training_metadata.json").write_text(json.dumps({"epoch": latest, "batch": 0}))
    os.remove(folder / "w.weights.h5")


@pytest.mark.parametrize("order", [("chief", "worker1", "worker2"), ("worker2", "worker1", "chief")])
def test_workers_repair_their_backups_to_one_common_epoch(tmp_path, order):
    # The cluster was killed while the chief was writing epoch 2's backup: the others had written
    # theirs. Resuming from its own folder, each worker would start from another epoch.
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    roles = ("chief", "worker1", "worker2")
    runs = {role: RunDir(str(tmp_path), role=role, roles=roles) for role in roles}
    for role in roles:
        write_backup(tmp_path / "backup" / "train" / role, model, latest=2, previous=1, whole=role != "chief")
    assert runs["worker1"].peer_backups("train") == [
        str(tmp_path / "backup" / "train" / "chief"),
        str(tmp_path / "backup" / "train" / "worker2"),
    ]
    for role in order:
        run = runs[role]
        assert repair_backup(run.backup("train"), run.peer_backups("train")) == "previous", role
    for role, run in runs.items():
        assert json.load(open(os.path.join(run.backup("train"), "training_metadata.json")))["epoch"] == 1, role
        assert readable_weights(os.path.join(run.backup("train"), "latest.weights.h5")), role
        assert repair_backup(run.backup("train"), run.peer_backups("train")) == "ok"
    # A worker that never wrote a backup can only start the phase: so must the others.
    (tmp_path / "backup" / "train" / "worker2").rename(tmp_path / "gone")
    assert repair_backup(runs["chief"].backup("train"), runs["chief"].peer_backups("train")) == "removed"
    assert not os.path.exists(runs["chief"].backup("train"))
    # One worker alone repairs as before: its own latest whole backup is kept.
    alone = RunDir(str(tmp_path / "single"))
    write_backup(tmp_path / "single" / "backup" / "train", model, latest=3, previous=2)
    assert alone.peer_backups("train") == []
    assert repair_backup(alone.backup("train"), alone.peer_backups("train")) == "ok"
    (tmp_path / "single" / "backup" / "train" / "training_metadata.json").write_text('{"epoch": "three"}')
    assert repair_backup(alone.backup("train")) == "previous"  # a damaged epoch is no point to resume from


@pytest.mark.parametrize(
    "cluster, expected",
    [
        ({"worker": ["a:1", "b:1", "c:1"]}, ("chief", "worker1", "worker2")),
        ({"chief": ["a:1"], "worker": ["b:1", "c:1"]}, ("chief", "worker0", "worker1")),
        ({}, ()),
    ],
)
def test_every_worker_knows_every_workers_name(cluster, expected, tmp_path):
    import glob
    import tempfile
    from types import SimpleNamespace

    from trainers import distribute

    scratch = os.path.join(tempfile.gettempdir(), "worker*-*")
    before, checked = set(glob.glob(scratch)), 0
    for job, tasks in cluster.items():
        for index in range(len(tasks)):
            resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
                tf.train.ClusterSpec(cluster), task_type=job, task_id=index
            )
            strategy = SimpleNamespace(cluster_resolver=resolver)
            assert distribute.worker_roles(strategy) == expected
            run = RunDir(str(tmp_path / "unused"), role=distribute.worker_role(strategy), roles=expected)
            chief = job == "chief" or (job == "worker" and index == 0 and "chief" not in cluster)
            assert run.role in expected and run.is_chief == chief
            checked += 1
    assert checked == sum(len(tasks) for tasks in cluster.values())
    assert set(glob.glob(scratch)) == before  # naming a worker's folders makes no scratch folder
    assert distribute.worker_roles(tf.distribute.get_strategy()) == ()


@pytest.mark.parametrize("damaged", ["state.json", "checkpoint", "flags.txt"])
def test_damaged_run_files_are_rebuilt_and_the_run_finishes(finished_run, damaged, caplog):
    root = finished_run
    first_loss = json.load(open(root / "metrics.json"))["loss"]
    # What a crash during the final steps leaves, plus one damaged file.
    os.remove(root / "model.keras")
    state = json.load(open(root / "state.json"))
    json.dump(dict(state, finished=False), open(root / "state.json", "w"))
    if damaged == "state.json":
        (root / "state.json").write_text('{"completed_ph')
    elif damaged == "checkpoint":
        path = root / "checkpoints" / "train.weights.h5"
        path.write_bytes(path.read_bytes()[:500])
    else:
        (root / "flags.txt").write_text("--no_such_flag=1\n")
    again = trainers.training.train(config_for(root))
    assert (root / "model.keras").exists() and json.load(open(root / "state.json"))["finished"]
    assert np.isfinite(again.metrics["loss"])
    if damaged == "checkpoint":
        assert "training phase train again" in caplog.text
    if damaged == "state.json":
        assert again.metrics["loss"] == pytest.approx(first_loss, rel=1e-5)  # not retrained


def test_a_full_disk_during_export_then_the_rerun_finishes(tmp_path, monkeypatch):
    import errno

    import keras

    root = tmp_path / "run"

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", full)
        with pytest.raises(OSError, match="No space left"):
            trainers.training.train(config_for(root))
    assert not (root / "model.keras").exists()
    assert [name for name in os.listdir(root) if ".tmp" in name or name.startswith(".model")] == []
    result = trainers.training.train(config_for(root))  # space freed: resumes from the finished phase
    assert (root / "model.keras").exists() and np.isfinite(result.metrics["loss"])


def write_jpeg(path, seed):
    pixels = tf.cast(tf.random.uniform([12, 12, 3], 0, 256, tf.int32, seed=seed), tf.uint8)
    tf.io.write_file(str(path), tf.io.encode_jpeg(pixels))


def test_symlink_loops_are_followed_once(tmp_path):
    root = tmp_path / "photos"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            write_jpeg(root / label / f"{i}.jpg", seed=i + (10 if label == "dog" else 0))
    os.symlink("..", root / "cat" / "loop")  # a loop
    os.symlink(str(root / "cat"), root / "dog" / "cats")  # crossing into another class
    os.symlink(str(root / "dog"), root / "cat" / "dogs")
    _, info = pipelines.load(f"dir:{root}", "train+validation+test", image_size=12, skip_bad_files=True)
    assert info.num_examples == 6  # every file once, in its own class, no hang
    # With split folders: a link from one split up to the dataset's top adds nothing.
    split_root = tmp_path / "split"
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (split_root / split / label).mkdir(parents=True)
            for i in range(2):
                write_jpeg(split_root / split / label / f"{i}.jpg", seed=i)
    os.symlink(str(split_root), split_root / "train" / "dog" / "up")
    _, train = pipelines.load(f"dir:{split_root}", "train", image_size=12)
    assert train.num_examples == 4


def test_a_training_split_smaller_than_the_preview_batch_trains(tmp_path):
    result = trainers.training.train(config_for(tmp_path / "run", train_split="train[:8]", batch_size=4))
    assert np.isfinite(result.metrics["loss"])


def split_folders(root):
    for split in ("train", "validation", "test"):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for i in range(4):
                write_jpeg(root / split / label / f"{i}.jpg", seed=i + (10 if label == "dog" else 0))
    return root


def corrupt_body(path):
    data = bytearray(open(path, "rb").read())
    # Signature and end marker intact; seeded bytes without 0xFF between, so no marker (a frame
    # header declaring some size) can turn up by chance: os.urandom once made a "62103x14158" one.
    body = np.random.default_rng(0).integers(0, 0xFF, len(data) - 30, dtype=np.uint8)
    data[20 : len(data) - 10] = body.tobytes()
    data[2:4] = b"\xff\xda"  # a scan before any frame header: no decoder accepts it
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize(
    "where, model, doing",
    [
        # ResNet-18 has no Normalization to adapt, which would meet a bad training file first (the
        # next test); the Fashion CNN, lighter to trace, adapts on the clean training split.
        ("train", "resnet18", "drawing the preview of the training data"),
        ("validation", "fashion_cnn", "training"),
        ("test", "fashion_cnn", "evaluating on 'test'"),
    ],
)
def test_a_file_that_cannot_be_decoded_is_named_wherever_it_is_met(tmp_path, where, model, doing):
    root = split_folders(tmp_path / "photos")
    corrupt_body(root / where / "dog" / "2.jpg")
    assert pipelines.load(f"dir:{root}", where, image_size=12)[1].num_examples == 8  # still listed: body only
    settings = dict(
        dataset=f"dir:{root}", train_split="train", validation_split="validation", test_split="test", model=model
    )
    with pytest.raises(steps.TrainingError) as raised:
        trainers.training.train(config_for(tmp_path / "run", batch_size=4, image_size=32, **settings))
    message = str(raised.value)
    assert f"'{root / where / 'dog' / '2.jpg'}' cannot be decoded (" in message and f"met while {doing};" in message
    assert "\n" not in message
    # With skip_bad_files the file is skipped and counted: the split holds one example fewer. Its
    # size unknown to tf.data, Keras would warn at the end of each pass over it that the input "ran
    # out of data" (compat.passes_end_quietly).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trainers.training.train(
            config_for(tmp_path / "skipping", batch_size=4, image_size=32, skip_bad_files=True, **settings)
        )
    assert not [w for w in caught if "ran out of data" in str(w.message)], [str(w.message) for w in caught]
    if where == "test":
        assert result.metrics["num_examples"] == 7


def test_adapting_the_normalization_names_a_file_that_cannot_be_decoded(tmp_path):
    root = split_folders(tmp_path / "photos")
    corrupt_body(root / "train" / "cat" / "1.jpg")
    config = config_for(tmp_path / "run", dataset=f"dir:{root}", train_split="train", batch_size=4)
    _, info = pipelines.load(config.dataset, "train", image_size=16)
    model = steps.build_model(config, info, tf.distribute.get_strategy())
    with pytest.raises(steps.TrainingError, match=r"1.jpg' cannot be decoded .*met while adapting the input"):
        steps.adapt_to_data(model, config)


def test_an_image_size_that_cannot_fit_in_memory_is_refused_before_any_file_is_written(tmp_path):
    memory = steps.physical_memory()
    if memory is None or tf.config.list_logical_devices("GPU"):
        pytest.skip("the memory check runs on CPU machines whose RAM the OS reports")
    per_pixel = steps.activation_count(zoo.build("resnet18", num_classes=3, input_shape=(64, 64, 3))) / 64**2
    # Twice this machine's memory at batch 16 in 16-bit activations (mixed precision, the default
    # where the hardware has it), four times in float32.
    size = int(math.sqrt(4 * memory / (per_pixel * 16 * 4)))
    with pytest.raises(ConfigError, match=rf"^image_size={size}: with batch_size=16, one batch of resnet18 needs at"):
        trainers.training.train(config_for(tmp_path / "run", model="resnet18", image_size=size))
    # A model whose weights grow with the image (Flatten, then Dense) cannot even be built.
    with pytest.raises(ConfigError, match=r"^image_size=8000: "):
        trainers.training.train(config_for(tmp_path / "run", image_size=8000))
    assert not (tmp_path / "run").exists()


def test_a_kill_at_each_named_point_resumes_and_leaves_only_the_runs_files(tmp_path, capsys):
    """The trainer kills itself (SIGKILL) at each `FAULT_POINTS` name; rerunning finishes the run
    (the reruns in process: what they read is what the kill left on disk) with the weights of a
    run never killed: the same batches, crops, flips, policies and dropout masks after the resume
    (a model with Dropout, two phases, random crops and flips, MixUp; the first backup is inside
    the first phase, so its rerun starts that phase's data part-way, then the second phase)."""
    settings = {**TINY, "freeze_epochs": 2, "finetune_epochs": 1, "augment": "crop,flip,mixup"}
    command = ["-m", "trainers.train", *(f"--{k}={v}" for k, v in settings.items())]
    killed = {
        point: start_program(
            [*command, f"--model_dir={tmp_path / point}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **{FAULT_POINT_VARIABLE: point},
        )
        for point in FAULT_POINTS
    }
    for point, process in killed.items():
        output = process.communicate(timeout=300)[0]
        assert process.returncode == -9, f"{point}: {output[-2000:]}"
        assert f"{FAULT_POINT_VARIABLE}={point}: killing this process" in output
    whole = trainers.training.train(TrainConfig(model_dir=str(tmp_path / "whole"), **settings), export=False)
    for point in FAULT_POINTS:
        capsys.readouterr()
        result = trainers.training.train(TrainConfig(model_dir=str(tmp_path / point), **settings))
        assert steps.weights_checksum(result.model) == steps.weights_checksum(whole.model), point
        output = capsys.readouterr().out
        run = RunDir(str(tmp_path / point))
        assert run.read_state()["finished"] and os.path.exists(run.model_file), point
        assert result.metrics["num_examples"] == json.load(open(run.metrics_file))["num_examples"] == 16
        top_level = set(os.listdir(run.root))
        assert top_level <= set(run.manifest()["files"]) | {RunDir.MANIFEST}, (point, top_level)
        if point == "first_backup":  # the finished epoch was not trained again
            assert "Epoch 1/2" not in output and "Epoch 2/2" in output, (point, output[-2000:])
            assert "Epoch 2/3" not in output and "Epoch 3/3" in output, (point, output[-2000:])  # phase 2: one
        if point == "phase_checkpoint":  # nor the finished phase
            assert "Epoch 2/2" not in output and "Epoch 3/3" in output, (point, output[-2000:])


@pytest.mark.parametrize("size", ["3m", "24m"])  # full during the first epoch's backup; at the phase's checkpoint
def test_a_full_filesystem_stops_with_one_line_and_the_rerun_after_freeing_space_resumes(
    small_filesystem, size, capsys
):
    """The program in a process on the full filesystem; the rerun in process."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(small_filesystem)], check=True)
    model_dir = small_filesystem / "run"
    args = ["--model=fashion_cnn", "--epochs=2", *(f"--{k}={v}" for k, v in TINY.items() if k != "model")]
    full = run_program(["-m", "trainers.train", f"--model_dir={model_dir}", *args])
    assert full.returncode == 1, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: disk full writing the run in {model_dir} (No space left on device); free space and rerun the "
        "same command: it resumes from the last finished epoch"
    ), full.stderr[-3000:]
    # Free space (grow the filesystem), rerun the same command: it resumes and finishes.
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_filesystem)], check=True)
    status, _, err = train_in_process([f"--model_dir={model_dir}", *args], capsys)
    assert status == 0, err[-3000:]
    run = RunDir(str(model_dir))
    assert run.read_state()["finished"] and json.load(open(run.metrics_file))["num_examples"] == 16
    assert set(os.listdir(model_dir)) <= set(run.manifest()["files"]) | {RunDir.MANIFEST}  # no temporary left


def test_files_of_the_run_are_as_readable_as_any_file_the_user_writes(trained_once):
    root = trained_once
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("flags.txt", "state.json", "metrics.json", "model.keras", RunDir.MANIFEST):
        assert os.stat(root / name).st_mode & 0o777 == 0o666 & ~mask, name


def test_errors_that_say_the_disk_is_full_are_recognized():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(tf.errors.UnknownError(None, None, "write failed: No space left on device"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not disk_full(ValueError("No space left on device"))


def test_a_damaged_manifest_is_refused_and_nothing_is_touched(finished_run):
    root = finished_run
    (root / RunDir.MANIFEST).write_text('{"files": ["mod')
    before = tree(root)
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"\.zoo-run\.json is damaged, so which files are the run's is unknown"):
            trainers.training.train(config_for(root, overwrite=overwrite))
    assert tree(root) == before


@pytest.mark.parametrize("damaged", ["metrics.json", "class_names.json", "model.keras", RunDir.MANIFEST])
def test_a_finished_run_with_a_damaged_file_is_reported_or_retrained_never_a_traceback(finished_run, damaged):
    root = finished_run
    data = (root / damaged).read_bytes()
    (root / damaged).write_bytes(data[: len(data) // 2])
    if damaged == RunDir.MANIFEST:  # which files are the run's is unknown: refused, nothing touched
        with pytest.raises(ConfigError, match="is damaged"):
            trainers.training.train(config_for(root, overwrite=True))
        return
    again = trainers.training.train(config_for(root))
    assert again.already_finished  # the rerun reads nothing it cannot
    result = trainers.training.train(config_for(root, overwrite=True))
    assert np.isfinite(result.metrics["loss"]) and json.load(open(root / "metrics.json"))["num_examples"] == 16
    if damaged == "model.keras":
        with pytest.raises(ValueError, match="is not a valid Keras model file"):
            (root / damaged).write_bytes(data[:100])
            load_model(str(root / damaged))


def test_sigterm_says_so_releases_the_lock_and_the_rerun_resumes(tmp_path, capsys, caplog):
    """SIGTERM to the program in a process; the rerun in process (it reads what the stop left)."""
    import signal

    root = tmp_path / "run"
    args = ["--model=fashion_cnn", "--epochs=3", *(f"--{k}={v}" for k, v in TINY.items() if k != "model")]
    args = [a if not a.startswith("--train_split") else "--train_split=train[:512]" for a in args]
    process = start_program(
        ["-m", "trainers.train", f"--model_dir={root}", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:  # the epoch's summary comes after its backup is written
        if "[train] epoch 1 done" in line:
            break
    assert process.poll() is None, "training finished before it could be stopped; make it longer"
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    assert rest.strip().splitlines()[-1].startswith("error: terminated (SIGTERM); what finished is kept")
    assert "Traceback" not in rest and not (root / RunDir.LOCK).exists()
    caplog.set_level("INFO")
    status, _, err = train_in_process([f"--model_dir={root}", *args], capsys)
    assert status == 0, err[-3000:]
    assert "[train] epoch 1 done" not in caplog.text and "[train] epoch 3 done" in caplog.text


@pytest.mark.parametrize("skip", [False, True])
def test_files_deleted_while_training_are_named_or_skipped_and_the_rerun_resumes(tmp_path, skip):
    import keras

    root = tmp_path / "photos"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(24):
            write_jpeg(root / label / f"{i}.jpg", seed=i + (50 if label == "dog" else 0))
    gone = [root / "cat" / f"{i}.jpg" for i in range(4)]
    # After the first epoch (its backup written), a sixth of one class goes away. The training
    # stream reads ahead into the next pass while an epoch ends: 12 steps a pass (not 6, with 12
    # images a class) make it unlikely that all four were read before they went (it happened once
    # in a loaded CI run: the run finished).
    delete = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: [os.remove(p) for p in gone if p.exists()])
    config = config_for(
        tmp_path / "run",
        dataset=f"dir:{root}",
        train_split="train+validation+test",
        test_split="",
        batch_size=4,
        epochs=2,
        skip_bad_files=skip,
    )
    if skip:  # skipped with a warning each; the run finishes
        result = trainers.training.train(config, callbacks=[delete])
        assert result.model is not None
        return
    with pytest.raises(steps.TrainingError) as raised:
        trainers.training.train(config, callbacks=[delete])
    message = str(raised.value)
    assert "\n" not in message and "cannot be read (" in message and "(and 3 more)" in message
    assert "met while training;" in message and "rerunning resumes from the last finished epoch" in message
    assert any(f"'{path}'" in message for path in gone)
    resumed = trainers.training.train(config)  # the files are gone for good: the rerun trains epoch 2 only
    epochs = [step for step, _ in logged(str(tmp_path / "run" / "logs" / "train"), "epoch_loss")]
    assert epochs == [0, 1] and resumed.model is not None


def test_a_run_inside_its_image_folder_is_refused_and_a_folder_that_changes_is_one_line(tmp_path, monkeypatch):
    """A model_dir in the folder it trains on would become a class of it (its class_names.json and
    flags.txt read as images, a traceback when the preview reloaded the data): refused before
    anything is written, for a run and a search. A class folder removed after the data was first
    read is the data's one line, not a traceback."""
    root = tmp_path / "photos"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            write_jpeg(root / label / f"{i}.jpg", seed=i + (50 if label == "dog" else 0))
    data = dict(dataset=f"dir:{root}", train_split="train", validation_split="", test_split="", batch_size=2)
    for model_dir, where in ((root / "run", "is inside"), (root, "is")):
        message = (
            f"model_dir={str(model_dir)!r}: {where} the image folder of dataset='dir:{root}', where every subfolder is "
            f"a class of images; put the run outside {root}"
        )
        with pytest.raises(ConfigError) as raised:
            trainers.training.train(config_for(model_dir, **data))
        assert str(raised.value) == message
        with pytest.raises(ConfigError) as raised:
            tune.check(config_for(model_dir, **{**data, "validation_split": "train[:2]"}), tune.TuneConfig())
        assert str(raised.value) == message
    assert sorted(os.listdir(root)) == ["cat", "dog"]

    load_data = steps.load_data

    def then_a_class_goes(config, strategy):
        loaded = load_data(config, strategy)
        shutil.rmtree(root / "dog")
        return loaded

    monkeypatch.setattr(steps, "load_data", then_a_class_goes)
    with pytest.raises(ConfigError, match=rf"^dataset='dir:{root}': .*found \['cat'\]"):
        trainers.training.train(config_for(tmp_path / "run", **data))
