"""The other workers of a multi-worker cluster: whose port answers, and the watchdog that bounds the
wait for them.

Standard library only, and run by its path in isolated mode (``python -I trainers/peers.py``), not as
``-m trainers.peers``: the `trainers` package starts TensorFlow on import (about 6 s of CPU on a
2-core machine, taken from the worker starting beside it); this process starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys


def missing_peers(config: dict, timeout: float = 2.0) -> list[str]:
    """``"worker 1 at host:port"`` for every other task of TF_CONFIG whose port takes no connection."""
    me = (config["task"]["type"], config["task"]["index"])
    missing = []
    for task_type, addresses in config["cluster"].items():
        for index, address in enumerate(addresses):
            if (task_type, index) == me:
                continue
            host, _, port = address.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            except (OSError, ValueError):
                missing.append(f"{task_type} {index} at {address}")
    return missing


def watchdog_command(parent: int, timeout: float, config: dict) -> list[str]:
    """The command of the watchdog process for worker ``parent`` (see `trainers.distribute.wait_for_peers`)."""
    return [sys.executable, "-I", os.path.abspath(__file__), str(parent), str(timeout), json.dumps(config)]


def watch(parent: int, timeout: float, config: dict) -> None:
    """The watchdog: when ``timeout`` seconds pass before its stdin closes (the worker got past the
    wait, or died), name the peers whose port takes no connection on stderr, in one line, and kill
    ``parent`` (SIGKILL, the one thing that ends TensorFlow's wait)."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:  # the parent finished (or died): nothing to do
        return
    missing = missing_peers(config) or ["a worker (every port answers: does each run this same command?)"]
    sys.stderr.write(
        f"Error: multi_worker: {', '.join(missing)} did not join within {timeout:g} s; start it with its own "
        f"TF_CONFIG, or check the address (peer_timeout sets the wait)\n"
    )
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]))
