"""A fork server for the tests' program processes: ``python tests/program_server.py SOCKET``.

It imports TensorFlow, Keras and the project's programs once (`compat.FORK_SERVER`: no device is
probed), then forks a child for each request on the Unix socket: the child takes the request's
command line (``-m MODULE ARGS``, ``-c CODE ARGS`` or ``SCRIPT ARGS``, as after ``python``), its
environment, folder and standard streams, probes its devices as a fresh program does, and runs the
program as ``__main__``. A program so started skips the 6-8 s of CPU that importing TensorFlow costs
each fresh interpreter on 2 CPU cores, and is otherwise the process a test would have started: its
own PID, exit status, signals and files. ``tests.conftest.start_program`` is the client; the
server exits when the test worker that started it does (its standard input closes).

Protocol (SOCK_SEQPACKET, one request per connection): JSON ``{"argv", "env", "cwd"}`` with three
descriptors (stdin, stdout, stderr); the server answers the child's PID, then its exit status
(negative: the signal that killed it, as `subprocess.Popen.returncode` says)."""

import atexit
import importlib
import io
import json
import os
import runpy
import socket
import sys
import threading
import traceback
import types

# What the tests' programs import: loaded once, here.
PRELOAD = (
    "trainers",
    "trainers.train",
    "trainers.evaluate",
    "trainers.predict",
    "trainers.export",
    "trainers.show",
    "trainers.training",
    "trainers.steps",
    "pipelines.core",
    "zoo.registry",
)


def _exit_status(code) -> int:
    """The status ``SystemExit(code)`` leaves a Python process with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _text_stream(fd: int, **options) -> io.TextIOWrapper:
    """A standard stream on ``fd`` in the encoding this interpreter chose for its own."""
    return io.TextIOWrapper(open(fd, "wb", closefd=False), encoding=sys.__stdout__.encoding, **options)


def _child(request: dict, streams: list[int]) -> None:
    """Run the request's program in this forked process, then leave it (no return)."""
    status = 1
    try:
        for target, fd in enumerate(streams):
            os.dup2(fd, target)
            os.close(fd)
        # Standard streams as a fresh interpreter opens them; PYTHONUNBUFFERED as `python -u`.
        unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
        sys.stdin = open(0, closefd=False)
        sys.stdout = _text_stream(1, line_buffering=os.isatty(1), write_through=unbuffered)
        sys.stderr = _text_stream(2, errors="backslashreplace", line_buffering=True, write_through=unbuffered)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        if argv[0] in ("-m", "-c"):
            # The device probe (its noise hidden) that importing `trainers` or `pipelines` runs in a
            # fresh interpreter; a script (a benchmark) starts TensorFlow itself, as it must anyway.
            from zoo import compat

            compat.start_tensorflow_quietly()
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[0] = ""
            main = sys.modules["__main__"] = types.ModuleType("__main__")  # as `python -c` has it: no file
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        status = 0
    except SystemExit as exit:
        status = _exit_status(exit.code)
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        try:  # what a fresh interpreter does as it exits: wait for its threads, run atexit, flush
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _report(connection: socket.socket, pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    try:
        connection.send(str(os.waitstatus_to_exitcode(status)).encode())
    except OSError:  # the client went away
        pass
    connection.close()


def main(path: str) -> None:
    sys.path[0] = os.getcwd()  # as `python -m` has it, not this file's folder
    for name in PRELOAD:
        importlib.import_module(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(16)
    # The test worker's end of stdin closes when it exits: the server goes with it.
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        message, streams, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            server.close()
            connection.close()
            _child(request, streams)
        for fd in streams:
            os.close(fd)
        connection.send(str(pid).encode())
        threading.Thread(target=_report, args=(connection, pid), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1])
