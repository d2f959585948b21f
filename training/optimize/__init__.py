"""`keras-models optimize`: quantization-aware training, pruning and clustering with
tensorflow-model-optimization, ending in smaller int8/float TFLite models and a measured table.

tfmot works on `tf_keras` (Keras 2) models only and, once imported, switches `tf.keras` to Keras 2
for the whole process. So `optimize()` runs the job (`training.optimize.job`) in a child process;
the caller's process never imports tfmot and keeps Keras 3 (and keras-cv) working.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

METHODS = ("qat", "prune", "cluster", "prune+qat")
QAT_SAVED_MODEL = "qat_saved_model"  # the QAT methods write it beside their weights; `export` converts int8 from it
ALLOCATIONS = ("sensitivity", "uniform")
# Fine-tuning peak LRs at batch 64 (SGD, cosine): QAT only nudges weights to the int8 grid; pruning
# and clustering have to recover from removed or merged weights.
DEFAULT_LR = {"qat": 0.001, "prune": 0.005, "cluster": 0.005, "prune+qat": 0.005}


class OptimizeError(RuntimeError):
    """An optimize run that cannot go ahead, with what to change."""


@dataclass
class OptimizeOptions:
    method: str
    weights: str
    out: str
    model: str | None = None  # default: the run's config.yaml beside the weights
    data: str | None = None
    image_size: int | None = None
    epochs: int = 3
    steps_per_epoch: int | None = None  # default: one pass over the training split
    batch_size: int = 64
    lr: float | None = None  # default: DEFAULT_LR at batch 64, scaled linearly
    sparsity: float = 0.5  # prune, prune+qat
    prune_block: int = 4  # 1x1-conv/dense weights pruned in blocks of this many input channels
    prune_allocation: str = "sensitivity"  # per-layer sparsity from a one-shot scan, or "uniform"
    clusters: int = 16  # cluster
    eval_images: int = 0  # 0 = the whole validation split
    calibration_images: int = 200  # for the post-training int8 rows
    distill: bool = True  # fine-tune towards the source model's own predictions (knowledge distillation)
    verbose: int = 1

    def check(self) -> OptimizeOptions:
        """Reject bad options before a child process and TensorFlow start."""
        if self.method not in METHODS:
            raise OptimizeError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        if not Path(self.weights).is_file():
            raise OptimizeError(f"weights file {self.weights} not found (e.g. runs/digits/best.weights.h5 "
                                "from `keras-models train`)")
        if not 0 < self.sparsity < 1:
            raise OptimizeError(f"--sparsity must be between 0 and 1 (e.g. 0.5), got {self.sparsity}")
        if self.prune_allocation not in ALLOCATIONS:
            raise OptimizeError(f"--prune-allocation must be one of {', '.join(ALLOCATIONS)}, "
                                f"got {self.prune_allocation!r}")
        if self.prune_allocation == "sensitivity" and self.sparsity > 0.95:
            raise OptimizeError(f"--sparsity {self.sparsity} is above 0.95, the most the sensitivity scan "
                                "gives one layer; use --prune-allocation uniform")
        if not 1 <= self.prune_block <= 16:
            raise OptimizeError(f"--prune-block must be 1-16 (e.g. 4), got {self.prune_block}")
        if not 2 <= self.clusters <= 256:
            raise OptimizeError(f"--clusters must be 2-256 (e.g. 16), got {self.clusters}")
        if self.epochs < 1 or self.batch_size < 1 or (self.steps_per_epoch or 1) < 1:
            raise OptimizeError("--epochs, --steps-per-epoch and --batch-size must be at least 1")
        out = Path(self.out)
        if out.exists() and any(out.iterdir()):
            raise OptimizeError(f"{out} already exists and is not empty; pass a new --out or remove it")
        if self.lr is None:
            self.lr = round(DEFAULT_LR[self.method] * self.batch_size / 64, 7)
        return self


def optimize(**options) -> dict:
    """Run one method in a child process; returns the results (also in `<out>/optimize.json`)."""
    opts = OptimizeOptions(**options).check()
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()  # empty: the job publishes by renaming its staging folder here
    with tempfile.TemporaryDirectory() as tmp:
        error_file = Path(tmp) / "error.txt"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        child = subprocess.run([sys.executable, "-m", "training.optimize", json.dumps(dataclasses.asdict(opts)),
                                str(error_file)], env=env)
        if child.returncode != 0:
            message = error_file.read_text().strip() if error_file.is_file() else ""
            raise OptimizeError(message or f"the optimize process failed (exit {child.returncode}); "
                                           "run again with KERAS_MODELS_DEBUG=1 for the traceback")
    return json.loads((out / "optimize.json").read_text())
