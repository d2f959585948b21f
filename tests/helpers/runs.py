"""A small real training run for the trainer's tests, and how to read what it left."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import HELPERS, ROOT

# Small and fast but the real model: ReXNet 1.0x at 32px, a few steps per epoch.
SMALL = ["--model", "rexnet_100", "--data", "digits", "--batch-size", "32", "--steps-per-epoch", "6",
         "--epochs", "2", "--checkpoint-every", "2"]


def read_metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def latest_step(out: Path) -> int | None:
    index = out / "checkpoints" / "checkpoint"
    if not index.is_file():
        return None
    first = index.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-N"
    return int(first.rsplit("-", 1)[1].rstrip('"'))


def kill_at_mid_epoch_checkpoint(cmd: list[str], out: Path, steps_per_epoch: int, cwd: Path,
                                 timeout: float = 600) -> int:
    """Start a training command and SIGKILL it as soon as a checkpoint inside epoch 1 exists; the step."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        step = latest_step(out)
        if step is not None and 0 < step < steps_per_epoch:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return step
        time.sleep(0.05)
    raise AssertionError(f"no mid-epoch checkpoint seen before the run ended: {proc.communicate()}")


def start_worker(config: dict, weights: Path, env: dict | None = None) -> subprocess.Popen:
    """One training process (`train_worker.py`): a TrainConfig as a dict, where its weights go."""
    return subprocess.Popen(
        [sys.executable, str(HELPERS / "train_worker.py"), json.dumps(config), str(weights)],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_worker(proc: subprocess.Popen, timeout: int = 600) -> dict:
    """Wait for a `start_worker` process; its summary."""
    stdout, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
