"""A small real training run for the trainer's tests, and how to read what it left."""

from __future__ import annotations

import csv
from pathlib import Path

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
