"""What the command-line programs share: parsing their flags, and one-line errors.

Nothing here runs at import: each program defines its flags from its entry point (as TF Model
Garden's ``define_flags()``; `trainers.config.define_flags` for the fields of `TrainConfig`), so
every module of the project can be imported together, in any order, and a test can define the
flags into its own `FlagValues`. The programs import the library and this module, never each other.
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys

from absl import app, flags
from absl import logging as absl_logging

from trainers.config import ConfigError, TrainConfig, recipe_names, recipe_path, recipe_summary
from zoo.common import parse_flags_or_exit

FLAGS = flags.FLAGS


class UserError(Exception):
    """A mistake in the command line or the data: reported as one line, exit status 2."""


class Terminated(BaseException):
    """SIGTERM (a scheduler's stop, a cloud preemption), raised where the program is. A
    BaseException, as KeyboardInterrupt: no `except Exception` on the way (keras-tuner's trial
    loop) mistakes it for a failure, and every `finally` (locks) runs."""


def _terminated(signum, frame):
    raise Terminated()


def fail(message: str, status: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> TrainConfig:
    """`TrainConfig.from_flags`, with its errors spelled as flags for the user."""
    try:
        return TrainConfig.from_flags(flag_values)
    except ConfigError as error:
        raise UserError(error.flag_message()) from None


def check_flagfiles(argv, chain=()) -> None:
    """Raise UserError for a missing or circular --flagfile (absl only warns and skips a cycle)."""
    for arg in argv:
        if not arg.startswith(("--flagfile=", "-flagfile=")):
            continue
        path = os.path.realpath(os.path.expanduser(arg.split("=", 1)[1]))
        if path in chain:
            cycle = " -> ".join([*chain[chain.index(path) :], path])
            raise UserError(f"--flagfile={arg.split('=', 1)[1]}: circular flag files ({cycle})")
        try:
            with open(path) as f:
                lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except OSError as error:
            raise UserError(f"--flagfile={arg.split('=', 1)[1]}: cannot be read ({error.strerror})") from None
        except UnicodeDecodeError as error:
            raise UserError(
                f"--flagfile={arg.split('=', 1)[1]}: is not a text file of flags (byte {error.start} is not "
                f"UTF-8); give a file of --name=value lines"
            ) from None
        check_flagfiles(lines, (*chain, path))


def open_saved(model_path: str, **overrides):
    """`trainers.saved.open_saved`, its errors as one line for the user: --model_path's (no
    model there, not a Keras model) or the setting's (a flags.txt or an override that is not valid)."""
    from trainers import saved

    try:
        return saved.open_saved(model_path, **overrides)
    except ConfigError as error:
        raise UserError(error.flag_message()) from None
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"--model_path={model_path}: {error}") from None


def evaluation_data(saved, split: str, central_crop: bool | None = None):
    """``saved.evaluation_data(split)`` (a `trainers.saved.Saved`), its problems as one line for
    the user: data that cannot be loaded, or of another number of classes than the model's; data
    whose class names are not the run's is scored, with a warning naming both."""
    import pipelines

    try:
        dataset, info = saved.evaluation_data(split, central_crop)
    except pipelines.DataError as error:
        raise UserError(f"--dataset={saved.config.dataset} --split={split}: {error}") from None
    mismatch = saved.data_mismatch(info)
    if mismatch:
        raise UserError(mismatch)
    note = saved.class_names_note(info)
    if note:
        absl_logging.warning("%s", note)
    return dataset, info


def expand_recipe(argv: list[str]) -> list[str]:
    """``--recipe=NAME`` -> the recipe's flag file, first, so that flags given on the command line
    override it wherever they stand; ``--recipe=list`` prints the recipes and exits."""
    recipes = [arg for arg in argv[1:] if arg.startswith(("--recipe=", "-recipe="))]
    if not recipes:
        return argv
    if len(recipes) > 1:
        raise UserError(f"give one --recipe, not {len(recipes)}: {' '.join(recipes)}")
    name = recipes[0].split("=", 1)[1]
    if name == "list":
        for recipe in recipe_names():
            print(f"{recipe:<20} {recipe_summary(recipe)}")
        sys.exit(0)
    try:
        path = recipe_path(name)
    except ConfigError as error:
        raise UserError(error.flag_message()) from None
    return [argv[0], f"--flagfile={path}", *(arg for arg in argv[1:] if arg != recipes[0])]


def parse_flags(argv, flag_values: flags.FlagValues = FLAGS):
    """The recipe expanded and the flag files checked, then `zoo.common.parse_flags_or_exit`: a bad
    flag is one line on stderr and exit status 2 (no usage dump)."""
    try:
        argv = expand_recipe(argv)
        check_flagfiles(argv[1:])
    except UserError as error:
        fail(str(error))
    return parse_flags_or_exit(argv, flag_values)


def run(main, define_flags):
    """Define the program's flags, then `app.run` with our parser.

    `UserError` -> one line, exit 2; Ctrl-C -> one line, exit 130. From an installed console script
    (``zoo-train``...), the program's module is run as ``python -m`` runs it: absl's --help shows the
    ``__main__`` module's docstring and flags, which would otherwise be the script's (none).
    """
    if main.__module__ != "__main__":
        import runpy

        runpy.run_module(main.__module__, run_name="__main__", alter_sys=True)
        return
    define_flags()

    def program(argv):
        # TensorFlow's own INFO lines (collectives, SavedModel assets) drown the trainer's.
        std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
        absl_logging.get_absl_handler().addFilter(quiet_libraries)
        signal.signal(signal.SIGTERM, _terminated)
        return guarded(main, argv)

    app.run(program, flags_parser=parse_flags)


# Where the INFO lines that absl's logger carries for the libraries come from: TFDS (each split's
# dataset info, readers), TensorFlow's SavedModel writer (signatures, shards, fingerprint).
_LIBRARIES = tuple(f"{os.sep}{name}{os.sep}" for name in ("tensorflow", "tensorflow_datasets"))


def quiet_libraries(record) -> bool:
    """A `logging` filter for the programs' log: TensorFlow's and TFDS's INFO lines (a dozen a run,
    through absl's logger like the programs' own) are dropped unless ``--verbosity=1`` or more;
    their warnings and errors, and every line of the programs, pass."""
    if record.levelno >= std_logging.WARNING or absl_logging.get_verbosity() >= absl_logging.DEBUG:
        return True
    return not any(library in record.pathname for library in _LIBRARIES)


def guarded(main, argv):
    """``main(argv)`` with the programs' errors: `UserError` -> one line, exit 2; Ctrl-C -> one
    line, exit 130; SIGTERM (`Terminated`) -> one line, exit 143."""
    try:
        return main(argv)
    except UserError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted", status=130)
    except Terminated:
        fail(
            "terminated (SIGTERM); what finished is kept (every finished epoch, every finished trial): "
            "rerun the same command to resume",
            status=128 + signal.SIGTERM,
        )
