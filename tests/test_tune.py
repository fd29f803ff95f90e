"""Hyperparameter search: the space, its overrides, HParams logging, resuming, failures, workers."""

import dataclasses
import functools
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

import pipelines.tuning as tuning
from tests.conftest import (
    as_flags,
    free_port,
    logged,
    program_in_process,
    python_code,
    run_program,
    start_program,
    tiny,
    train_in_process,
)
from trainers import tune
from trainers.config import TrainConfig, search_space

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny search: 16-pixel shapes, 64 training images, 2 epochs of 2 steps per trial.
TINY_TRIALS = tiny(model="fashion_cnn", image_size=16, epochs=2, steps_per_epoch=2, adapt_steps=1)
del TINY_TRIALS["test_split"]  # a trial's metrics are its validation metrics
TINY = [*as_flags(TINY_TRIALS), "--early_stopping_patience=0"]


def run_tune(*args, timeout=300, **environment):
    return run_program(["-m", "trainers.tune", *args], timeout=timeout, **environment)


def tune_in_process(capsys, *args):
    """``python -m trainers.tune ARGS`` in this process: `program_in_process`."""
    return program_in_process("trainers.tune", args, capsys)


def hparams_records(directory):
    """{run folder: [HParamsPluginData, ...]} of the event files directly in each folder under ``directory``."""
    found = {}
    for path in glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"), recursive=True):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    found.setdefault(os.path.relpath(os.path.dirname(path), directory), []).append(data)
    return found


# One execution of a trial, as small as the trainer takes: the Fashion CNN on 64 shapes at 16 px.
TINY_TRIAL = dict(
    model="fashion_cnn",
    image_size=16,
    train_split="train[:64]",
    validation_split="validation[:16]",
    batch_size=16,
    adapt_steps=1,
)


def config(tmp_path, **overrides):
    return TrainConfig(model_dir=str(tmp_path / "search"), model="fashion_cnn", **overrides)


# ------------------------------------------------------------------------------------- the space


def test_the_space_is_declared_beside_the_model_and_the_trainer():
    names = lambda c: [p.name for p in tuning.declared_space(tune.declare_for(c)).space]  # noqa: E731
    trainer = ["optimizer", "learning_rate", "lr_schedule", "augment", "augment_policy", "label_smoothing"]
    trainer.append("weight_decay")
    assert names(TrainConfig(model="fashion_cnn")) == [*trainer, "warmup", "ema", "filters", "dense_units", "dropout"]
    assert names(TrainConfig(model="resnet18")) == [*trainer, "warmup", "ema", "base_width", "depth"]
    transfer = TrainConfig(model="xception", freeze_epochs=1, finetune_epochs=1)
    # One-epoch phases have no room for a warmup epoch.
    assert names(transfer) == [*trainer, "ema", "finetune_learning_rate", "unfreeze_from"]
    # A decay is a schedule of its own: the schedule (and the warmup) is then not searched.
    decayed = names(TrainConfig(model="fashion_cnn", lr_decay=1e-4))
    assert "lr_schedule" not in decayed and "warmup" not in decayed


def test_the_settings_of_a_trial_are_a_valid_training_config():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Fixed("depth", 34)
    hp.Fixed("base_width", 16)
    hp.Fixed("augment", True)
    settings = search_space(hp, TrainConfig(model="resnet18"))
    trial = dataclasses.replace(TrainConfig(model="resnet18"), **settings)
    assert trial.model == "resnet34" and trial.builder_options == {"widths": (16, 32, 64, 128)}
    assert trial.augment == ("crop", "flip")  # the seed's pair, no policy by default

    assert trial.augment == ("crop", "flip")
    hp = kt.HyperParameters()
    for name, value in (("label_smoothing", 0.1), ("weight_decay", 1e-4), ("warmup", True), ("ema", True)):
        hp.Fixed(name, value)
    trial = dataclasses.replace(TrainConfig(model="resnet18"), **search_space(hp, TrainConfig(model="resnet18")))
    assert (trial.label_smoothing, trial.weight_decay, trial.warmup_epochs, trial.ema) == (0.1, 1e-4, 1, True)
    hp = kt.HyperParameters()
    hp.Fixed("unfreeze_from", "all")
    transfer = TrainConfig(model="xception", freeze_epochs=1, finetune_epochs=1, unfreeze_from="block14_sepconv1")
    assert dataclasses.replace(transfer, **search_space(hp, transfer)).unfreeze_from is None


def test_the_search_chooses_an_augmentation_policy_that_fits_the_head():
    import keras_tuner as kt

    def searched(config, policy):
        hp = kt.HyperParameters()
        hp.Fixed("augment", True)
        hp.Fixed("augment_policy", policy)
        return dataclasses.replace(config, **search_space(hp, config))

    plain = TrainConfig(model="fashion_cnn", augment=("flip",))
    assert searched(plain, "mixup,cutmix").augment == ("flip", "mixup", "cutmix")
    assert searched(plain, "mixup,cutmix").mixes_labels
    assert searched(plain, "none").augment == ("flip",)
    # The policy list: every one for classify, the run's own too; only erase for a box head.
    hp = kt.HyperParameters()
    search_space(hp, TrainConfig(model="fashion_cnn", augment=("randaugment", "erase")))
    assert hp.get("augment_policy") == "randaugment,erase"
    assert list(hp._hps["augment_policy"][0].values) == [
        "none",
        "randaugment",
        "erase",
        "mixup",
        "cutmix",
        "mixup,cutmix",
        "randaugment,erase",
    ]
    hp = kt.HyperParameters()
    search_space(hp, TrainConfig(model="resnet18", head="localize"))
    assert list(hp._hps["augment_policy"][0].values) == ["none", "erase"]


def test_a_hyperband_budget_shorter_than_the_warmup_shrinks_the_warmup(tmp_path):
    config = TrainConfig(model="resnet18", epochs=4)
    settings = {"warmup_epochs": 1, "ema": True}
    short = tune.trial_config(config, settings, str(tmp_path), tuning.Budget(epochs=1), 0)
    assert (short.epochs, short.warmup_epochs, short.ema) == (1, 0, True)
    longer = tune.trial_config(config, settings, str(tmp_path), tuning.Budget(epochs=3, initial_epoch=1), 0)
    assert (longer.epochs, longer.warmup_epochs) == (2, 1)


def test_fix_and_space_pin_and_narrow_what_is_searched():
    declare = tune.declare_for(TrainConfig(model="fashion_cnn"))
    overrides = tuning.restrict(
        tuning.declared_space(declare),
        fixes=["learning_rate=0.01", "augment=false"],
        ranges=["dropout=0.2..0.4", "optimizer=adam,sgd", "filters=16,32"],
    )
    space = {p.name: p for p in tuning.declared_space(declare, onto=overrides).space}
    assert type(space["learning_rate"]).__name__ == "Fixed" and space["learning_rate"].value == 0.01
    assert space["augment"].value is False
    assert (space["dropout"].min_value, space["dropout"].max_value) == (0.2, 0.4)
    assert space["optimizer"].values == ["adam", "sgd"] and space["filters"].values == [16, 32]
    assert space["dense_units"].values == [32, 64, 128]  # untouched: as declared
    listing = "\n".join(tuning.describe(tuning.declared_space(declare, onto=overrides)))
    assert "learning_rate" in listing and "fixed at 0.01" in listing and "[0.2, 0.4]" in listing


@pytest.mark.parametrize(
    "fixes, ranges, message",
    [
        (
            ["lr=0.1"],
            [],
            "--fix=lr=0.1: 'lr' is not a hyperparameter of this search; accepted: optimizer, learning_rate",
        ),
        (["learning_rate"], [], "--fix=learning_rate: give NAME=VALUE, e.g. learning_rate=0.01"),
        (["filters=wide"], [], "--fix=filters=wide: filters takes int values, not 'wide'"),
        ([], ["dropout=0.6..0.2"], "--space=dropout=0.6..0.2: the range 0.6..0.2 is empty or inverted"),
        ([], ["dropout=0.3..0.3"], "--space=dropout=0.3..0.3: the range 0.3..0.3 is empty or inverted"),
        ([], ["optimizer=,"], "--space=optimizer=,: the choice optimizer needs at least one value"),
        ([], ["dropout=0.5"], "--space=dropout=0.5: dropout is a number: give a range LOW..HIGH"),
        ([], ["learning_rate=0..0.1"], "learning_rate is sampled on a log scale: LOW must be above 0"),
        ([], ["augment=true,false"], "--space=augment=true,false: augment is Boolean: fix it with --fix=augment=VALUE"),
        (
            ["dropout=0.1"],
            ["dropout=0.2..0.3"],
            "--space=dropout=0.2..0.3: dropout is already given by --fix=dropout=0.1",
        ),
    ],
)
def test_a_bad_override_is_one_line_naming_it(fixes, ranges, message):
    declared = tuning.declared_space(tune.declare_for(TrainConfig(model="fashion_cnn")))
    with pytest.raises(tuning.SearchError) as raised:
        tuning.restrict(declared, fixes, ranges)
    assert message in raised.value.flag_message()


@pytest.mark.parametrize(
    "settings, tune_settings, message",
    [
        ({}, dict(objective="val_mean_iou"), "--objective=val_mean_iou: is not a validation metric of a classify "),
        ({}, dict(space=("dropout=0.5..0.1",)), "--space=dropout=0.5..0.1: the range 0.5..0.1 is empty or inverted"),
        ({}, dict(fix=("depth=34",)), "--fix=depth=34: 'depth' is not a hyperparameter of this search"),
        (dict(validation_split=""), {}, "--validation_split=: a search judges trials on a validation split"),
        (dict(strategy="multi_worker"), {}, "--strategy=multi_worker: is not available inside trials"),
        ({}, dict(tuner="grid"), "--tuner=grid: accepted: random, bayesian, hyperband"),
        (dict(bn_momentum=0.9), {}, "--bn_momentum=0.9: fashion_cnn has no BatchNormalization layer"),
        # A pinned value that every trial would fail on (each was a failed trial, then "no trial finished").
        ({}, dict(fix=("dropout=2",)), "--fix=dropout=2: fashion_cnn cannot be built with it: dropout must be a"),
        (
            {},
            dict(fix=("optimizer=adam", "label_smoothing=0.95")),
            "--fix=optimizer=adam,label_smoothing=0.95: a trial cannot run with it: label_smoothing=0.95: must be at",
        ),
    ],
)
def test_bad_settings_are_refused_before_any_trial(tmp_path, settings, tune_settings, message):
    with pytest.raises(ValueError) as raised:
        tune.make_search(config(tmp_path, **settings), tune.TuneConfig(**tune_settings)).run()
    assert raised.value.flag_message().startswith(message)
    assert not os.path.exists(tmp_path / "search")  # nothing was written


def test_a_bn_momentum_search_is_checked_on_the_model_and_its_trials_keep_it(tmp_path):
    settings = TrainConfig(model_dir=str(tmp_path / "search"), model="resnet18", bn_momentum=0.9)
    tune.check(settings, tune.TuneConfig())  # ResNet-18 has BatchNormalization: nothing raised
    trial = tune.trial_config(settings, {"learning_rate": 0.01}, str(tmp_path / "t"), None, 0)
    assert trial.bn_momentum == 0.9


@pytest.mark.slow
def test_the_program_refuses_bad_settings_in_one_line_and_lists_the_space(tmp_path, capsys):
    result = run_tune(f"--model_dir={tmp_path / 'search'}", *TINY, "--objective=val_mean_iou")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --objective=val_mean_iou: is not a validation metric of a classify model; "), last
    assert "accepted: val_loss, val_accuracy" in last
    assert not os.path.exists(tmp_path / "search")
    listing = tune_in_process(capsys, *TINY, "--list_space", "--fix=optimizer=adam")
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert listing.stdout.splitlines()[0].split()[:2] == ["optimizer", "Fixed"]


# ------------------------------------------------------------------------------------- a real search


@pytest.mark.slow
def test_a_search_logs_one_hparams_session_per_trial_and_its_best_flags_train(tmp_path, capsys):
    search = tmp_path / "search"
    # The program and its trials in this process: each trial in its own process is the default,
    # tested by the kill and worker tests.
    result = tune_in_process(
        capsys, f"--model_dir={search}", *TINY, "--max_trials=2", "--space=dropout=0.1..0.3", "--notrial_process"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 trial(s) completed, 0 failed" in result.stdout
    assert "rank  trial  val_accuracy" in result.stdout

    records = hparams_records(str(search / "trials"))
    experiment = [r.experiment for r in records.pop(".") if r.HasField("experiment")]
    assert len(experiment) == 1
    domains = {info.name: info for info in experiment[0].hparam_infos}
    # The domains as declared (and narrowed), not guessed from the values tried.
    assert list(domains["optimizer"].domain_discrete.values) and len(domains["optimizer"].domain_discrete.values) == 5
    assert (domains["learning_rate"].domain_interval.min_value, domains["learning_rate"].domain_interval.max_value) == (
        pytest.approx(1e-4),
        pytest.approx(0.1),
    )
    assert [v.number_value for v in domains["dropout"].domain_discrete.values] == pytest.approx([0.1, 0.2, 0.3])
    assert {m.name.tag for m in experiment[0].metric_infos} == {"val_loss", "val_accuracy"}
    sessions = {
        run: [r.session_start_info for r in found if r.HasField("session_start_info")] for run, found in records.items()
    }
    assert sorted(sessions) == ["0", "1"] and all(len(s) == 1 for s in sessions.values())
    assert set(sessions["0"][0].hparams) == set(domains)
    for trial in sessions:  # the final metrics, in the session's own folder
        assert len(logged(str(search / "trials" / trial), "val_accuracy")) == 1
        assert os.path.exists(search / "trials" / trial / "execution0" / "model.keras")
        assert not os.path.exists(search / "trials" / trial / "execution0" / "export")  # trials are not exported

    best = search / "best.flags"
    recorded = TrainConfig.from_flagfile(str(best))
    assert recorded.test_split == "test" and 0.1 <= recorded.builder_options["dropout"] <= 0.3
    status, _, err = train_in_process(
        [f"--flagfile={best}", f"--model_dir={tmp_path / 'final'}", "--test_split=test[:16]"], capsys
    )
    assert status == 0, err[-3000:]
    assert TrainConfig.from_flagfile(str(tmp_path / "final" / "flags.txt")).model_options == recorded.model_options

    # Other settings on the same folder are refused, naming the first that differs.
    other = tune.make_search(
        TrainConfig(**TINY_TRIALS, model_dir=str(search)),
        tune.TuneConfig(tuner="bayesian", max_trials=2, space=("dropout=0.1..0.3",), early_stopping_patience=0),
    )
    with pytest.raises(tuning.SearchError, match="holds a search with tuner='random'; rerun with the same settings"):
        other.check_directory()
    # Other training settings: the flags that differ, not the trials' whole command lines.
    other = tune.make_search(
        TrainConfig(**{**TINY_TRIALS, "batch_size": 8, "epochs": 3}, model_dir=str(search)),
        tune.TuneConfig(max_trials=2, space=("dropout=0.1..0.3",), early_stopping_patience=0),
    )
    with pytest.raises(tuning.SearchError) as refused:
        other.check_directory()
    assert refused.value.flag_message() == (
        f"--model_dir={search}: holds a search with other trials: --batch_size=16 --epochs=2 there, --batch_size=8 "
        "--epochs=3 here; rerun with the same settings to resume it, or use another model_dir or --overwrite"
    )


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_without_rerunning_finished_trials(tmp_path, capsys):
    """kill -9 of the program mid-trial; the rerun in process (its trial in a process of its own)."""
    search = tmp_path / "search"
    args = (f"--model_dir={search}", *[a for a in TINY if not a.startswith("--epochs")], "--epochs=4", "--max_trials=2")
    # kill -9 of the search while its second trial trains (after that trial's first epoch); the
    # trial's own process dies with it.
    process = start_program(["-m", "trainers.tune", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backup = search / "trials" / "1" / "execution0" / "backup"
    deadline = time.time() + 300
    while not backup.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert backup.exists(), "the second trial never wrote a backup"
    first = search / "trials" / "0" / "execution0"
    finished_before = os.path.getmtime(first / "metrics.json")
    values_before = hparams_records(str(search / "trials"))["1"][0].session_start_info.hparams

    resumed = tune_in_process(capsys, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 trial(s) completed, 0 failed" in resumed.stdout
    assert os.path.getmtime(first / "metrics.json") == finished_before  # trial 0 was not rerun
    # Trial 1 ran again with the same values and went on from its last epoch: each epoch logged once.
    records = hparams_records(str(search / "trials"))["1"]
    starts = [r.session_start_info for r in records if r.HasField("session_start_info")]
    assert len(starts) == 2 and all(s.hparams == values_before for s in starts)
    steps = [step for step, _ in logged(str(search / "trials" / "1" / "execution0" / "logs" / "train"), "epoch_loss")]
    assert steps == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, capfd):
    calls = []

    def run_trial(trial_id, directory, settings, budget, execution):
        calls.append(trial_id)
        if trial_id == "0":
            raise tuning.TrialFailed("loss became nan at epoch 1, batch 1")
        return {"val_accuracy": 0.5 + 0.1 * len(calls), "val_loss": 1.0}

    import keras_tuner as kt

    declare = lambda hp: {"rate": hp.Float("rate", 0.1, 1.0)}  # noqa: E731
    search = tuning.Search(
        str(tmp_path / "search"),
        declare,
        run_trial,
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=3,
        trial_process=False,
    )
    result = search.run()
    assert calls == ["0", "1", "2"]
    assert (result.completed, result.failed) == (2, 1)
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err  # the failure is one line (absl's warning)
    assert [t.trial_id for t in result.best[:2]] == ["2", "1"]
    assert "trial" in tuning.best_table(result.best, "val_accuracy")

    def always_fails(trial_id, *args):
        raise tuning.TrialFailed(f"out of memory in trial {trial_id}")

    stopping = tuning.Search(
        str(tmp_path / "failing"),
        declare,
        always_fails,
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=5,
        max_failed_trials=2,
        trial_process=False,
    )
    with pytest.raises(
        tuning.SearchStopped, match=r"consecutive failures exceeded the limit of 2.*out of memory in trial 1"
    ):
        stopping.run()


@pytest.mark.slow
@pytest.mark.parametrize("kind", tuning.TUNERS)
def test_each_tuner_runs_a_search(tmp_path, kind):
    import keras_tuner as kt

    seen = []

    def run_trial(trial_id, directory, settings, budget, execution):
        seen.append((settings["rate"], budget))
        return {"val_loss": (settings["rate"] - 0.3) ** 2}

    search = tuning.Search(
        str(tmp_path / kind),
        lambda hp: {"rate": hp.Float("rate", 0.0, 1.0)},
        run_trial,
        objective=kt.Objective("val_loss", "min"),
        tuner=kind,
        max_trials=4,
        max_epochs=3,
        trial_process=False,
    )
    result = search.run()
    assert result.completed == len(seen) == 4
    if kind == "hyperband":
        assert all(budget is not None and 1 <= budget.epochs <= 3 for _, budget in seen)
    else:
        assert all(budget is None for _, budget in seen)


def test_executions_of_a_trial_are_averaged(tmp_path):
    import keras_tuner as kt

    calls = []

    def run_trial(trial_id, directory, settings, budget, execution):
        calls.append((trial_id, execution))
        return {"val_accuracy": 0.5 + 0.2 * execution, "val_loss": 1.0}

    search = tuning.Search(
        str(tmp_path / "search"),
        lambda hp: {"rate": hp.Float("rate", 0.1, 1.0)},
        run_trial,
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=2,
        executions_per_trial=3,
        trial_process=False,
        metrics=["val_accuracy", "val_loss"],
    )
    result = search.run()
    assert calls == [("0", 0), ("0", 1), ("0", 2), ("1", 0), ("1", 1), ("1", 2)]
    assert [t.score for t in result.best] == pytest.approx([0.7, 0.7])
    assert logged(str(tmp_path / "search" / "trials" / "0"), "val_accuracy") == [(0, pytest.approx(0.7))]


def test_each_trial_stops_early_on_its_objective(tmp_path, monkeypatch):
    import trainers.training

    seen = {}

    def fake_train(config, *, callbacks=(), export=True):
        seen.update(config=config, callbacks=callbacks, export=export)
        return trainers.training.TrainResult(
            run=None, metrics={"accuracy": 0.5, "loss": 1.0, "num_examples": 8}, model=None
        )

    monkeypatch.setattr(trainers.training, "train", fake_train)
    base = TrainConfig(model="fashion_cnn", validation_split="validation[:8]", test_split="test")
    settings = {"learning_rate": 0.003, "model_options": {"dropout": 0.2}}
    objective = tune.objective_of(base, tune.TuneConfig())
    metrics = tune.run_trial(base, objective, 2, "7", str(tmp_path / "7"), settings, None, 1)
    assert metrics == {"val_accuracy": 0.5, "val_loss": 1.0}
    (stopping,) = seen["callbacks"]
    assert (stopping.monitor, stopping.patience, stopping.mode) == ("val_accuracy", 2, "max")
    config = seen["config"]
    assert config.model_dir == str(tmp_path / "7" / "execution1") and config.seed == base.seed + 1
    assert config.test_split == "validation[:8]" and config.learning_rate == 0.003 and not seen["export"]
    # An objective Keras does not log while fitting (computed at evaluation) stops on val_loss.
    localize = dataclasses.replace(base, head="localize")
    tune.run_trial(
        localize,
        tune.objective_of(localize, tune.TuneConfig(objective="val_map_50")),
        2,
        "8",
        str(tmp_path / "8"),
        settings,
        None,
        0,
    )
    assert (seen["callbacks"][0].monitor, seen["callbacks"][0].mode) == ("val_loss", "min")


def trial_in_a_child(trial_id, directory, settings, budget, execution):
    """A trial run in its own process: killed as by the OOM killer, failing, or finishing."""
    if trial_id == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    if trial_id == "1":
        raise tuning.TrialFailed("loss became nan")
    if trial_id == "3":
        raise ValueError("a bug in the trial")
    return {"val_accuracy": 0.75, "pid": float(os.getpid())}


@pytest.mark.slow
def test_each_trial_runs_in_its_own_process_and_a_killed_one_is_a_failed_trial(tmp_path):
    import keras_tuner as kt

    search = tuning.Search(
        str(tmp_path / "search"),
        lambda hp: {"rate": hp.Float("rate", 0.1, 1.0)},
        trial_in_a_child,
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=4,
    )
    result = search.run()
    assert (result.completed, result.failed) == (1, 3)
    trials = {t.trial_id: t for t in search.tuner().oracle.trials.values()}
    assert "killed by SIGKILL (the kernel's out-of-memory killer sends it)" in trials["0"].message
    assert "loss became nan" in trials["1"].message
    assert "the trial raised ValueError: a bug in the trial" in trials["3"].message
    assert trials["2"].metrics.get_last_value("pid") != os.getpid()


def trial_reports_where_it_runs(tag):
    """A trial that says what it runs in: its environment, folder, process and output."""
    print(f"stdout of trial {tag}", flush=True)
    print(f"stderr of trial {tag}", file=sys.stderr, flush=True)
    return {"variable": os.environ.get("ZOO_TRIAL_PROBE"), "directory": os.getcwd(), "pid": os.getpid()}


@pytest.mark.slow
def test_a_trial_has_the_searchs_environment_folder_and_output_as_they_are_when_it_starts(tmp_path, monkeypatch, capfd):
    # The fork server started once, with what the process had then; each trial gets what it has now,
    # as a freshly started process would.
    seen = []
    for tag in ("first", "second"):
        monkeypatch.setenv("ZOO_TRIAL_PROBE", tag)
        (tmp_path / tag).mkdir()
        monkeypatch.chdir(tmp_path / tag)
        seen.append(tuning.run_in_child(trial_reports_where_it_runs, (tag,)))
    assert [trial["variable"] for trial in seen] == ["first", "second"]
    assert [trial["directory"] for trial in seen] == [str(tmp_path / "first"), str(tmp_path / "second")]
    assert len({os.getpid(), *(trial["pid"] for trial in seen)}) == 3
    captured = capfd.readouterr()
    assert "stdout of trial first" in captured.out and "stdout of trial second" in captured.out, captured
    assert "stderr of trial first" in captured.err and "stderr of trial second" in captured.err, captured


def trial_leaves_temporary_files(record, killed):
    """A trial that leaves temporary files behind, as TensorFlow does for each function AutoGraph
    converts (removed only by an exit handler), writes their paths to ``record``, then ends."""
    import tempfile

    import tensorflow as tf

    before = set(os.listdir(tempfile.gettempdir()))

    @tf.function
    def converted(x):
        if x > 0:  # a Python `if` on a tensor: AutoGraph writes the function's new source to a file
            x -= 1
        return x

    converted(tf.constant(1))
    handle, _ = tempfile.mkstemp()
    os.close(handle)
    left = [os.path.join(tempfile.gettempdir(), name) for name in set(os.listdir(tempfile.gettempdir())) - before]
    with open(record, "w") as f:
        json.dump(left, f)
    if killed:
        os.kill(os.getpid(), signal.SIGKILL)
    return {}


@pytest.mark.slow
def test_a_trial_leaves_no_temporary_files_however_it_ends(tmp_path):
    for killed in (False, True):
        record = tmp_path / f"left-{killed}.json"
        if killed:
            with pytest.raises(tuning.TrialFailed, match="killed by SIGKILL"):
                tuning.run_in_child(trial_leaves_temporary_files, (str(record), killed))
        else:
            tuning.run_in_child(trial_leaves_temporary_files, (str(record), killed))
        left = json.loads(record.read_text())
        assert len(left) == 2 and any("__autograph_generated_file" in name for name in left), left
        assert not [name for name in left if os.path.exists(name)], left


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_trial_dies_when_its_search_is_killed(tmp_path):
    pids = tmp_path / "pids"
    # The trial runs `sh`, which writes its own and its parent's (the trial's) PID, then sleeps.
    script = f"echo $$ $PPID > {pids}.new && mv {pids}.new {pids} && exec sleep 300"
    code = (
        "import functools, subprocess\n"
        "from pipelines import tuning\n"
        "if __name__ == '__main__':\n"
        f"    tuning.run_in_child(functools.partial(subprocess.run, ['sh', '-c', {script!r}]), ())\n"
    )
    search = start_program(["-c", code])
    sleeper = None
    try:
        deadline = time.time() + 120
        while not pids.exists() and search.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert pids.exists(), f"the trial never started (search: {search.poll()})"
        sleeper, trial = map(int, pids.read_text().split())
        assert alive(trial)
        search.kill()  # kill -9: the search has no chance to stop its trial itself
        search.wait()
        deadline = time.time() + 30
        while alive(trial) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(trial)
    finally:
        search.kill()
        if sleeper is not None and alive(sleeper):
            os.kill(sleeper, signal.SIGKILL)


@pytest.mark.slow
def test_the_fork_server_imports_whatever_a_trial_imports():
    # Whatever a trial imports that the server did not, every trial imports again: seconds each.
    code = (
        "import importlib, sys, tempfile\n"
        "from trainers import tune\n"
        "from trainers.config import TrainConfig\n"
        "from tensorflow.python.eager import context\n"
        "for name in tune.TRIAL_IMPORTS:\n"
        "    importlib.import_module(name)\n"
        "print('devices probed:', context.context()._physical_devices is not None)\n"
        "with tempfile.TemporaryDirectory() as work:\n"
        f"    config = TrainConfig(model_dir=work, **{dict(TINY_TRIAL, epochs=1, steps_per_epoch=1)!r})\n"
        "    objective = tune.objective_of(config, tune.TuneConfig())\n"
        "    before = set(sys.modules)\n"
        "    tune.run_trial(config, objective, 0, '0', work + '/0', {}, None, 0)\n"
        "new = set(sys.modules) - before\n"
        "ours = sorted(m for m in new if m.split('.')[0] in ('zoo', 'pipelines', 'trainers'))\n"
        "packages = sorted({m.split('.')[0] for m in new} - {m.split('.')[0] for m in before})\n"
        "print('new:', ours, [p for p in packages if not p.startswith('__autograph_generated')])\n"
    )
    out = python_code(code, ZOO_FORK_SERVER="1")  # as the server's environment has it
    assert out.returncode == 0, out.stderr[-3000:]
    # ...and none of it starts a device (CUDA started before a fork is unusable after it).
    assert "devices probed: False" in out.stdout.splitlines(), out.stdout[-2000:]
    assert "new: [] []" in out.stdout.splitlines(), out.stdout[-2000:]


@pytest.mark.slow
def test_a_nan_loss_fails_the_trial_not_the_search(tmp_path):
    base = TrainConfig(**TINY_TRIAL, epochs=1, steps_per_epoch=1)
    objective = tune.objective_of(base, tune.TuneConfig())
    settings = {"optimizer": "sgd", "learning_rate": 1e30, "model_options": {"dropout": 0.0}}
    # One step at 1e30: its loss is taken before the update, so only the validation loss is not finite
    # (a second step's own loss can already be NaN, depending on the precision the CPU picks).
    with pytest.raises(tuning.TrialFailed, match=r"val_loss is not finite \(NaN or inf\)"):
        tune.run_trial(base, objective, 0, "0", str(tmp_path / "0"), settings, None, 0)
    # Six steps: the training loss itself becomes NaN, and the trainer stops.
    longer = dataclasses.replace(base, steps_per_epoch=None, train_split="train[:96]")
    # One line, the reason alone: no advice to rerun (a search does not resume a failed trial).
    with pytest.raises(tuning.TrialFailed, match=r"^loss became nan at epoch 1, batch \d+; try a lower learning_rate$"):
        tune.run_trial(longer, objective, 0, "1", str(tmp_path / "1"), settings, None, 0)


@pytest.mark.slow
def test_a_distributed_search_with_a_chief_and_a_worker_finishes_and_both_exit(tmp_path):
    search = tmp_path / "search"
    oracle = dict(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    command = [
        "-m",
        "trainers.tune",
        f"--model_dir={search}",
        *TINY,
        "--max_trials=2",
        "--strategy=mirrored",  # inside each trial
        "--logical_cpus=2",
    ]
    # The worker first: it waits for the chief to mark the folder, writing nothing before. The
    # chief starts once the worker says it waits (its log line, not a sleep).
    processes = {}
    for name in ("tuner0", "chief"):
        processes[name] = start_program(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, KERASTUNER_TUNER_ID=name, **oracle
        )
        if name == "tuner0":
            waited = ""
            for line in iter(processes[name].stderr.readline, ""):
                waited += line
                if "waiting up to" in line:
                    break
            assert "for the chief to start the search in" in waited, waited[-3000:]
    outputs = {name: process.communicate(timeout=400) for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, (name, outputs[name][1][-3000:])
    assert "2 trial(s) completed, 0 failed" in outputs["chief"][0]
    assert "worker: the search is done" in outputs["tuner0"][0]
    assert "[train] epoch" in outputs["tuner0"][1] and "[train] epoch" not in outputs["chief"][1]
    assert "strategy MirroredStrategy with 2 replica(s)" in outputs["tuner0"][1]
    assert os.path.exists(search / "best.flags")


@pytest.mark.slow
def test_a_worker_without_a_chief_gives_up_after_peer_timeout(tmp_path):
    result = run_tune(
        f"--model_dir={tmp_path / 'search'}",
        *TINY,
        "--peer_timeout=2",
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(free_port()),
        KERASTUNER_TUNER_ID="tuner0",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --peer_timeout=2: no chief (KERASTUNER_TUNER_ID=chief) started a search in {tmp_path / 'search'} "
        "within 2 s"
    )


@pytest.mark.slow
def test_hyperband_continues_a_trial_from_its_parents_weights(tmp_path, capsys):
    search = tmp_path / "search"
    # Hyperband's smallest bracket that continues a trial: factor 2 over TINY's 2 epochs, two trials
    # of one epoch, then the better one trained on from its weights.
    result = tune_in_process(
        capsys,
        f"--model_dir={search}",
        *TINY,
        "--tuner=hyperband",
        "--hyperband_factor=2",
        "--max_trials=3",
        "--notrial_process",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    continued = []
    for flags_file in glob.glob(str(search / "trials" / "*" / "execution0" / "flags.txt")):
        recorded = TrainConfig.from_flagfile(flags_file)
        if recorded.weights:
            continued.append(recorded)
            assert recorded.weights.endswith(os.path.join("execution0", "checkpoints", "train.weights.h5"))
    assert continued, "no trial continued from a parent"


# ------------------------------------------------------------------------------------- pruning


def test_the_median_pruner_compares_with_the_finished_trials_at_the_same_epoch(tmp_path):
    pruner = tuning.MedianPruner(str(tmp_path), "val_accuracy", maximize=True, after=2, startup_trials=2)
    for trial_id, values in (("a", [0.5, 0.7]), ("b", [0.4, 0.5]), ("c", [0.9, 0.95])):
        for epoch, value in enumerate(values, start=1):
            pruner.record(trial_id, 0, epoch, value)
    pruner.mark("a", 1, "finished")
    # One finished trial: too few for a median (startup_trials=2).
    assert pruner.should_prune("x", 0, 2, 0.1) is None
    pruner.mark("b", 1, "finished")
    assert pruner.median("x", 0, 2) == pytest.approx(0.6)  # a and b; c still running
    assert pruner.should_prune("x", 0, 1, 0.1) is None  # before prune_after
    assert pruner.should_prune("x", 0, 2, 0.65) is None
    assert pruner.should_prune("x", 0, 2, 0.55) == (
        "pruned after epoch 2: val_accuracy=0.55, the finished trials' median 0.6"
    )
    assert pruner.median("x", 0, 3) is None  # no finished trial went that far
    pruner.mark("c", 1, "pruned")
    assert (pruner.status("a"), pruner.status("c"), pruner.status("x")) == ("finished", "pruned", None)
    assert pruner.median("x", 0, 2) == pytest.approx(0.6)  # a pruned trial never makes the median
    # A loss is pruned when above the median.
    losses = tuning.MedianPruner(str(tmp_path), "val_loss", maximize=False, startup_trials=2)
    assert losses.should_prune("x", 0, 2, 0.61) and not losses.should_prune("x", 0, 2, 0.59)


@pytest.mark.slow
def test_a_pruned_trial_is_recorded_as_pruned_shown_with_its_last_value_and_not_resumed(tmp_path):
    import keras_tuner as kt

    calls = []
    directory = tmp_path / "search"
    pruner = tuning.MedianPruner(str(directory / "trials"), "val_accuracy", maximize=True, startup_trials=2)

    def run_trial(trial_id, session, settings, budget, execution):
        calls.append(trial_id)
        value = {"0": 0.8, "1": 0.6, "2": 0.3, "3": 0.9}[trial_id]
        for epoch in (1, 2):
            pruner.record(trial_id, execution, epoch, value)
            reason = pruner.should_prune(trial_id, execution, epoch, value)
            if reason:
                raise tuning.TrialPruned({"val_accuracy": value, "val_loss": 1 - value}, epoch, reason)
        return {"val_accuracy": value, "val_loss": 1 - value}

    def search(max_trials):
        return tuning.Search(
            str(directory),
            lambda hp: {"rate": hp.Float("rate", 0.1, 1.0)},
            run_trial,
            objective=kt.Objective("val_accuracy", "max"),
            max_trials=max_trials,
            metrics=["val_accuracy", "val_loss"],
            trial_process=False,
            pruner=pruner,
        )

    result = search(4).run()
    assert calls == ["0", "1", "2", "3"]
    assert (result.completed, result.failed, result.pruned) == (3, 0, 1)
    assert [t.trial_id for t in result.best] == ["3", "0", "1"]  # the pruned one is never the best
    assert pruner.status("2") == "pruned" and pruner.status("1") == "finished"
    # TensorBoard's HParams table: its last value, and after which epoch it was pruned.
    _, metrics = tuning.read_session(str(directory / "trials" / "2"))
    assert metrics == {"val_accuracy": pytest.approx(0.3), "val_loss": pytest.approx(0.7), "pruned_after_epoch": 1.0}
    assert tuning.read_session(str(directory / "trials" / "0"))[1]["pruned_after_epoch"] == 0.0
    # Resumed: the pruned trial is kept as it is, not run again.
    calls.clear()
    again = search(4).run()
    assert calls == [] and (again.completed, again.pruned) == (3, 1)


def test_prune_settings_that_cannot_work_are_one_line(tmp_path):
    localize = TrainConfig(model_dir=str(tmp_path / "s"), model="resnet18", head="localize")
    with pytest.raises(tuning.SearchError) as caught:
        tune.check(localize, tune.TuneConfig(prune="median", objective="val_map_50"))
    assert caught.value.flag_message().startswith(
        "--prune=median: needs an objective that training logs after each epoch; val_map_50 is computed only"
    )
    with pytest.raises(tuning.SearchError, match="Hyperband stops trials early itself"):
        tune.check(config(tmp_path), tune.TuneConfig(prune="median", tuner="hyperband"))
    with pytest.raises(tuning.SearchError, match=r"^prune='mean': accepted: none, median$"):
        tune.check(config(tmp_path), tune.TuneConfig(prune="mean"))


@pytest.mark.slow
def test_the_trainer_prunes_a_trial_below_the_median_after_its_epoch(tmp_path):
    base = TrainConfig(**TINY_TRIAL, epochs=3)
    objective = tune.objective_of(base, tune.TuneConfig())
    pruner = tuning.MedianPruner(str(tmp_path), "val_accuracy", maximize=True, startup_trials=1)
    pruner.record("0", 0, 1, 1.01)  # a finished trial no real one can beat after epoch 1
    pruner.mark("0", 1, "finished")
    with pytest.raises(tuning.TrialPruned) as caught:
        tune.run_trial(base, objective, 0, "1", str(tmp_path / "1"), {}, None, 0, pruner=pruner)
    assert caught.value.epoch == 1 and set(caught.value.metrics) == {"val_accuracy", "val_loss"}
    assert caught.value.reason.startswith("pruned after epoch 1: val_accuracy=")
    assert list(json.load(open(tmp_path / "1" / "curve0.json"))["values"]) == ["1"]  # one epoch trained
    # Through a trial's process too (the exception crosses the pipe).
    with pytest.raises(tuning.TrialPruned, match="pruned after epoch 1"):
        tuning.run_in_child(
            functools.partial(tune.run_trial, base, objective, 0, pruner=pruner),
            ("3", str(tmp_path / "3"), {}, None, 0),
        )
