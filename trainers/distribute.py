"""Devices and `tf.distribute` strategies: one CPU, several GPUs, several machines."""

from __future__ import annotations

import contextlib
import os
import subprocess

from absl import logging

from trainers import peers
from zoo import compat

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")


class StrategyError(ValueError):
    """The requested strategy cannot run here (e.g. multi_worker without TF_CONFIG)."""


def split_cpu(count: int) -> None:
    """Expose ``count`` logical CPU devices (before TensorFlow initializes its devices).

    Lets MirroredStrategy run with several replicas on a machine without GPUs: for tests, and for
    trying a multi-device setup on a laptop.
    """
    import tensorflow as tf

    if count <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        logging.warning("TensorFlow devices are already initialized; --logical_cpus ignored")


def cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX; read from Linux's cpuinfo).

    Elsewhere, and on CPUs without them, bfloat16 is emulated, which is slower than float32."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[-1].split()))
    return False


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels: as ``TF_ENABLE_ONEDNN_OPTS`` says, which
    `trainers` sets on x86 CPUs unless the user chose. Without them bfloat16 convolutions fall
    back to emulation (14x slower than float32 here: BUILD.md)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("1", "true")


def precision_policy(mixed_precision: bool | None) -> str:
    """The Keras dtype policy for ``--mixed_precision``: True, False, or None (by the hardware).

    GPUs: ``mixed_float16`` (Keras adds loss scaling); by default only on GPUs with tensor cores
    (compute capability 7.0 and up). CPUs: ``mixed_bfloat16``; by default only where the CPU has
    bfloat16 instructions and TensorFlow's oneDNN kernels are on. Measured: BUILD.md, "Training
    speed".
    """
    import tensorflow as tf

    if mixed_precision is False:
        return "float32"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if mixed_precision:
            return "mixed_float16"
        details = tf.config.experimental.get_device_details(gpus[0])
        return "mixed_float16" if tuple(details.get("compute_capability") or (0, 0)) >= (7, 0) else "float32"
    native = cpu_has_bfloat16() and onednn_enabled()
    if mixed_precision and not native:
        logging.warning(
            "--mixed_precision: this CPU has no bfloat16 instructions or TF_ENABLE_ONEDNN_OPTS is off, so "
            "bfloat16 is emulated and slower than float32"
        )
    return "mixed_bfloat16" if mixed_precision or native else "float32"


def make_strategy(name: str, peer_timeout: float = 300):
    """``auto``: MirroredStrategy over the GPUs when there are several, else the default.

    ``multi_worker`` waits up to ``peer_timeout`` seconds for every worker of TF_CONFIG to start
    (see `wait_for_peers`).
    """
    import tensorflow as tf

    if name == "multi_worker":
        # Must come first: collective ops are configured before TensorFlow's context starts,
        # and listing logical devices starts it.
        if "TF_CONFIG" not in os.environ:
            raise StrategyError(
                "strategy='multi_worker' needs TF_CONFIG in the environment (the cluster and this "
                "worker's task); see BUILD.md"
            )
        config = check_tf_config(os.environ["TF_CONFIG"])
        with wait_for_peers(config, peer_timeout):
            return compat.multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        # One per process: a second MirroredStrategy's collectives collide with the first's.
        return compat.mirrored_strategy(tuple(d.name for d in (gpus or cpus)))
    raise StrategyError(f"strategy {name!r} is not one of {', '.join(STRATEGIES)}")


def check_tf_config(text: str) -> dict:
    """TF_CONFIG as JSON naming a cluster and this worker's task in it; StrategyError otherwise."""
    import json

    try:
        config = json.loads(text)
    except ValueError as error:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({error}): {text[:80]!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise StrategyError(
            'TF_CONFIG must name "cluster" and "task", e.g. {"cluster": {"worker": [...]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    members = cluster.get(task.get("type"))
    index = task.get("index")
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise StrategyError(
            f"TF_CONFIG's task {task} is not in its cluster (types: {', '.join(cluster) or 'none'}, "
            f"{len(members) if isinstance(members, list) else 0} task(s) of that type)"
        )
    return config


@contextlib.contextmanager
def wait_for_peers(config: dict, timeout: float):
    """Bound the wait for the other workers: MultiWorkerMirroredStrategy() blocks in C++, holding
    Python's lock, until every task of the cluster has started (by default for an hour, deaf to
    Ctrl-C and SIGTERM), so no thread or signal handler of this process can run meanwhile.

    A watchdog process does: when ``timeout`` seconds pass before the block ends, it names the
    tasks whose port takes no connection on stderr, in one line, and kills this process
    (SIGKILL: exit status 137), the one thing that ends that call.
    """
    watchdog = subprocess.Popen(peers.watchdog_command(os.getpid(), timeout, config), stdin=subprocess.PIPE)
    try:
        yield
    finally:
        watchdog.stdin.close()  # end of file: the watchdog exits quietly
        watchdog.wait()


def _cluster(strategy) -> dict:
    """The multi-worker cluster spec as a dict of job -> tasks; {} on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return {}
    return resolver.cluster_spec().as_dict()


def _role(cluster: dict, task_type: str | None, task_id: int) -> str:
    """A task's name: "chief" (the chief task, or worker 0 of a cluster without one), or "worker<i>"."""
    if task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster):
        return "chief"
    return f"worker{task_id}"


def worker_role(strategy) -> str:
    """This task's name among `worker_roles`: "chief" (always, on one machine) or "worker<i>"."""
    cluster = _cluster(strategy)
    if not cluster:
        return "chief"
    resolver = strategy.cluster_resolver
    return _role(cluster, resolver.task_type, int(resolver.task_id or 0))


def worker_roles(strategy) -> tuple[str, ...]:
    """Every training task's name (as `_role` gives it: "chief", "worker1", ...); () on one machine."""
    cluster = _cluster(strategy)
    roles = []
    for job in ("chief", "worker"):
        tasks = cluster.get(job, ())
        indices = sorted(tasks) if isinstance(tasks, dict) else range(len(tasks))  # sparse specs are dicts
        roles += [_role(cluster, job, int(index)) for index in indices]
    return tuple(roles)
