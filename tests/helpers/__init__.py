"""Test helpers: paths, the real CLI in a fresh process, fixtures, well-conditioned random weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures"
PHOTOS = ROOT / "examples" / "photos"
HELPERS = Path(__file__).resolve().parent
# The JAX backend on the CPU, with XLA's LLVM optimisation off: Keras on JAX initialises each weight
# with an op compiled for its shape (~160 compiles to build B0), so compiling, not running, is most
# of a JAX test's time (the backend test: 188 -> 145 s). What the tests check does not depend on it.
JAX_CPU_ENV = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"}


def photo_crops(root: Path, n: int, classes: tuple[str, ...], size: tuple[int, int], png_every: int = 0) -> Path:
    """`n` crops of the bundled photos, `size` (width, height), dealt round-robin into `root/<class>/`:
    JPEG at quality 90, or PNG for every `png_every`-th. The same files every time."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    for i in range(n):
        folder = root / classes[i % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        x, y = rng.integers(0, 60, 2)
        crop = images[i % len(images)].crop((x, y, x + size[0], y + size[1]))
        crop.save(folder / f"{i:02d}.{'png' if png_every and i % png_every == 0 else 'jpg'}", quality=90)
    return root


def load_fixture(fixtures: Path, stem: str):
    data = np.load(fixtures / f"{stem}.npz")
    return data["x"], data["logits"]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keras_models", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """`run_cli` in this process, for what a fresh process would not add (a one-line error, a short
    run): no ~10 s TensorFlow import. argparse's refusals (SystemExit) are exit statuses too."""
    from keras_models.cli import main

    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse refuses before anything runs
        code = stop.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["keras-models", *args], code, captured.out, captured.err)


def randomize(model, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Random but well-conditioned weights (moderate scales, positive BN variances), so deep
    random nets keep finite, comparable activations. Returns them by layer name."""
    rng = np.random.default_rng(seed)
    values = {}
    for layer in model.layers:
        if not layer.weights or layer.name.startswith("normalization"):
            continue
        ws = [rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.normal(0, 0.1, w.shape)
              for w in layer.weights]
        values[layer.name] = [w.astype("float32") for w in ws]
        layer.set_weights(values[layer.name])
    return values
