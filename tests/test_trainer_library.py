"""The trainer as a library: no flags at import, one config, its steps called in process."""

import dataclasses
import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import trainers.config
import trainers.evaluate  # noqa: F401
import trainers.predict  # noqa: F401
import trainers.train  # noqa: F401  (all three together: none defines a flag when imported)
import trainers.training
from pipelines import shapes
from pipelines.durable import atomic_path, atomic_write
from tests.conftest import TINY, python_code, train_in_process
from trainers import cli, steps
from trainers import saved as saved_models
from trainers.callbacks import BoxGrid
from trainers.config import IDENTITY_FIELDS, ConfigError, TrainConfig, define_flags
from trainers.rundir import RunDir
from trainers.saved import open_saved

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_importing_every_module_defines_no_flag():
    modules = [
        "zoo",
        "zoo.__main__",
        "pipelines",
        "pipelines.core",
        "pipelines.fused",
        "trainers.train",
        "trainers.evaluate",
        "trainers.predict",
        "trainers.steps",
        "trainers.cli",
    ]
    script = (
        # Third-party modules define their own flags (absl.logging's --verbosity, TF's, TFDS's).
        "import absl.app, absl.logging, tensorflow, tensorflow_datasets, keras\n"
        "from absl import flags; before = set(flags.FLAGS)\n"
        f"import importlib; [importlib.import_module(m) for m in {modules!r}]\n"
        "print(sorted(set(flags.FLAGS) - before))"
    )
    out = python_code(script, TF_CPP_MIN_LOG_LEVEL="3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_config_field_is_a_flag_defined_on_demand():
    flag_values = flags.FlagValues()
    defined = define_flags(flag_values)
    assert defined == [field.name for field in dataclasses.fields(TrainConfig)]
    assert define_flags(flag_values) == []  # a second call defines nothing again
    flag_values(["train", "--model=resnet18", "--augment=crop", "--freeze_epochs=1", "--finetune_epochs=2"])
    config = TrainConfig.from_flags(flag_values)
    assert (config.model, config.augment, config.epochs, config.two_phase) == ("resnet18", ("crop",), None, True)


def test_config_flags_belong_to_the_program_that_defines_them_so_its_help_lists_them():
    # absl's --help shows the main module's own flags: defined through trainers.config, they must be
    # the calling program's (here this test module), not trainers.config's (shown by --helpfull only).
    flag_values = flags.FlagValues()
    define_flags(flag_values, names=("model", "epochs"))
    assert {flag.name for flag in flag_values.get_key_flags_for_module(__name__)} == {"model", "epochs"}
    assert flag_values.get_key_flags_for_module(trainers.config) == []
    assert "--epochs:" in flag_values.module_help(__name__)


def test_a_batch_that_does_not_split_evenly_across_the_replicas_is_one_line_before_anything(tmp_path):
    # tf.distribute splits the global batch evenly: 15 on two replicas was a ValueError deep in fit.
    config = TrainConfig(model_dir=str(tmp_path / "run"), strategy="mirrored", **{**TINY, "batch_size": 15})
    with pytest.raises(ConfigError) as raised:
        trainers.training.train(config)
    assert str(raised.value) == (
        "batch_size=15: is split evenly across the 2 replicas of strategy='mirrored': give a multiple of 2, e.g. 14 "
        "or 16"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(epochs=0), r"epochs=0: must be at least 1"),
        (dict(learning_rate=float("nan")), r"learning_rate=nan: must be a finite number"),
        (dict(momentum=float("inf")), r"momentum=inf: must be a finite number"),
        (dict(model="resnet99"), r"model='resnet99': accepted: convnextbase, .*, fashion_cnn, .*, resnet18, "),
        (dict(augment="crop,rotate"), r"augment=\('crop', 'rotate'\): accepted: crop, flip"),
        (dict(loss_weights=(1, 2, 3)), r"loss_weights=\(1.0, 2.0, 3.0\): must be two non-negative numbers"),
        (dict(loss_weights="a,b"), r"loss_weights='a,b': must be two"),
        (dict(freeze_epochs=1, epochs=3), r"epochs=3: is for single-phase runs"),
        (dict(unfreeze_from="stage4_unit1"), r"unfreeze_from='stage4_unit1': needs freeze_epochs"),
        (dict(lr_decay=0.1, lr_schedule="cosine"), r"lr_schedule='cosine': and lr_decay are two schedules"),
        (dict(momentum=1.5), r"momentum=1.5: must be at most 0.999"),
        (dict(batch_size=2.5), r"batch_size=2.5: must be an integer"),
        (dict(seed=None), r"seed=None: must be an integer: it seeds the weights, the data order and the augmentation"),
        (dict(seed=-5), r"seed=-5: must be at least 0"),  # NumPy's seeding refuses it (a traceback after loading)
    ],
)
def test_config_errors_name_the_setting_and_the_value(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings)


def test_config_errors_spelled_as_flags_for_the_programs():
    with pytest.raises(ConfigError) as caught:
        TrainConfig(augment=("crop", "rotate"))
    accepted = "crop, flip, randaugment, erase, mixup, cutmix"
    assert caught.value.flag_message() == f"--augment=crop,rotate: accepted: {accepted}"


def test_flags_txt_gives_back_the_same_config(tmp_path):
    config = TrainConfig(
        model_dir=str(tmp_path),
        model="resnet18",
        head="localize",
        augment=("crop", "flip"),
        freeze_epochs=2,
        finetune_epochs=3,
        finetune_learning_rate=0.001,
        loss_weights=(0.6, 0.4),
        validation_split="",
        nesterov=True,
        overwrite=True,
        **{k: v for k, v in TINY.items() if k != "validation_split"},
    )
    path = tmp_path / "flags.txt"
    path.write_text("\n".join(config.flag_lines()) + "\n")
    assert "--overwrite" not in path.read_text()  # rerunning the recorded flags never wipes a run
    assert TrainConfig.from_flagfile(str(path)) == dataclasses.replace(config, overwrite=False)


@pytest.mark.slow
def test_a_tiny_training_in_process_then_evaluate_reproduces_its_metrics(tmp_path):
    config = TrainConfig(
        model_dir=str(tmp_path / "run"),
        model="fashion_cnn",
        head="localize",
        epochs=1,
        augment=("crop", "flip"),
        loss_weights=(0.7, 0.3),
        box_loss="giou",
        optimizer="adam",
        learning_rate=0.001,
        **TINY,
    )
    result = trainers.training.train(config)
    run = result.run
    for path in (
        run.flags_file,
        run.state_file,
        run.class_names_file,
        run.metrics_file,
        run.model_file,
        os.path.join(run.export_dir, "saved_model.pb"),
        run.checkpoint("train"),
    ):
        assert os.path.exists(path), path
    saved = json.load(open(run.metrics_file))
    assert saved["split"] == "test[:32]" and saved["num_examples"] == 32
    assert {"loss", "class_accuracy", "bbox_mse", "bbox_mean_iou", "map_50", "map_coco"} <= set(result.metrics)
    assert 0 <= result.metrics["map_coco"] <= result.metrics["map_50"] <= 1
    if config.validation_split:  # the box grid, at the end of each epoch
        boxes = glob.glob(os.path.join(run.logs_dir, "validation_boxes", "events.out.tfevents.*"))
        assert boxes and BoxGrid.TAG in open(boxes[0], "rb").read().decode("latin-1")

    # The saved run read back (what evaluate, predict and show use), with the run's settings from
    # flags.txt: the loss weights and the central crop that follows augment=crop.
    opened = open_saved(run.root)
    again = opened.config
    assert again == config and opened.path == run.model_file and opened.run.root == run.root
    assert opened.class_names() == shapes.CLASS_NAMES
    metrics = opened.evaluate("test[:32]")
    for key in ("loss", "class_accuracy", "bbox_mse", "bbox_mean_iou", "map_50", "map_coco"):
        assert metrics[key] == pytest.approx(saved[key], abs=1e-5), key
    # The test-time crop follows training's random crop, for every split a run evaluates.
    assert steps.eval_data_args(again)["central_crop"] is True
    assert steps.eval_data_args(dataclasses.replace(again, augment=("flip",)))["central_crop"] is False
    # predict crops as evaluate does: the run's crop on its own model; on a bare copy of model.keras
    # (no flags.txt beside it), evaluate's default for a bare file, which is no crop.
    assert opened.central_crop is True
    os.makedirs(tmp_path / "elsewhere")
    bare = str(tmp_path / "elsewhere" / "model.keras")
    shutil.copy(run.model_file, bare)
    bare_opened = open_saved(bare)
    assert bare_opened.run is None and bare_opened.class_names() is None
    assert steps.eval_data_args(bare_opened.config)["central_crop"] is False
    assert bare_opened.central_crop is False
    # Unweighted, the loss differs: the run's loss weights matter.
    plain = open_saved(run.root, loss_weights=(1.0, 1.0)).evaluate("test[:32]")
    assert plain["loss"] != pytest.approx(saved["loss"], abs=1e-5)

    # A second call on the finished run is left alone.
    rerun = trainers.training.train(config)
    assert rerun.already_finished and rerun.metrics["loss"] == pytest.approx(saved["loss"])


def test_phases_and_their_learning_rates():
    config = TrainConfig(
        freeze_epochs=2,
        finetune_epochs=3,
        learning_rate=0.2,
        lr_decay=0.01,
        finetune_learning_rate=0.01,
        finetune_lr_decay=0.001,
    )
    assert [(p.name, p.epochs, p.learning_rate, p.decay, p.first_epoch) for p in steps.phases(config)] == [
        ("frozen", 2, 0.2, 0.01, 0),
        ("finetune", 3, 0.01, 0.001, 2),
    ]
    single = steps.phases(TrainConfig())
    assert [(p.name, p.epochs) for p in single] == [("train", 10)]
    schedule = steps.make_learning_rate(config, steps.phases(config)[0], steps_per_epoch=5)
    # Keras 2's decay: lr / (1 + decay * step).
    np.testing.assert_allclose(float(schedule(100)), 0.2 / (1 + 0.01 * 100), rtol=1e-6)


def test_atomic_writes_leave_the_old_file_when_the_writer_fails(tmp_path):
    path = str(tmp_path / "state.json")
    atomic_write(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            open(temporary, "w").write("half")
            raise RuntimeError("killed mid-write")
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary left behind
    export = str(tmp_path / "export")
    for content in ("first", "second"):
        with atomic_path(export, directory=True) as temporary:
            os.makedirs(temporary)
            open(os.path.join(temporary, "saved_model.pb"), "w").write(content)
    assert open(os.path.join(export, "saved_model.pb")).read() == "second"
    assert sorted(os.listdir(tmp_path)) == ["export", "state.json"]


def test_run_dir_names_every_file_it_owns(tmp_path):
    run = RunDir(str(tmp_path))
    owned = {
        os.path.relpath(p, tmp_path).split(os.sep)[0]
        for p in (
            run.flags_file,
            run.state_file,
            run.class_names_file,
            run.metrics_file,
            run.model_file,
            run.export_dir,
            run.logs_dir,
            run.backup("train"),
            run.checkpoint("train"),
        )
    }
    assert owned == set(RunDir.OWNED)


def test_a_model_path_that_is_no_keras_model_says_what_it_is_and_where_its_run_is(tmp_path):
    """The paths a user mistakes for a model: the run's SavedModel (export/), an exported artifact,
    a folder of the run; each named, with the run directory to give instead (files the test writes:
    nothing is loaded before the path is judged)."""
    run = tmp_path / "run"
    for folder in ("export", "deploy", "logs/train"):
        (run / folder).mkdir(parents=True)
    (run / RunDir.MODEL).write_bytes(b"")
    (run / "export" / "saved_model.pb").write_bytes(b"")
    for name in ("model.tflite", "model.onnx"):
        (run / "deploy" / name).write_bytes(b"")
    elsewhere = tmp_path / "elsewhere.tflite"
    elsewhere.write_bytes(b"")
    not_a_model = "not a run directory or a .keras file"
    cases = {
        run / "export": (ValueError, f"{run / 'export'} is a SavedModel folder, {not_a_model}"),
        run / "deploy" / "model.tflite": (
            ValueError,
            f"{run / 'deploy' / 'model.tflite'} is a TFLite file, {not_a_model}",
        ),
        run / "deploy" / "model.onnx": (ValueError, f"{run / 'deploy' / 'model.onnx'} is an ONNX file, {not_a_model}"),
        run / "deploy": (FileNotFoundError, f"no such model file ({run / 'deploy' / RunDir.MODEL})"),
        run / "logs" / "train": (FileNotFoundError, f"no such model file ({run / 'logs' / 'train' / RunDir.MODEL})"),
    }
    for path, (kind, message) in cases.items():
        with pytest.raises(kind) as raised:
            saved_models.locate(str(path))
        assert str(raised.value) == f"{message}; its run directory is {run}"
    with pytest.raises(ValueError) as raised:
        saved_models.locate(str(elsewhere))
    assert str(raised.value) == f"{elsewhere} is a TFLite file, {not_a_model}"  # no run beside it
    with pytest.raises(FileNotFoundError, match=r"^no such model file$"):
        saved_models.locate(str(tmp_path / "nothing"))
    search = tmp_path / "search"  # trainers.tune's folder: its trials hold the runs
    search.mkdir()
    (search / "search.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as raised:
        saved_models.locate(str(search))
    assert str(raised.value) == (
        f"{search} is a search of trainers.tune, not a run: each trial's run is {search / 'trials'}/TRIAL/execution0"
    )
    assert saved_models.locate(str(run)) == (str(run / RunDir.MODEL), None)  # no flags.txt: no run settings


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', r'TF_CONFIG must name "cluster" and "task"'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}', r"is not in its cluster"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', r"is not in its cluster"),
    ],
)
def test_tf_config_is_checked_before_any_connection(text, message):
    from trainers import distribute

    with pytest.raises(distribute.StrategyError, match=message):
        distribute.check_tf_config(text)
    distribute.check_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')


def test_a_circular_or_missing_flagfile_is_an_error(tmp_path):
    first, second = tmp_path / "a.flags", tmp_path / "b.flags"
    first.write_text(f"--epochs=2\n--flagfile={second}\n")
    second.write_text(f"# a comment\n--flagfile={first}\n")
    with pytest.raises(cli.UserError, match=r"circular flag files \(.*a.flags -> .*b.flags -> .*a.flags\)"):
        cli.check_flagfiles([f"--flagfile={first}"])
    with pytest.raises(cli.UserError, match=r"--flagfile=/no/such.flags: cannot be read"):
        cli.check_flagfiles(["--flagfile=/no/such.flags"])
    binary = tmp_path / "model.keras"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00 not text")
    with pytest.raises(
        cli.UserError, match=rf"--flagfile={binary}: is not a text file of flags \(byte 4 is not UTF-8\)"
    ):
        cli.check_flagfiles([f"--flagfile={binary}"])
    second.write_text("--batch_size=4\n")
    cli.check_flagfiles([f"--flagfile={first}"])  # a chain without a cycle is fine


@pytest.mark.slow
def test_onednn_is_turned_on_for_x86_cpus_unless_the_user_chose():
    import platform

    def seen(**environment):
        code = "import os, trainers; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
        return python_code(code, **{"TF_ENABLE_ONEDNN_OPTS": None, **environment}).stdout.strip()

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert seen() == ("1" if x86 else "None")
    assert seen(TF_ENABLE_ONEDNN_OPTS="0") == "0"  # the user's choice stands


def test_model_options_reach_the_builder_and_are_part_of_the_run(tmp_path):
    config = TrainConfig(model="fashion_cnn", model_options='{"filters": [8, 16], "dropout": 0.25}')
    assert config.model_options == '{"dropout": 0.25, "filters": [8, 16]}'  # canonical: sorted, compact
    assert config.builder_options == {"dropout": 0.25, "filters": (8, 16)}
    assert TrainConfig(model_options={"dropout": 0.25, "filters": (8, 16)}).model_options == config.model_options
    model = steps.build_model(config, _info(), tf.distribute.get_strategy())
    assert model.get_layer("backbone").get_layer("stem_conv").filters == 8
    with pytest.raises(ConfigError, match=r"model_options='\{\"width\": 3\}': width is not an option of fashion_cnn"):
        TrainConfig(model_options='{"width": 3}')
    with pytest.raises(ConfigError, match=r"model_options='\{dropout': is not JSON"):
        TrainConfig(model_options="{dropout")
    assert "model_options" in IDENTITY_FIELDS  # a run cannot be resumed with other options


def _info():
    import pipelines

    return pipelines.load("synthetic", "train[:8]", image_size=16, batch_size=4)[1]


def synthetic_run(tmp_path, **overrides) -> TrainConfig:
    """One epoch of the Fashion CNN on 16-pixel synthetic data, no validation by default."""
    settings = dict(
        model_dir=str(tmp_path / "run"),
        model="fashion_cnn",
        dataset="synthetic",
        image_size=16,
        train_split="train[:32]",
        validation_split="",
        test_split="test[:16]",
        batch_size=16,
        epochs=1,
        adapt_steps=1,
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_synthetic_data_trains_on_one_repeated_batch(tmp_path, monkeypatch):
    import pipelines

    dataset, info = pipelines.load("synthetic", "train[:48]", image_size=16, batch_size=8, training=True, seed=3)
    batches = list(dataset)
    assert len(batches) == info.steps_per_epoch == 6 and info.num_classes == 10
    assert all(np.array_equal(batches[0][0], images) for images, _ in batches)  # the same batch, cached
    assert 0 <= float(tf.reduce_min(batches[0][0])) and float(tf.reduce_max(batches[0][0])) <= 255
    boxes = next(iter(pipelines.load("synthetic", "test[:4]", task="localize", image_size=16, batch_size=4)[0]))[1]
    assert boxes["bbox"].shape == (4, 4) and bool(tf.reduce_all(boxes["bbox"][:, 2:] > boxes["bbox"][:, :2]))
    config = synthetic_run(
        tmp_path, train_split="train[:64]", validation_split="validation[:16]", logical_cpus=2, strategy="mirrored"
    )
    # The process's one MirroredStrategy (compat.mirrored_strategy): a second run in this process,
    # of any model, numbers its collectives after this one's instead of colliding with them.
    from trainers import distribute

    strategy = distribute.make_strategy("mirrored")
    # Its training stream is read through one iterator (compat.without_a_sample_batch), not
    # Keras's two, so each pass's draws are the pass's (several replicas repeat).
    streams = type(strategy.distribute_datasets_from_function(lambda context: tf.data.Dataset.range(1)))
    iterators, make_iterator = [], streams.__iter__
    monkeypatch.setattr(streams, "__iter__", lambda self: iterators.append(1) or make_iterator(self))
    result = trainers.training.train(config)
    assert len(iterators) == 1  # one phase, one fit
    assert result.metrics["num_examples"] == 16 and np.isfinite(result.metrics["loss"])
    assert result.model.distribute_strategy is strategy


def test_mixed_precision_trains_a_model_whose_normalization_adapts(tmp_path):
    # Keras's Normalization.adapt cannot sum bfloat16 statistics into float32 ones: the zoo keeps
    # that layer in float32, so a --mixed_precision run of the Fashion CNN adapts and trains.
    config = synthetic_run(tmp_path, mixed_precision=True)
    result = trainers.training.train(config)
    assert np.isfinite(result.metrics["loss"])
    standardize = result.model.get_layer("backbone").get_layer("standardize")
    assert standardize.dtype_policy.compute_dtype == "float32"
    assert float(np.asarray(standardize.variance).mean()) != 1.0  # adapted


def test_mixed_precision_by_default_only_where_the_hardware_computes_it(tmp_path, monkeypatch):
    from trainers import distribute

    flags_line = "flags\t\t: fpu sse2 avx2 avx512f {}\n"
    for present, expected in (("avx512_bf16", True), ("amx_bf16", True), ("avx512_vnni", False)):
        (tmp_path / "cpuinfo").write_text("processor\t: 0\n" + flags_line.format(present))
        assert distribute.cpu_has_bfloat16(str(tmp_path / "cpuinfo")) is expected
    assert distribute.cpu_has_bfloat16(str(tmp_path / "absent")) is False  # not Linux: no claim

    # CPU: the user's choice stands; by default bfloat16 only with the instructions for it and
    # oneDNN's kernels (without them bfloat16 is emulated: 14x slower here).
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    for has_bf16, onednn in ((True, "1"), (True, "0"), (False, "1")):
        monkeypatch.setattr(distribute, "cpu_has_bfloat16", lambda has=has_bf16: has)
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
        assert distribute.precision_policy(None) == ("mixed_bfloat16" if has_bf16 and onednn == "1" else "float32")
        assert distribute.precision_policy(True) == "mixed_bfloat16"
        assert distribute.precision_policy(False) == "float32"
    # GPU: float16 (Keras adds loss scaling); by default only with tensor cores (7.0 and up).
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    for capability, default in (((9, 0), "mixed_float16"), ((7, 0), "mixed_float16"), ((6, 1), "float32")):
        details = {"compute_capability": capability}
        monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu, d=details: d)
        assert distribute.precision_policy(None) == default
        assert distribute.precision_policy(True) == "mixed_float16"
        assert distribute.precision_policy(False) == "float32"


def test_the_trainers_pipelines_leave_tf_data_autotuning_off_unless_asked(tmp_path):
    import pipelines

    config = TrainConfig(model="fashion_cnn", **TINY)
    assert steps.data_args(config)["autotune"] is False
    for autotune in (False, True):
        args = steps.training_data_args(dataclasses.replace(config, data_autotune=autotune))
        dataset, _ = pipelines.load(config.dataset, config.train_split, **args)
        assert dataset.options().autotune.enabled is autotune
    assert "--data_autotune" in dataclasses.replace(config, data_autotune=True).flag_lines()


def test_a_recipe_can_set_the_training_shuffle_buffer(tmp_path):
    """The chapter's flowers pipeline shuffles through 1,000 images (``--shuffle_buffer=1000``)."""
    import pipelines

    config = TrainConfig(model="fashion_cnn", **TINY)
    assert steps.training_data_args(config)["shuffle_buffer"] is None  # the pipeline's own default
    buffered = dataclasses.replace(config, shuffle_buffer=8)
    assert steps.training_data_args(buffered)["shuffle_buffer"] == 8
    assert "shuffle_buffer" not in steps.eval_data_args(buffered)  # validation and test are not shuffled
    assert "--shuffle_buffer=8" in buffered.flag_lines()
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("\n".join(buffered.flag_lines()) + "\n")
    assert TrainConfig.from_flagfile(str(flagfile)).shuffle_buffer == 8
    dataset, _ = pipelines.load(config.dataset, config.train_split, **steps.training_data_args(buffered))
    labels = [int(y) for _, batch in dataset.take(2) for y in batch]
    assert len(labels) == 2 * config.batch_size
    assert TrainConfig.from_recipe("flowers_xception").shuffle_buffer == 1000


@pytest.mark.parametrize("kind", ["read-only mount", "immutable folder"])
def test_a_read_only_mount_or_an_immutable_folder_is_one_line_and_nothing_is_written(tmp_path, kind, capsys):
    """Made for real (root only: skipped, with the reason, elsewhere): a tmpfs mounted read-only,
    and a folder with the immutable attribute (chattr +i)."""
    folder = tmp_path / "target"
    folder.mkdir()
    if kind == "read-only mount":
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
        undo = ["umount", "-l", str(folder)]
    else:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        undo = ["chattr", "-i", str(folder)]
    if made.returncode != 0:
        pytest.skip(f"cannot make a {kind} here: {made.stderr.decode().strip() or 'needs root'}")
    try:
        expected = "Read-only file system" if kind == "read-only mount" else "Operation not permitted"
        model_dir = folder / "run"
        with pytest.raises(ConfigError, match=rf"^model_dir='{model_dir}': cannot be written: {folder}: {expected}$"):
            trainers.training.train(TrainConfig(model_dir=str(model_dir), **TINY))
        assert os.listdir(folder) == []
        status, _, stderr = train_in_process(
            [f"--model_dir={model_dir}", *(f"--{k}={v}" for k, v in TINY.items())], capsys
        )
        assert status == 2 and stderr.strip().splitlines() == [
            f"error: --model_dir={model_dir}: cannot be written: {folder}: {expected}"
        ]
    finally:
        subprocess.run(undo, capture_output=True)


@pytest.mark.parametrize("where", ["under a file", "under /proc", "under /sys"])
def test_a_model_dir_that_cannot_be_written_is_one_line_before_anything_happens(tmp_path, where):
    (tmp_path / "notes.txt").write_text("a file")
    model_dir, reason = {
        "under a file": (tmp_path / "notes.txt" / "run", rf"{tmp_path / 'notes.txt'} is a file, not a folder"),
        "under /proc": ("/proc/zoo-run", r"cannot be written: /proc: "),
        "under /sys": ("/sys/zoo-run", r"cannot be written: /sys: "),
    }[where]
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ConfigError, match=rf"^model_dir='{model_dir}': {reason}"):
        trainers.training.train(TrainConfig(model_dir=str(model_dir), **TINY))
    assert sorted(os.listdir(tmp_path)) == before
