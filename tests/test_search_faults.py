"""A search never loses work: a second search on its folder, a full disk, damaged keras-tuner
state. Trials here are plain functions (no training), so each case costs seconds."""

import errno
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import pipelines.tuning as tuning
from pipelines import durable


def make_search(directory, run_trial, max_trials=4):
    import keras_tuner as kt

    return tuning.Search(
        str(directory),
        lambda hp: {"rate": hp.Float("rate", 0.0, 1.0)},
        run_trial,
        objective=kt.Objective("val_loss", "min"),
        tuner="random",
        max_trials=max_trials,
        max_epochs=1,
        trial_process=False,
    )


def counting_trial(seen):
    def run_trial(trial_id, directory, settings, budget, execution):
        seen.append(trial_id)
        return {"val_loss": (settings["rate"] - 0.3) ** 2}

    return run_trial


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def state_files(directory):
    return glob.glob(os.path.join(directory, tuning.TUNER_DIR, "**", "*.json"), recursive=True)


def test_a_second_search_on_the_folder_is_refused_naming_the_first_and_a_stale_lock_is_taken_over(tmp_path):
    folder = tmp_path / "search"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"host": socket.gethostname(), "pid": holder.pid, "since": time.time()}
        (folder / tuning.LOCK_FILE).write_text(json.dumps(lock))
        seen = []
        with pytest.raises(tuning.SearchError, match=rf"in use by another search \(pid {holder.pid} on "):
            make_search(folder, counting_trial(seen)).run()
        assert seen == [] and tree(folder) == [tuning.LOCK_FILE]  # nothing else touched
    finally:
        holder.kill()
        holder.wait()
    result = make_search(folder, counting_trial(seen)).run()  # the holder is gone: taken over
    assert result.completed == len(seen) == 4
    assert not os.path.exists(folder / tuning.LOCK_FILE)  # released at the end


def test_a_full_disk_stops_the_search_in_one_line_and_the_rerun_resumes(tmp_path, monkeypatch):
    folder = tmp_path / "search"
    writes = []
    original = durable.atomic_write

    def filling_up(path, data):
        if path.endswith("trial.json"):
            writes.append(path)
            if len(writes) == 5:  # the third trial's first state: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        original(path, data)

    monkeypatch.setattr(durable, "atomic_write", filling_up)
    seen = []
    with pytest.raises(tuning.SearchStopped, match=r"disk full writing the search in .*search .*free space first"):
        make_search(folder, counting_trial(seen)).run()
    for path in state_files(folder):  # every state file keras-tuner wrote is whole
        json.load(open(path))
    assert not os.path.exists(folder / tuning.LOCK_FILE)
    monkeypatch.setattr(durable, "atomic_write", original)  # space freed
    assert seen == ["0", "1"]  # trial 1 ran, but the full disk kept its result from being recorded
    result = make_search(folder, counting_trial(seen)).run()
    # The rerun runs trial 1 again and the rest; trial 0, recorded, is not run again.
    assert result.completed == 4 and seen == ["0", "1", "1", "2", "3"]


def test_a_full_disk_inside_a_trial_stops_the_search_instead_of_failing_every_trial(tmp_path):
    calls = []

    def run_trial(trial_id, directory, settings, budget, execution):
        calls.append(trial_id)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), directory)

    with pytest.raises(tuning.SearchStopped, match=r"disk full writing the search in .*free space first"):
        make_search(tmp_path / "search", run_trial).run()
    assert len(calls) == 1


def test_a_search_on_a_filesystem_that_fills_up_stops_in_one_line_and_resumes_when_it_grows(small_filesystem):
    """A real full disk (a 4 MiB tmpfs): each trial writes 1 MiB beside keras-tuner's state and the
    HParams sessions, so the disk fills within a few trials, wherever the write that fails is."""
    import subprocess

    folder = small_filesystem / "search"
    seen = []

    def filling_trial(trial_id, directory, settings, budget, execution):
        seen.append(trial_id)
        with open(os.path.join(directory, "weights.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        return {"val_loss": (settings["rate"] - 0.3) ** 2}

    with pytest.raises(tuning.SearchStopped, match=r"disk full writing the search in .*search .*free space first"):
        make_search(folder, filling_trial, max_trials=8).run()
    stopped_after = len(seen)
    assert 1 <= stopped_after < 8
    for path in state_files(folder):  # every state file keras-tuner wrote is whole
        json.load(open(path))
    assert not os.path.exists(folder / tuning.LOCK_FILE)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)  # space freed
    result = make_search(folder, filling_trial, max_trials=8).run()
    assert result.completed == 8
    recorded_before = stopped_after - 1  # at most the trial the disk stopped is run again
    assert len(seen) <= stopped_after + (8 - recorded_before)
    assert len(set(seen)) == 8


@pytest.mark.parametrize("damaged", ["oracle.json", "trial.json", "tuner0.json", "trial.json, no session"])
def test_damaged_search_state_is_rebuilt_or_redone_with_a_warning(tmp_path, damaged, caplog):
    folder = tmp_path / "search"
    seen = []
    make_search(folder, counting_trial(seen), max_trials=2).run()
    if damaged == "trial.json, no session":  # nothing to rebuild trial 0 from
        shutil.rmtree(folder / tuning.TRIALS_DIR / "0")
        damaged = lost = "trial.json"
    else:
        lost = None
    paths = sorted(p for p in state_files(folder) if os.path.basename(p) == damaged)
    assert paths, f"no {damaged} written"
    text = open(paths[0]).read()
    before = json.loads(text)
    open(paths[0], "w").write(text[: len(text) // 2])
    result = make_search(folder, counting_trial(seen), max_trials=3).run()
    for path in state_files(folder):
        json.load(open(path))  # whole again
    if lost:  # trial 0's result is lost: recorded as failed; the third trial runs
        assert (
            "trial 0 left no finished session to rebuild it from: its result is lost and it is recorded as failed"
            in (caplog.text)
        )
        assert (result.completed, result.failed) == (2, 1) and seen == ["0", "1", "2"]
    elif damaged == "trial.json":  # trial 0 rebuilt from its HParams session: only the third runs
        assert "trial 0 rebuilt from its session in" in caplog.text
        assert (result.completed, result.failed) == (3, 0) and seen == ["0", "1", "2"]
        after = json.load(open(paths[0]))
        assert after["status"] == "COMPLETED" and after["score"] == pytest.approx(before["score"])
        assert after["hyperparameters"]["values"] == pytest.approx(before["hyperparameters"]["values"])
    else:  # the two finished trials are kept: only the third runs
        assert result.completed == 3 and seen == ["0", "1", "2"]
        if damaged == "oracle.json":
            assert "rebuilt" in caplog.text and "from the 2 trial(s) whose state is whole" in caplog.text


def test_a_damaged_hyperband_oracle_is_one_line_naming_the_file(tmp_path):
    import keras_tuner as kt

    folder = tmp_path / "search"

    def search():
        return tuning.Search(
            str(folder),
            lambda hp: {"rate": hp.Float("rate", 0.0, 1.0)},
            counting_trial([]),
            objective=kt.Objective("val_loss", "min"),
            tuner="hyperband",
            max_trials=4,
            max_epochs=3,
            trial_process=False,
        )

    search().run()
    oracle = os.path.join(folder, tuning.TUNER_DIR, "oracle.json")
    text = open(oracle).read()
    open(oracle, "w").write(text[: len(text) // 2])
    with pytest.raises(tuning.SearchError, match=rf"state file {oracle} is damaged and a Hyperband search cannot"):
        search().run()
