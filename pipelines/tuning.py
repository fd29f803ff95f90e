"""Hyperparameter search with keras-tuner, every trial an HParams session in TensorBoard.

The search is generic. What it varies is declared by a function ``declare(hp) -> settings`` that
calls keras-tuner's `HyperParameters` methods (``hp.Choice``, ``hp.Float``, ...) and returns the
settings those values mean; a trial is run by a function the caller hands in. `trainers.tune` hands
in the trainer's own steps, so this module never imports `trainers`.

    overrides = restrict(declared_space(declare), fixes=["learning_rate=0.01"], ranges=["dropout=0.2..0.5"])
    search = Search(directory, declare, run_trial, objective=kt.Objective("val_accuracy", "max"),
                    tuner="bayesian", overrides=overrides, max_trials=10)
    result = search.run()

``run_trial(trial_id, directory, settings, budget, execution) -> metrics`` trains one execution of
a trial into ``directory`` (resuming what an earlier, killed, attempt left there) and returns its
final metrics; it raises `TrialFailed` for a trial that cannot finish (NaN loss, out of memory),
which is recorded as failed while the search goes on. By default each execution runs in a fresh
process (``trial_process``; ``run_trial`` must then be picklable): in one process, memory grows
with every trial (TensorFlow keeps each trial's traced functions; on a GPU it keeps the memory).
Those processes are forked from a fork server that imports ``run_trial``'s module and
``trial_imports`` once (`run_in_child`), so a trial does not spend seconds importing TensorFlow.

What lands under ``directory``:

    search.json      the search's settings: a rerun with other settings is refused, not mixed in
    tuner/           keras-tuner's project (oracle.json, trial_*/trial.json): what a rerun resumes
    trials/          TensorBoard: the HParams experiment (each hyperparameter's declared domain,
                     the metrics), and per trial ``trials/<id>/``: its HParams session (values and
                     final metrics) beside whatever ``run_trial`` wrote there

A search killed at any point resumes when rerun: finished trials are kept, the interrupted one runs
again with the same values in the same directory (the trainer resumes it from its last epoch).
Distributed search uses keras-tuner's own protocol: set ``KERASTUNER_TUNER_ID`` (``chief`` for the
process that serves the oracle, any other name for a worker), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` in each process, with ``directory`` on a filesystem they share.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import glob
import json
import logging as std_logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence

from absl import logging

from pipelines import durable
from pipelines.errors import SettingError
from zoo import compat

TUNERS = ("random", "bayesian", "hyperband")
SETTINGS_FILE = "search.json"
# One search at a time in a folder (its chief; the workers of a distributed search are not a
# second search): host and PID of the holder, as a run directory's lock.
LOCK_FILE = ".zoo-search.lock"
TUNER_DIR = "tuner"
TRIALS_DIR = "trials"
# With a pruner, each trial's HParams session also says after which epoch it was pruned (0: never).
PRUNED_METRIC = "pruned_after_epoch"


class SearchError(SettingError):
    """A setting of the search that cannot be used: names the setting, the value, what is accepted."""


class SearchStopped(RuntimeError):
    """The search cannot go on (too many trials failed in a row, a full disk); the message says why."""


def _parses(path: str) -> bool:
    return durable.read_json(path, _parses) is not _parses  # read_json's default: unreadable


def _disk_full(directory: str) -> str:
    return f"disk full writing the search in {directory} ({os.strerror(errno.ENOSPC)}); free space first"


class DiskFull(SearchStopped):
    """A trial met a full disk: not the trial's fault, every later one would meet it too."""


class TrialFailed(Exception):
    """Raised by ``run_trial``: this trial cannot finish; it is recorded as failed, the search goes on."""


class TrialPruned(Exception):
    """Raised by ``run_trial`` when the pruner stopped the trial after ``epoch`` epochs: it is
    recorded as pruned (not failed), with ``metrics``, its last values, and is not resumed."""

    def __init__(self, metrics: dict, epoch: int, reason: str):
        super().__init__(reason)
        self.metrics, self.epoch, self.reason = metrics, epoch, reason

    def __reduce__(self):  # through a trial process's pipe
        return TrialPruned, (self.metrics, self.epoch, self.reason)


PRUNERS = ("none", "median")
CURVE_FILE = "curve{execution}.json"  # in trials/<id>/: the objective after each epoch


@dataclasses.dataclass(frozen=True)
class MedianPruner:
    """Optuna's MedianPruner, for keras-tuner (which has none): stop a trial whose objective after
    epoch k (k >= ``after``) is worse than the median of the finished trials' at epoch k.

    Each execution of a trial records its objective after every epoch in
    ``trials/<id>/curve<execution>.json`` (`record`); the search marks a trial's curves finished
    when it completes, or pruned (`mark`). Only finished trials make the median, and only once
    ``startup_trials`` of them reached epoch k (Optuna's ``n_startup_trials``); a pruned trial
    never does. The files are the whole state: a search resumed after a kill prunes as before.
    """

    trials_dir: str
    objective: str
    maximize: bool
    after: int = 1
    startup_trials: int = 3

    def _path(self, trial_id: str, execution: int) -> str:
        return os.path.join(self.trials_dir, str(trial_id), CURVE_FILE.format(execution=execution))

    def _curve(self, trial_id: str, execution: int) -> dict:
        return durable.read_json(self._path(trial_id, execution), None) or {"status": "running", "values": {}}

    def record(self, trial_id: str, execution: int, epoch: int, value: float) -> None:
        """The objective after ``epoch`` (1-based) of this execution."""
        curve = self._curve(trial_id, execution)
        curve["values"][str(epoch)] = float(value)
        durable.write_json(self._path(trial_id, execution), curve)

    def mark(self, trial_id: str, executions: int, status: str) -> None:
        """Mark the trial's curves ``finished`` (they make medians from now on) or ``pruned``."""
        for execution in range(executions):
            curve = self._curve(trial_id, execution)
            if curve["values"] or status == "pruned":
                durable.write_json(self._path(trial_id, execution), {**curve, "status": status})

    def status(self, trial_id: str) -> str | None:
        """``finished``, ``pruned`` or ``running`` as the trial's first curve says (None: no curve)."""
        curve = durable.read_json(self._path(trial_id, 0), None)
        return curve.get("status") if isinstance(curve, dict) else None

    def median(self, trial_id: str, execution: int, epoch: int) -> float | None:
        """The median objective of the other finished trials after ``epoch``, or None while fewer
        than ``startup_trials`` of them have one."""
        import statistics

        values = []
        for path in glob.glob(os.path.join(self.trials_dir, "*", CURVE_FILE.format(execution=execution))):
            if os.path.basename(os.path.dirname(path)) == str(trial_id):
                continue
            curve = durable.read_json(path, None)
            if isinstance(curve, dict) and curve.get("status") == "finished" and str(epoch) in curve["values"]:
                values.append(float(curve["values"][str(epoch)]))
        return statistics.median(values) if len(values) >= self.startup_trials else None

    def should_prune(self, trial_id: str, execution: int, epoch: int, value: float) -> str | None:
        """Why the trial stops after ``epoch`` with ``value`` (one line), or None to go on."""
        if epoch < self.after:
            return None
        median = self.median(trial_id, execution, epoch)
        if median is None:
            return None
        worse = value < median if self.maximize else value > median
        if not worse:
            return None
        return f"pruned after epoch {epoch}: {self.objective}={value:.4g}, the finished trials' median {median:.4g}"


@dataclasses.dataclass(frozen=True)
class Budget:
    """Hyperband's share of a trial: train up to ``epochs``, continuing from the weights the
    trial in folder ``parent`` ended with after ``initial_epoch`` epochs (None: from scratch)."""

    epochs: int
    initial_epoch: int = 0
    parent: str | None = None


@dataclasses.dataclass
class SearchResult:
    best: list  # keras_tuner Trials that ran to the end, best first (not the pruned)
    completed: int  # ran to the end
    failed: int
    is_chief: bool  # False on a worker of a distributed search (the chief reports)
    pruned: int = 0  # stopped by the pruner (keras-tuner counts them completed, at their last value)


# ------------------------------------------------------------------------------------- the space


def declared_space(declare: Callable, onto=None):
    """The `keras_tuner.HyperParameters` that ``declare`` registers (on top of ``onto``'s)."""
    import keras_tuner as kt

    hp = onto.copy() if onto is not None else kt.HyperParameters()
    declare(hp)
    return hp


def _parse(declared, text: str, setting: str, whole: str):
    """``text`` as a value of the declared hyperparameter (its type; a Choice's values' type)."""
    from keras_tuner.engine import hyperparameters as hps

    kind = type(declared).__name__
    if isinstance(declared, hps.Boolean) or (
        isinstance(declared, hps.Choice) and all(isinstance(v, bool) for v in declared.values)
    ):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise SearchError(setting, whole, f"{declared.name} is {kind}: give true or false, not {text!r}")
    if isinstance(declared, hps.Choice):
        sample = declared.values[0]
        caster = type(sample)
    elif isinstance(declared, hps.Int):
        caster = int
    elif isinstance(declared, hps.Float):
        caster = float
    else:  # Fixed
        caster = type(declared.value)
    try:
        return caster(text)
    except ValueError:
        raise SearchError(setting, whole, f"{declared.name} takes {caster.__name__} values, not {text!r}") from None


def _split_assignment(text: str, setting: str, declared_hp, example: str):
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not value.strip():
        raise SearchError(setting, text, f"give NAME=VALUE, e.g. {example}")
    known = {p.name: p for p in declared_hp.space}
    if name not in known:
        raise SearchError(
            setting, text, f"{name!r} is not a hyperparameter of this search; accepted: {', '.join(known)}"
        )
    return known[name], value.strip()


def restrict(declared, fixes: Sequence[str] = (), ranges: Sequence[str] = ()):
    """The hyperparameters the user pinned or narrowed, as keras-tuner overrides.

    ``fixes``: ``NAME=VALUE`` (the hyperparameter takes that value in every trial).
    ``ranges``: ``NAME=LOW..HIGH`` for a number, ``NAME=V1,V2,...`` for a choice.
    Registered first, they win over ``declare``'s own declarations (keras-tuner keeps the first
    declaration of a name). Unknown names, values of the wrong type and empty or inverted ranges
    raise `SearchError`.
    """
    import keras_tuner as kt
    from keras_tuner.engine import hyperparameters as hps

    result = kt.HyperParameters()
    given: dict[str, str] = {}
    for text in fixes:
        hp, value = _split_assignment(text, "fix", declared, "learning_rate=0.01")
        if hp.name in given:
            raise SearchError("fix", text, f"{hp.name} is already given by {given[hp.name]}")
        given[hp.name] = f"--fix={text}"
        result.Fixed(hp.name, _parse(hp, value, "fix", text))
    for text in ranges:
        hp, value = _split_assignment(text, "space", declared, "dropout=0.2..0.5 or optimizer=adam,sgd")
        if hp.name in given:
            raise SearchError("space", text, f"{hp.name} is already given by {given[hp.name]}")
        given[hp.name] = f"--space={text}"
        if isinstance(hp, hps.Choice):
            values = [_parse(hp, v.strip(), "space", text) for v in value.split(",") if v.strip()]
            if not values:
                raise SearchError("space", text, f"the choice {hp.name} needs at least one value")
            result.Choice(hp.name, list(dict.fromkeys(values)), ordered=hp.ordered)
        elif isinstance(hp, (hps.Int, hps.Float)):
            low, dots, high = value.partition("..")
            if not dots:
                raise SearchError("space", text, f"{hp.name} is a number: give a range LOW..HIGH")
            low, high = _parse(hp, low.strip(), "space", text), _parse(hp, high.strip(), "space", text)
            if not low < high:
                raise SearchError(
                    "space",
                    text,
                    f"the range {low}..{high} is empty or inverted; give LOW < HIGH, or --fix={hp.name}=...",
                )
            if hp.sampling == "log" and low <= 0:
                raise SearchError("space", text, f"{hp.name} is sampled on a log scale: LOW must be above 0")
            step = hp.step if hp.step is not None and hp.step <= high - low else None
            if isinstance(hp, hps.Int):
                result.Int(hp.name, low, high, step=step or 1, sampling=hp.sampling)
            else:
                result.Float(hp.name, low, high, step=step, sampling=hp.sampling)
        else:
            raise SearchError("space", text, f"{hp.name} is {type(hp).__name__}: fix it with --fix={hp.name}=VALUE")
    return result


def describe(hp) -> list[str]:
    """One line per hyperparameter: name, kind, domain, default."""
    from keras_tuner.engine import hyperparameters as hps

    lines = []
    for p in hp.space:
        if isinstance(p, hps.Choice):
            domain = "{" + ", ".join(map(str, p.values)) + "}"
        elif isinstance(p, (hps.Int, hps.Float)):
            step = f" step {p.step}" if p.step and not (isinstance(p, hps.Int) and p.step == 1) else ""
            domain = f"[{p.min_value}, {p.max_value}]{step}" + (" log" if p.sampling == "log" else "")
        elif isinstance(p, hps.Boolean):
            domain = "{False, True}"
        else:
            domain = f"fixed at {p.value}"
        default = p.value if isinstance(p, hps.Fixed) else p.default
        lines.append(f"{p.name:<24} {type(p).__name__:<8} {domain:<44} default {default}")
    return lines


# ------------------------------------------------------------------------------------- TensorBoard


def _hparams(hp) -> dict:
    """keras-tuner's own conversion: each hyperparameter with its declared domain -> its value."""
    return compat.hparams_of(hp)


def write_experiment(logdir: str, space, metrics: Sequence[str]) -> None:
    """The HParams experiment: every hyperparameter with the domain it was declared with (not the
    one TensorBoard would guess from the values tried), and the metrics each trial reports."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    with tf.summary.create_file_writer(logdir).as_default():
        hparams_api.hparams_config(
            hparams=list(_hparams(space)), metrics=[hparams_api.Metric(name, display_name=name) for name in metrics]
        )


def write_session(logdir: str, trial, metrics: dict | None = None) -> None:
    """A trial's HParams session: its values (at its start), then its final metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        if metrics is None:
            hparams_api.hparams(_hparams(trial.hyperparameters), trial_id=trial.trial_id)
        else:
            for name, value in metrics.items():
                tf.summary.scalar(name, value, step=0)
    writer.close()


def read_session(logdir: str) -> tuple[dict, dict] | None:
    """What `write_session` wrote in ``logdir``: (hyperparameter values by name, final metrics by
    name; empty for a trial that did not finish), or None where no session start is there."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    values, metrics, started = {}, {}, False
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        try:
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if value.metadata.plugin_data.plugin_name == "hparams":
                        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                        if data.HasField("session_start_info"):
                            started = True
                            for name, given in data.session_start_info.hparams.items():
                                values[name] = getattr(given, given.WhichOneof("kind"))
                    elif value.HasField("tensor") and value.tensor.dtype == tf.float32.as_datatype_enum:
                        metrics[value.tag] = float(tf.make_ndarray(value.tensor))
        except tf.errors.OpError:  # a damaged event file: what was read before it counts
            continue
    return (values, metrics) if started else None


# ------------------------------------------------------------------------------------- trial processes


def _in_child(connection, function, args, verbosity: int, tf_log_level: int, parent: dict) -> None:
    """Run ``function(*args)`` in a trial's process; send back ("ok", metrics), ("failed", why),
    ("pruned", error), ("disk full", None) or ("error", traceback text).

    The process was forked from the fork server (`run_in_child`), which started once with the search's
    environment: ``parent`` brings what the search has now, as a spawned process would inherit it
    (environment, working directory, stdout and stderr, and a pipe that ends when the search does),
    with a temporary folder of its own (``TMPDIR``) that the search removes when the trial ends."""
    import threading
    import traceback

    from absl import logging as absl_logging

    os.environ.clear()
    os.environ.update(parent["environment"])
    tempfile.tempdir = None  # read again from TMPDIR: the fork server may have cached its own
    os.chdir(parent["directory"])
    for number, (stream, carried) in enumerate(zip((sys.stdout, sys.stderr), parent["streams"]), start=1):
        stream.flush()
        os.dup2(carried.fileno(), number)
        carried.close()

    def die_with_the_search(alive):  # the search's end of the pipe closes when it ends, a kill -9 too
        alive.poll(None)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=die_with_the_search, args=(parent["alive"],), daemon=True).start()
    from absl import flags as absl_flags

    compat.start_tensorflow_quietly()  # as the search's own process started
    absl_flags.FLAGS.mark_as_parsed()  # no "logging before flag parsing" line: the parent parsed them
    absl_logging.use_absl_handler()  # the parent's log format
    absl_logging.set_verbosity(verbosity)
    std_logging.getLogger("tensorflow").setLevel(tf_log_level)
    try:
        connection.send(("ok", function(*args)))
    except TrialFailed as error:
        connection.send(("failed", str(error)))
    except TrialPruned as error:
        connection.send(("pruned", error))
    except BaseException as error:  # noqa: BLE001  (everything the parent must hear about)
        if durable.disk_full(error):  # not the trial's fault: the search stops
            connection.send(("disk full", None))
        else:
            traceback.print_exc()  # the whole story on the search's stderr; the parent records the last line
            connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()
        sys.stdout.flush()
        sys.stderr.flush()


def _modules_of(function) -> list[str]:
    """The module that defines ``function`` (a `functools.partial` unwrapped): what its trials import."""
    while hasattr(function, "func"):
        function = function.func
    module = getattr(function, "__module__", None)
    return [module] if module and module != "__main__" else []


def _start_fork_server() -> None:
    """Start multiprocessing's fork server, unless it runs, with `compat.FORK_SERVER` in its
    environment: it imports TensorFlow but initializes no device (CUDA initialized before a fork is
    unusable after it). Each trial takes the search's own environment and probes its devices."""
    from multiprocessing import forkserver

    before = os.environ.get(compat.FORK_SERVER)
    os.environ[compat.FORK_SERVER] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ[compat.FORK_SERVER]
        else:
            os.environ[compat.FORK_SERVER] = before


def run_in_child(function, args, *, preload: Sequence[str] = (), start_method: str = "forkserver") -> dict:
    """``function(*args)`` in a process of its own, so that whatever a trial allocates (TF's function
    library, GPU memory, which TensorFlow never gives back) goes when the trial ends. A child killed by
    a signal (the kernel's OOM killer), dying without a word or raising (its traceback printed on
    stderr) is `TrialFailed`.

    The process is forked from multiprocessing's fork server, which imported ``function``'s module
    and ``preload`` (what the trial will import as it runs) once, when the first trial started, and
    ran nothing: later trials start without importing them again (a tiny trial took 7.7 s instead of
    15.0 s on a 2-core AVX2 EPYC; ``benchmarks/trial_start.py``). The server's modules are those of the
    first call; later calls' ``preload`` is imported by their trials. ``start_method="spawn"`` starts
    a fresh interpreter each time instead (the baseline that benchmark measures against)."""
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload(["__main__", *_modules_of(function), *preload])
        _start_fork_server()
    # The trial's temporary files go with it, however it ends: its process ends without running its
    # exit handlers (multiprocessing's os._exit, the OOM killer's kill), the one place where TensorFlow
    # deletes the module AutoGraph writes for each function it converts (about ten a trial;
    # tensorflow/python/autograph/pyct/loader.py).
    temporary = tempfile.mkdtemp(prefix="zoo-trial-")
    try:
        outcome, code = _run_process(context, function, args, dict(os.environ, TMPDIR=temporary))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    if outcome is None:
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (the kernel's out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
            raise TrialFailed(f"the trial's process was killed by {name}{hint}")
        raise TrialFailed(f"the trial's process exited with status {code} without a result")
    kind, payload = outcome
    if kind == "failed":
        raise TrialFailed(payload)
    if kind == "pruned":
        raise payload
    if kind == "disk full":
        raise DiskFull()
    if kind == "error":
        raise TrialFailed(f"the trial raised {_last_line(payload)}")
    return payload


def _run_process(context, function, args, environment: dict) -> tuple:
    """Start ``function(*args)`` in `_in_child` with ``environment`` and wait for it: (what it sent,
    or None, exit status)."""
    receiver, sender = context.Pipe(duplex=False)
    alive_in_child, alive = context.Pipe(duplex=False)
    streams = [compat.open_file_for_child(number) for number in (1, 2)]
    parent = dict(environment=environment, directory=os.getcwd(), streams=streams, alive=alive_in_child)
    tf_log_level = std_logging.getLogger("tensorflow").getEffectiveLevel()
    process = context.Process(
        target=_in_child, args=(sender, function, args, logging.get_verbosity(), tf_log_level, parent)
    )
    try:
        process.start()
    finally:
        sender.close()
        alive_in_child.close()
        for stream in streams:
            stream.close()
    try:
        outcome = receiver.recv()
    except EOFError:
        outcome = None
    except BaseException:  # SIGTERM or Ctrl-C in the search: the trial goes with it
        process.kill()
        raise
    finally:
        process.join()
        alive.close()  # after the join: a trial still flushing its output is not cut short
    return outcome, process.exitcode


# ------------------------------------------------------------------------------------- the tuner


def make_oracle(
    tuner: str, *, objective, overrides, max_trials: int, max_epochs: int, factor: int, seed: int, max_failed: int
):
    """keras-tuner's oracle for ``tuner``; ``overrides`` (`restrict`) are registered first."""
    import keras_tuner as kt

    common = dict(
        objective=objective,
        hyperparameters=overrides,
        tune_new_entries=True,
        allow_new_entries=True,
        seed=seed,
        max_consecutive_failed_trials=max_failed,
    )
    if tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if tuner == "bayesian":
        try:
            return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
        except ImportError as error:  # scipy and scikit-learn: keras-tuner's [bayesian] extra
            raise SearchError(
                "tuner", tuner, f"{error}".split(" before ")[0].replace("Please install", "needs")
            ) from None
    if tuner == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=max_epochs, factor=factor, **common)
        oracle.max_trials = max_trials  # Hyperband plans its own brackets; cap them at max_trials
        return oracle
    raise SearchError("tuner", tuner, f"accepted: {', '.join(TUNERS)}")


def _tuner_class():
    """The tuner class, made on demand: importing this module does not import keras-tuner."""
    from keras_tuner.engine import base_tuner

    class TrialTuner(base_tuner.BaseTuner):
        """A keras-tuner tuner whose trials are run by a function of the caller."""

        def __init__(
            self, oracle, declare, run_trial, directory, executions, metrics, isolate, imports, pruner, **kwargs
        ):
            self.run_function, self.executions, self.metric_names = run_trial, executions, metrics
            self.isolate, self.imports, self.pruner = isolate, imports, pruner
            self.trials_dir = os.path.join(directory, TRIALS_DIR)
            # keras-tuner wraps ``declare`` as the hypermodel: its "model" is the settings dict.
            super().__init__(oracle, hypermodel=declare, directory=directory, project_name=TUNER_DIR, **kwargs)

        def run_trial(self, trial, *args, **kwargs):
            import keras_tuner as kt

            settings = self.hypermodel.build(trial.hyperparameters)
            values = trial.hyperparameters.values
            budget = None
            if "tuner/epochs" in values:
                parent = values.get("tuner/trial_id")
                parent = os.path.join(self.trials_dir, parent) if parent is not None else None
                budget = Budget(values["tuner/epochs"], values["tuner/initial_epoch"], parent)
            session = os.path.join(self.trials_dir, trial.trial_id)
            write_session(session, trial)
            runs, pruned = [], None
            for execution in range(self.executions):
                args = (trial.trial_id, session, settings, budget, execution)
                try:
                    if self.isolate:
                        runs.append(run_in_child(self.run_function, args, preload=self.imports))
                    else:
                        runs.append(self.run_function(*args))
                except TrialPruned as error:  # its last values stand for it; no further execution
                    logging.warning("trial %s %s", trial.trial_id, error.reason)
                    runs.append(error.metrics)
                    pruned = error
                    break
                except TrialFailed as error:
                    logging.warning("trial %s failed: %s", trial.trial_id, error)
                    raise kt.errors.FailedTrialError(str(error)) from None
                except Exception as error:  # keras-tuner records no trial for a fatal error
                    if isinstance(error, DiskFull) or durable.disk_full(error):  # in a trial process, or here
                        raise kt.errors.FatalError(_disk_full(os.path.dirname(self.trials_dir))) from None
                    if isinstance(error, SearchStopped):
                        raise kt.errors.FatalError(str(error)) from None
                    raise
            metrics = {
                name: float(sum(run[name] for run in runs) / len(runs))
                for name in runs[0]
                if all(isinstance(run.get(name), (int, float)) for run in runs)
            }
            # The metrics TensorBoard shows, and the objective: what a damaged trial.json is rebuilt from.
            kept = {*self.metric_names, getattr(self.oracle.objective, "name", None)}
            shown = {k: v for k, v in metrics.items() if k in kept}
            if self.pruner is not None:
                shown[PRUNED_METRIC] = float(pruned.epoch if pruned else 0)
                self.pruner.mark(trial.trial_id, self.executions, "pruned" if pruned else "finished")
            write_session(session, trial, shown)
            return metrics

        def on_trial_end(self, trial):
            try:
                super().on_trial_end(trial)
            except RuntimeError as error:  # the oracle's "consecutive failures exceeded" check
                raise SearchStopped(str(error).splitlines()[0] + f"; last: {_last_line(trial.message)}") from None
            finally:
                if not self.isolate:
                    # Trials run in this process leave their models and datasets to Keras's
                    # session: drop them (memory still grows, by ~20 MiB a trial; BUILD.md).
                    import keras

                    keras.backend.clear_session()
                    gc.collect()

    return TrialTuner


def _last_line(message: str | None) -> str:
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def is_chief() -> bool:
    """Whether this process reports the search: not a worker of a distributed one."""
    return "KERASTUNER_ORACLE_IP" not in os.environ or "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


class Search:
    """A resumable keras-tuner search in ``directory`` (see the module's docstring)."""

    def __init__(
        self,
        directory: str,
        declare: Callable,
        run_trial: Callable,
        *,
        objective,
        tuner: str = "random",
        overrides=None,
        max_trials: int = 10,
        executions_per_trial: int = 1,
        max_epochs: int = 10,
        hyperband_factor: int = 3,
        max_failed_trials: int = 3,
        seed: int = 42,
        metrics: Sequence[str] = (),
        settings: dict | None = None,
        overwrite: bool = False,
        trial_process: bool = True,
        trial_imports: Sequence[str] = (),
        peer_timeout: float = 300,
        pruner: MedianPruner | None = None,
    ):
        if tuner not in TUNERS:
            raise SearchError("tuner", tuner, f"accepted: {', '.join(TUNERS)}")
        if pruner is not None and tuner == "hyperband":
            raise SearchError(
                "prune", "median", "Hyperband stops trials early itself; prune a random or bayesian search"
            )
        self.pruner = pruner
        self.directory = directory
        self.declare, self.run_trial = declare, run_trial
        self.objective, self.metrics = objective, list(metrics) + ([PRUNED_METRIC] if pruner else [])
        self.settings = {"tuner": tuner, **(settings or {})}
        self.overwrite = overwrite
        self.executions = executions_per_trial
        self.trial_process, self.trial_imports = trial_process, tuple(trial_imports)
        self.peer_timeout = peer_timeout
        self.oracle_args = dict(
            objective=objective,
            overrides=overrides,
            max_trials=max_trials,
            max_epochs=max_epochs,
            factor=hyperband_factor,
            seed=seed,
            max_failed=max_failed_trials,
        )
        self.tuner_kind = tuner

    @property
    def trials_dir(self) -> str:
        return os.path.join(self.directory, TRIALS_DIR)

    def check_directory(self) -> None:
        """Refuse a folder that holds something else, or a search with other settings."""
        path = os.path.join(self.directory, SETTINGS_FILE)
        if not os.path.isdir(self.directory) or self.overwrite and os.path.exists(path):
            return
        if not os.path.exists(path):
            if set(os.listdir(self.directory)) - {LOCK_FILE}:  # a lock alone: a search starting up
                raise SearchError(
                    "model_dir",
                    self.directory,
                    f"is not empty and holds no search ({SETTINGS_FILE}); use another folder",
                )
            return
        try:
            with open(path) as f:
                previous = json.load(f)
        except (OSError, ValueError) as error:
            raise SearchError("model_dir", self.directory, f"{path} is unreadable ({error}); use --overwrite") from None
        advice = "rerun with the same settings to resume it, or use another model_dir or --overwrite"
        for key in sorted(set(previous) | set(self.settings)):
            theirs, ours = previous.get(key), self.settings.get(key)
            if theirs == ours:
                continue
            if isinstance(theirs, list) and isinstance(ours, list):  # e.g. the trials' flags: what differs
                there = [item for item in theirs if item not in ours] or theirs
                here = [item for item in ours if item not in theirs] or ours
                there, here = (" ".join(map(str, items)) or "none" for items in (there, here))
                raise SearchError(
                    "model_dir",
                    self.directory,
                    f"holds a search with other {key}: {there} there, {here} here; {advice}",
                )
            raise SearchError(key, ours, f"{self.directory} holds a search with {key}={theirs!r}; {advice}")

    def _prepare_directory(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        if self.overwrite and is_chief():
            for name in (TUNER_DIR, TRIALS_DIR):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        path = os.path.join(self.directory, SETTINGS_FILE)
        if is_chief():
            durable.atomic_write(path, json.dumps(self.settings, indent=1, sort_keys=True))

    def _write_state(self, path: str, text: str) -> None:
        """A keras-tuner state file, written atomically; a full disk stops the search (keras-tuner
        would record the trial it was updating as failed and go on to fail every later one)."""
        import keras_tuner as kt

        try:
            durable.atomic_write(path, text)
        except Exception as error:
            if durable.disk_full(error):
                raise kt.errors.FatalError(_disk_full(self.directory)) from None
            raise

    def repair_state(self) -> None:
        """Damaged keras-tuner state (a kill mid-write before writes were atomic, a disk fault),
        mended before keras-tuner reads it, which would fail with a traceback at every rerun: a
        ``trial.json`` that does not parse is rebuilt from the trial's HParams session where it
        finished (`read_session`), else recorded as a failed trial (its result is lost; keras-tuner
        numbers trials by their count, so it keeps its place) and ``oracle.json`` is rebuilt from
        the trials, each with a warning. Hyperband
        keeps its brackets in ``oracle.json`` alone: there a damaged file is one line naming it."""
        import keras_tuner as kt

        project = os.path.join(self.directory, TUNER_DIR)
        oracle_file = os.path.join(project, "oracle.json")
        trial_files = sorted(glob.glob(os.path.join(project, "trial_*", "trial.json")))
        damaged_trials = [path for path in trial_files if not _parses(path)]
        oracle_damaged = os.path.exists(oracle_file) and not _parses(oracle_file)
        for path in glob.glob(os.path.join(project, "*.json")):
            if path != oracle_file and not _parses(path):  # a tuner's own state: {} in keras-tuner 1.4
                logging.warning("%s is damaged; rewritten (a tuner keeps no state of its own there)", path)
                durable.atomic_write(path, json.dumps(compat.TUNER_STATE))
        if not (damaged_trials or oracle_damaged):
            return
        if self.tuner_kind == "hyperband":
            raise SearchError(
                "model_dir",
                self.directory,
                f"the search's state file {oracle_file if oracle_damaged else damaged_trials[0]} is damaged and "
                f"a Hyperband search cannot be rebuilt (its brackets live in oracle.json alone); rerun with "
                f"--overwrite to search again",
            )
        trials = {}
        for path in trial_files:
            if path not in damaged_trials:
                trial = kt.engine.trial.Trial.load(path)
                trials[trial.trial_id] = trial
        for path in damaged_trials:
            # keras-tuner numbers trials by their count, so the trial keeps its place: rebuilt from
            # its HParams session (values, final metrics) where it finished, else a failed one.
            trial_id = os.path.basename(os.path.dirname(path))[len("trial_") :]
            trial = self._trial_from_session(trial_id)
            if trial is not None:
                logging.warning(
                    "%s is damaged: trial %s rebuilt from its session in %s (score %s)",
                    path,
                    trial_id,
                    os.path.join(self.trials_dir, trial_id),
                    trial.score,
                )
            else:
                logging.warning(
                    "%s is damaged and trial %s left no finished session to rebuild it from: its result is lost "
                    "and it is recorded as failed (its folder in %s is kept)",
                    path,
                    trial_id,
                    self.trials_dir,
                )
                trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id=trial_id, status="INVALID")
                trial.message = f"its state file {path} was damaged"
            durable.atomic_write(path, json.dumps(trial.get_state()))
            trials[trial_id] = trial
        state = compat.oracle_state_from_trials(make_oracle(self.tuner_kind, **self.oracle_args), trials)
        durable.atomic_write(oracle_file, json.dumps(state))
        logging.warning("rebuilt %s from the %d trial(s) whose state is whole", oracle_file, len(trials))

    def _trial_from_session(self, trial_id: str):
        """A finished trial as keras-tuner recorded it, rebuilt from its HParams session (its
        values and final metrics, which `run_trial` writes there); None where the trial had not
        finished or its values do not fit the space."""
        import keras_tuner as kt

        session = read_session(os.path.join(self.trials_dir, trial_id))
        if session is None or not session[1]:
            return None
        values, metrics = session
        objective = self.objective
        name = getattr(objective, "name", objective)
        if name not in metrics:
            return None
        hyperparameters = self.space().copy()
        for hp in hyperparameters.space:
            if hp.name not in values:
                return None
            value = values[hp.name]
            choices = getattr(hp, "values", None)
            if choices:  # HParams stores numbers as floats: the declared value of the same number
                value = next((choice for choice in choices if choice == value), value)
            elif type(hp).__name__ == "Int":
                value = int(value)
            hyperparameters.values[hp.name] = value
        trial = kt.engine.trial.Trial(hyperparameters, trial_id=trial_id, status="COMPLETED")
        direction = getattr(objective, "direction", None)
        for metric, value in metrics.items():
            lower = metric.endswith(("loss", "mse")) if metric != name or direction is None else direction == "min"
            trial.metrics.register(metric, direction="min" if lower else "max")
            trial.metrics.update(metric, value, step=0)
        trial.score, trial.best_step = metrics[name], 0
        return trial

    def tuner(self):
        # Every state file keras-tuner writes, written whole or not at all (a kill, a full disk).
        compat.keras_tuner_saves_with(self._write_state)
        compat.quiet_failed_trials()  # a failed trial is one line, not keras-tuner's traceback
        if is_chief():
            self.repair_state()
        oracle = make_oracle(self.tuner_kind, **self.oracle_args)
        tuner = _tuner_class()(
            oracle,
            self.declare,
            self.run_trial,
            self.directory,
            self.executions,
            self.metrics,
            self.trial_process,
            self.trial_imports,
            self.pruner,
            overwrite=False,
        )
        if self.tuner_kind != "hyperband" and hasattr(tuner.oracle, "max_trials"):
            # A rerun may extend (or shorten) the search: the reloaded oracle keeps the old count.
            tuner.oracle.max_trials = self.oracle_args["max_trials"]
        return tuner

    def space(self):
        """The space as it will be searched: the overrides, then what ``declare`` adds."""
        return declared_space(self.declare, onto=self.oracle_args["overrides"])

    def wait_for_chief(self) -> None:
        """A worker of a distributed search: wait (``peer_timeout`` at most) for the chief to
        mark the folder as its search, and for its oracle, rather than keras-tuner's hour."""
        import time

        compat.set_oracle_timeout(self.peer_timeout)  # seconds each request waits for the chief
        path = os.path.join(self.directory, SETTINGS_FILE)
        if not os.path.exists(path):
            logging.info(
                "waiting up to %g s for the chief to start the search in %s", self.peer_timeout, self.directory
            )
        deadline = time.monotonic() + self.peer_timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise SearchError(
                    "peer_timeout",
                    self.peer_timeout,
                    f"no chief (KERASTUNER_TUNER_ID=chief) started a search in {self.directory} within "
                    f"{self.peer_timeout:g} s",
                )
            time.sleep(0.5)

    def run(self) -> SearchResult:
        """Run (or resume) the search; returns the best trials, best first."""
        problem = durable.unwritable(self.directory)
        if problem:
            raise SearchError("model_dir", self.directory, problem)
        if not is_chief():
            self.wait_for_chief()  # the chief owns the folder: a worker writes nothing before it
        self.check_directory()
        lock = durable.FolderLock(os.path.join(self.directory, LOCK_FILE), "search")
        if is_chief():
            try:
                lock.acquire()
            except durable.LockHeld as error:
                raise SearchError("model_dir", self.directory, str(error)) from None
        try:
            return self._search()
        except Exception as error:
            import keras_tuner as kt

            if durable.disk_full(error):
                raise SearchStopped(_disk_full(self.directory)) from None
            if isinstance(error, kt.errors.FatalError):  # raised by a trial: the search cannot go on
                raise SearchStopped(str(error)) from None
            raise
        finally:
            lock.release()

    def _search(self) -> SearchResult:
        self.check_directory()  # again, under the lock: another search may have started meanwhile
        self._prepare_directory()
        tuner = self.tuner()
        if is_chief() and not glob.glob(os.path.join(self.trials_dir, "events.out.tfevents.*")):
            write_experiment(self.trials_dir, tuner.oracle.get_space(), self.metrics)
        tuner.search()
        if not is_chief():
            return SearchResult([], 0, 0, is_chief=False)
        oracle = tuner.oracle
        statuses = [trial.status for trial in oracle.trials.values()]
        pruned = {t for t in oracle.trials if self.pruner is not None and self.pruner.status(t) == "pruned"}
        return SearchResult(
            best=[t for t in oracle.get_best_trials(len(oracle.trials)) if t.trial_id not in pruned],
            completed=statuses.count("COMPLETED") - len(pruned),
            failed=statuses.count("FAILED") + statuses.count("INVALID"),
            is_chief=True,
            pruned=len(pruned),
        )


def best_table(trials, objective: str, top: int = 5) -> str:
    """The ``top`` trials as a text table: rank, trial, objective, then each hyperparameter."""
    trials = [t for t in trials if t.score is not None][:top]
    if not trials:
        return "no trial finished"
    names = [n for n in trials[0].hyperparameters.values if not n.startswith("tuner/")]
    header = ["rank", "trial", objective, *names]
    rows = [
        [str(rank), t.trial_id, f"{t.score:.4g}", *(_short(t.hyperparameters.values.get(n)) for n in names)]
        for rank, t in enumerate(trials, start=1)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows])


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
