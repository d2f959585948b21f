"""Every Keras 3 backend gives the reference numbers: the shared fixtures' logits from converted
weights, and one `fit` step, on TensorFlow, JAX and PyTorch (each in its own process)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import JAX_CPU_ENV, ROOT

# fixture stem: the registry name it is (shared/fixtures/README.md)
FIXTURE_MODELS = {"rexnet_100_timm": "rexnet_100", "rexnet_100_official": "rexnet_100",
                  "tf_efficientnet_b0_timm": "tf_efficientnet_b0", "efficientnet_b0_timm": "efficientnet_b0",
                  "efficientnet_lite0_real": "tf_efficientnet_lite0"}

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import keras_models as km
    fixtures, cases = sys.argv[1], json.loads(sys.argv[2])
    out = {"backend": keras.backend.backend()}
    for stem, name in cases.items():
        d = np.load(f"{fixtures}/{stem}.npz")
        model = km.create_model(name, weights=f"{fixtures}/{stem}.safetensors", input_shape=d["x"].shape[1:],
                                include_preprocessing=False, classifier_activation=None)
        out[stem] = float(np.abs(model.predict(d["x"], verbose=0) - d["logits"]).max())
    model = km.create_model("tf_efficientnet_b0", num_classes=2, input_shape=(32, 32, 3), drop_path_rate=0.1)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    loss = model.fit(x, np.array([0, 1, 0, 1]), batch_size=4, epochs=1, verbose=0).history["loss"][0]
    moved = sum(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights))
    out["fit"] = {"loss": float(loss), "weights_moved": moved, "weights": len(before)}
    print("RESULT " + json.dumps(out))
""")


def _torch_python() -> str | None:
    if os.environ.get("KERAS_MODELS_TORCH_PYTHON"):
        return os.environ["KERAS_MODELS_TORCH_PYTHON"]
    return sys.executable if importlib.util.find_spec("torch") else None


def _interpreter(backend: str) -> tuple[str, dict]:
    if backend == "torch":
        python = _torch_python()
        if python is None:
            pytest.skip("PyTorch is not installed here (`make bench` installs it; or point "
                        "KERAS_MODELS_TORCH_PYTHON at a Python with torch and keras)")
        return python, {"KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT)}
    return sys.executable, JAX_CPU_ENV if backend == "jax" else {"KERAS_BACKEND": "tensorflow"}


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
@pytest.mark.slow
def test_the_fixtures_logits_and_a_fit_step_on_every_backend(backend, fixtures):
    python, env = _interpreter(backend)
    r = subprocess.run([python, "-c", SCRIPT, str(fixtures), json.dumps(FIXTURE_MODELS)], capture_output=True,
                       text=True, env={**os.environ, **env}, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert out.pop("backend") == backend
    fit = out.pop("fit")
    assert fit["loss"] == fit["loss"] and fit["weights_moved"] == fit["weights"], fit  # finite, every weight trained
    assert set(out) == set(FIXTURE_MODELS)
    assert {stem: d for stem, d in out.items() if not d < 2e-4} == {}
