"""The tf.data service: its dispatcher and worker servers, and the training stream they compute.

With `train --data-service grpc://HOST:PORT` the decode, crop, flip, RandAugment, batching and
MixUp/CutMix run on the service's workers (any number of CPU machines) and the trainers read
finished batches over gRPC. The mode is DYNAMIC sharding: the dispatcher hands each chunk of
positions to one worker, so each image is processed at most once per epoch (exactly once while no
worker is lost), in no fixed order. What travels is a position `g` in the endless stream of
epochs: epoch `g // N`, and within it the image `index_shuffle(g % N)` (a seeded permutation per
epoch). The position rides inside the elements (an `enumerate` after the split source would be
replicated on every worker) and seeds the image's augmentation, so its pixels are a pure function
of (seed, position) wherever they are computed. A TFRecord source is split by shard instead (the
shards in a seeded order per epoch, records in file order; position = shard unit and record).
"""

from __future__ import annotations

import faulthandler
import hashlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import tensorflow as tf

from training import data as data_lib

CHUNK = 64  # positions per split: one dispatcher round trip per chunk, not per image (tensorflow#70541)
STOP_GRACE_S = 5.0  # how long a stopping server may wait for its tasks
RECORD_BITS = 24  # a TFRecord position: (shard unit << 24) + record number (16M records per shard)


class ServiceError(RuntimeError):
    """A data service that cannot be reached or used (one line, with what to do)."""


def address(url: str) -> str:
    """`grpc://HOST:PORT` or `HOST:PORT` -> `HOST:PORT`."""
    host_port = url.removeprefix("grpc://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ServiceError(f"data service {url!r} is not grpc://HOST:PORT")
    return host_port


def wait_for(url: str, timeout: float, what: str = "tf.data service dispatcher") -> None:
    """Return once something listens at `url`; after `timeout` seconds, a one-line `ServiceError`."""
    host, _, port = address(url).rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ServiceError(f"no {what} answers at {url} after {timeout:g} s ({e.strerror or e}): start "
                                   "one with `keras-models data-service dispatcher --port PORT`, or check the "
                                   "address") from None
            time.sleep(0.5)


def job_name(out: str, start: int) -> str:
    """One job per run and start position, the same on every worker of a multi-worker run."""
    return "keras-models-" + hashlib.sha1(f"{out}@{start}".encode()).hexdigest()[:16]


def positions(source: data_lib.DataSource, seed: int, start: int, end: int) -> tf.data.Dataset:
    """(position int64, raw, label) for positions [start, end), split into chunks the dispatcher
    hands out: the dataset the service's workers read from."""
    if source.listing is not None:
        return _listed(source, seed, start, end)
    if source.shards is not None:
        return _sharded(source, seed, start, end)
    raise ServiceError(f"--data-service reads folder:, digits and tfrecord: sources with separate train and val "
                       f"files, not {source.name}: write it as shards with `keras-models prepare` first")


def _listed(source: data_lib.DataSource, seed: int, start: int, end: int) -> tf.data.Dataset:
    raws, labels = source.listing
    n = len(labels)
    raws, labels = tf.constant(raws), tf.constant(labels)

    def chunk(c):
        first = tf.maximum(c * CHUNK, start)
        return tf.data.Dataset.range(first, tf.minimum((c + 1) * CHUNK, end))

    def element(g):
        epoch = g // n
        i = tf.random.experimental.index_shuffle(g % n, tf.stack([tf.cast(seed, tf.int64), epoch]), n - 1)
        return g, tf.gather(raws, i), tf.gather(labels, i)

    return tf.data.Dataset.range(start // CHUNK, math.ceil(end / CHUNK)).flat_map(chunk).map(element)


def _sharded(source: data_lib.DataSource, seed: int, start: int, end: int) -> tf.data.Dataset:
    shards = source.shards
    per_shard = max(1, source.num_train // len(shards))
    files = tf.constant(shards)

    def unit(u):
        epoch = u // len(shards)
        f = tf.random.experimental.index_shuffle(u % len(shards), tf.stack([tf.cast(seed, tf.int64), epoch]),
                                                 len(shards) - 1)
        records = tf.data.TFRecordDataset(tf.gather(files, f)).map(data_lib.parse_record)

        def positioned(r, record):
            return tf.bitwise.left_shift(u, RECORD_BITS) + r, record[0], record[1]

        return records.enumerate().map(positioned)

    return tf.data.Dataset.range(start // per_shard, math.ceil(end / per_shard) + 1).flat_map(unit)


IN_FLIGHT = 16 * CHUNK  # positions a worker may still be computing behind the newest that arrived


class Arrivals:
    """Which stream positions reached the trainer. A position still missing when the stream is
    `IN_FLIGHT` positions past it will not come: a worker that held it was lost (dynamic sharding
    processes each at most once). Positions are those of this process's batches (all replicas)."""

    def __init__(self, start: int):
        self.settled = start  # every position below this arrived or is counted lost
        self.pending: set[int] = set()
        self.lost: set[int] = set()

    def add(self, positions) -> None:
        for p in map(int, positions):
            if p >= self.settled:
                self.pending.add(p)
            else:
                self.lost.discard(p)  # later than thought: not lost after all

    def settle(self) -> int:
        """Count what can no longer arrive; returns how many positions were newly found lost."""
        if not self.pending:
            return 0
        horizon, before = max(self.pending) - IN_FLIGHT, len(self.lost)
        for p in range(self.settled, horizon):
            if p in self.pending:
                self.pending.remove(p)
            else:
                self.lost.add(p)
        self.settled = max(self.settled, horizon)
        return len(self.lost) - before


def service_dataset(pipeline: data_lib.Pipeline, source: data_lib.DataSource, batch_size: int, *, url: str,
                    job: str, start: int, end: int) -> tf.data.Dataset:
    """Batches of (uint8 images, one-hot labels, status, positions) computed by the service: what
    `Pipeline.train_dataset` yields locally, plus each image's stream position (`Arrivals`);
    unreadable files come as BAD, counted as locally."""
    ds = processed(pipeline, source, start, end)
    ds = pipeline.finish_keyed(ds.batch(batch_size, drop_remainder=True), source.num_classes, keep_keys=True)
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=url, job_name=job))
    return ds.prefetch(tf.data.AUTOTUNE)


def processed(pipeline: data_lib.Pipeline, source: data_lib.DataSource, start: int, end: int) -> tf.data.Dataset:
    """(position, uint8 image, label, status) per element: what a service worker computes, and what
    the tests compute locally to compare."""
    augment, blank = pipeline.augmenter(source)
    read = source.read or tf.identity

    def one(g, raw, label):
        return (g, *augment(g, read(raw), label))

    def unreadable(g, raw, label):
        return (g, *blank(g, raw, label))

    ds = positions(source, pipeline.seed, start, end)
    if data_lib.can_fail(source):
        return data_lib.guarded_map(ds, one, unreadable)
    return ds.map(one, num_parallel_calls=tf.data.AUTOTUNE)


# --- servers -----------------------------------------------------------------------------
@contextmanager
def local_cluster(workers: int, timeout: float = 60.0) -> Iterator[str]:
    """A dispatcher and `workers` worker processes on 127.0.0.1, run by the CLI as a user would;
    yields the dispatcher's URL, then stops the workers and the dispatcher (SIGTERM, in that order),
    each of which must say it stopped and exit 0 within `timeout` (`ServiceError` otherwise)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"grpc://127.0.0.1:{port}"
    servers = [spawn(["dispatcher", "--port", str(port)])]
    try:
        servers += [spawn(["worker", "--dispatcher", url, "--timeout", str(timeout)]) for _ in range(workers)]
        yield url
    finally:
        for server in reversed(servers):
            _stop(server, timeout)


def _stop(server: subprocess.Popen, timeout: float) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        out, _ = server.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        raise ServiceError(f"a data service server (pid {server.pid}) did not stop within {timeout:g} s") from None
    # exit 1 after "stopping": the C-level deadline ended a worker whose tasks never let go (tensorflow#56490)
    if not (server.returncode == 0 and "stopped" in out or server.returncode == 1 and "stopping" in out):
        raise ServiceError(f"a data service server (pid {server.pid}) stopped with exit {server.returncode}: {out!r}")


def spawn(args: list[str]) -> subprocess.Popen:
    """`keras-models data-service ARGS` in a child process, returned once it says it is serving."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "keras_models", "data-service", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "serving at" not in line:
        proc.kill()
        raise ServiceError(f"`keras-models data-service {' '.join(args)}` did not start (exit {proc.wait()})")
    return proc


def serve(kind: str, make: Callable[[], object], log: Callable[[str], None] = print) -> None:
    """Start a server, say where, and stop it cleanly on Ctrl-C or SIGTERM (one line per event).
    The wait is a Python loop, not the server's `join()`, which would block signals in C++."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = make()
        where = getattr(server, "target", None) or f"grpc://{server._address}"  # noqa: SLF001 - a worker's
        log(f"{kind} serving at {where}")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        log(f"{kind} stopping")
        sys.stdout.flush()
        # A deadline that needs no Python to run: should even the grace period below never get the
        # interpreter back (a C++ thread holding the GIL), the process still ends.
        faulthandler.dump_traceback_later(STOP_GRACE_S + 5, exit=True, file=sys.stderr)
        # `_stop` (the dispatcher's public API has none; tf.data's own tests call it) can wait forever
        # on a task whose consumer went away (tensorflow#56490): after a grace period, leave anyway.
        stopper = threading.Thread(target=server._stop, daemon=True)  # noqa: SLF001
        stopper.start()
        stopper.join(STOP_GRACE_S)
        if stopper.is_alive():
            log(f"{kind} stopped (unfinished tasks abandoned after {STOP_GRACE_S:g} s)")
            sys.stdout.flush()
            os._exit(0)  # the gRPC threads would hold the process: nothing of a server's is left to write
        log(f"{kind} stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def dispatcher(port: int, work_dir: str | None = None, worker_timeout_s: float = 10.0) -> object:
    """A dispatcher on `port`; with `work_dir` it journals its state there and survives a restart."""
    config = tf.data.experimental.service.DispatcherConfig(port=port, work_dir=work_dir, fault_tolerant_mode=bool(
        work_dir), worker_timeout_ms=int(worker_timeout_s * 1000))
    return tf.data.experimental.service.DispatchServer(config)


def worker(dispatcher_url: str, port: int = 0, host: str = "localhost", timeout_s: float = 60.0) -> object:
    """A worker that registers with the dispatcher (which must answer within `timeout_s`)."""
    wait_for(dispatcher_url, timeout_s)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=address(dispatcher_url), worker_address=f"{host}:%port%", port=port,
        heartbeat_interval_ms=1000, dispatcher_timeout_ms=int(timeout_s * 1000))
    return tf.data.experimental.service.WorkerServer(config)
