"""Choosing a tf.distribute strategy; who is the chief. (The XLA policy is `keras_models.backend.use_jit`.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import tensorflow as tf

from training.config import across_machines, cluster_spec, tf_config


def make_strategy(name: str = "auto", worker_timeout: float = 600.0) -> tf.distribute.Strategy:
    """auto: multi-worker when TF_CONFIG names a cluster, mirrored with several GPUs, else one device."""
    gpus = tf.config.list_physical_devices("GPU")  # physical: listing logical ones would start the
    # runtime, after which MultiWorkerMirroredStrategy can no longer configure its collectives
    if name == "auto":
        name = "multi_worker" if across_machines(name) else "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not cluster_spec():
            raise ValueError("strategy multi_worker needs TF_CONFIG with a cluster and this worker's task "
                             '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}})')
        return wait_for_cluster(tf.distribute.MultiWorkerMirroredStrategy, _peers(), worker_timeout)
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise ValueError(f"strategy tpu: no TPU found ({str(e).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}")


def _peers() -> list[str]:
    """The other tasks' addresses in TF_CONFIG (the ones this worker waits for)."""
    config = tf_config()
    task = config.get("task", {})
    return [address for kind, addresses in config.get("cluster", {}).items() for i, address in enumerate(addresses)
            if (kind, i) != (task.get("type"), task.get("index"))]


def wait_for_cluster(create: Callable[[], tf.distribute.Strategy], peers: list[str], timeout_s: float):
    """`create()` blocks in C++ until every worker has joined, holding the GIL: deaf to Python signal
    handlers and threads. Ctrl-C and SIGTERM get their default action meanwhile (the process ends:
    130, 143), and a watchdog process (`training.cluster_watch`) says who is awaited, reports an
    interrupt and ends the wait after `timeout_s`."""
    if threading.current_thread() is not threading.main_thread():
        return create()
    stop = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, signal.SIG_DFL) for s in stop}
    watch = subprocess.Popen([sys.executable, "-m", "training.cluster_watch", str(os.getpid()), str(timeout_s),
                              ", ".join(peers) or "(none)"], stdin=subprocess.PIPE, text=True)
    try:
        strategy = create()
        watch.stdin.write("joined\n")
        watch.stdin.flush()
        return strategy
    finally:
        watch.stdin.close()
        watch.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes outputs: task 0 (or the chief) in a cluster, always true otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0
                                                         and "chief" not in resolver.cluster_spec().as_dict())

