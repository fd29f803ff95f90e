"""The tests' program server (`tests/program_server.py`): a program forked from it is a process of
its own, with the command line, environment, folder, streams and exit status a fresh one has."""

import json
import os
import signal
import subprocess

import pytest

from tests import conftest
from tests.conftest import ForkedProcess, run_program, start_program

pytestmark = [
    pytest.mark.slow,  # the server's start imports TensorFlow and the programs: seconds of CPU
    pytest.mark.skipif(not conftest._program_server_on(), reason="the program server is off here"),
]

REPORT = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "pid": os.getpid(), "ppid": os.getppid(),
                  "seen": os.environ.get("ZOO_SEEN"), "main": __name__}))
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


def test_a_forked_program_has_its_own_process_arguments_environment_folder_and_status(tmp_path):
    result = run_program(["-c", REPORT, "3", "x y"], cwd=str(tmp_path), ZOO_SEEN="yes")
    assert result.returncode == 3 and result.stderr == "to stderr\n", result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["argv"] == ["-c", "3", "x y"] and report["cwd"] == str(tmp_path)
    assert report["seen"] == "yes" and report["main"] == "__main__"
    assert report["pid"] not in (os.getpid(), conftest._ProgramServer.process.pid)
    assert report["ppid"] == conftest._ProgramServer.process.pid  # forked, not started afresh
    again = json.loads(run_program(["-c", REPORT, "0"]).stdout)
    assert again["pid"] != report["pid"] and again["seen"] is None  # nothing carried over


def test_a_module_runs_as_main_and_a_signal_ends_it_as_it_would_a_popen():
    listing = run_program(["-m", "zoo", "--nosummary", "fashion_cnn"])
    assert listing.returncode == 0 and "fashion_cnn" in listing.stdout, listing.stderr[-2000:]
    sleeper = start_program(["-c", "import time; print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    assert isinstance(sleeper, ForkedProcess) and sleeper.stdout.readline() == b"up\n"
    assert sleeper.poll() is None
    sleeper.send_signal(signal.SIGKILL)
    assert sleeper.wait(timeout=30) == -signal.SIGKILL
    sleeper.stdout.close()
    with pytest.raises(subprocess.TimeoutExpired):
        run_program(["-c", "import time; time.sleep(60)"], timeout=1)


def test_an_environment_the_server_was_not_imported_with_starts_a_fresh_interpreter():
    fresh = start_program(["-c", "pass"], TF_CPP_MIN_LOG_LEVEL="0")
    assert isinstance(fresh, subprocess.Popen) and fresh.wait(timeout=120) == 0
    with_extras = start_program(["-c", "pass"], extras=True)  # scikit-learn, matplotlib, JAX importable
    assert isinstance(with_extras, subprocess.Popen) and with_extras.wait(timeout=120) == 0
