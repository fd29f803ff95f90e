"""Devices and `tf.distribute` strategies: one CPU, several GPUs, several machines."""

from __future__ import annotations

import os

from absl import logging

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


def make_strategy(name: str):
    """``auto``: MirroredStrategy over the GPUs when there are several, else the default."""
    import tensorflow as tf

    if name == "multi_worker":
        # Must come first: collective ops are configured before TensorFlow's context starts,
        # and listing logical devices starts it.
        if "TF_CONFIG" not in os.environ:
            raise StrategyError(
                "strategy='multi_worker' needs TF_CONFIG in the environment (the cluster and this "
                "worker's task); see BUILD.md"
            )
        check_tf_config(os.environ["TF_CONFIG"])
        return _multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        devices = [d.name for d in (gpus or cpus)]
        return tf.distribute.MirroredStrategy(devices)
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


def _multi_worker_strategy():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """`reduce` that takes what Keras 3's `fit` gives it under this strategy.

        Keras 3 calls `strategy.reduce` with a nested (x, y) batch (to build the model) and with
        scalar metrics along ``axis=0``; the collective strategy takes one value, of rank >= 1
        when an axis is given, so `fit` fails under MultiWorkerMirroredStrategy
        (keras-team/keras#20585). Reducing leaf by leaf, a scalar across replicas only, is what
        those calls mean.
        """

        def reduce(self, reduce_op, value, axis=None):
            parent = super()

            def reduce_leaf(leaf):
                local = (
                    self.experimental_local_results(leaf)[0]
                    if isinstance(leaf, tf.distribute.DistributedValues)
                    else leaf
                )
                leaf_axis = None if axis is not None and local.shape.rank == 0 else axis
                return parent.reduce(reduce_op, leaf, leaf_axis)

            return tf.nest.map_structure(reduce_leaf, value)

    return MultiWorkerMirroredStrategy()


def worker_info(strategy) -> tuple[bool, int]:
    """(is this the chief, task index). Single-machine strategies: always the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None) or not resolver.cluster_spec().as_dict():
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )
    return is_chief, int(task_id or 0)
