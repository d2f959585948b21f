"""Model code is pure Keras 3: weights trained on TensorFlow give the same outputs on JAX (the reference
fixtures on every backend: test_backends.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import JAX_CPU_ENV, ROOT, randomize

import keras_models as km

# One model per block type: partial residual + SE-with-BN (rexnet), ReLU6 lite head (rexnet_lite),
# MBConv + SE (B0), Lite, fused MBConv (V2-B0). (rexnetr and V2-S add only other widths, and XLA-CPU
# compiles each model for about a minute.)
MODELS = ["rexnet_100", "rexnet_lite_100", "tf_efficientnet_b0", "tf_efficientnet_lite0", "tf_efficientnetv2_b0"]
SIZE = 64

JAX_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import keras
    import keras_models as km
    assert keras.backend.backend() == "jax", keras.backend.backend()
    work = sys.argv[1]
    x = np.load(os.path.join(work, "x.npy"))
    diffs = {}
    for name in json.loads(sys.argv[2]):
        model = km.create_model(name, input_shape=(x.shape[1], x.shape[2], 3), classifier_activation=None)
        model.load_weights(os.path.join(work, name + ".weights.h5"))
        ref = np.load(os.path.join(work, name + ".npy"))
        diffs[name] = float(np.abs(model.predict(x, verbose=0) - ref).max())
        if name in ("rexnet_100", "tf_efficientnet_b0"):  # the inference graph (fused units) builds on JAX too
            fast = km.inference_model(model)
            diffs[name + ":inference"] = float(np.abs(fast.predict(x, verbose=0) - ref).max())
    print("RESULT " + json.dumps(diffs))
""")


@pytest.mark.slow
def test_models_run_on_jax_with_tensorflow_weights(tmp_path):
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    for name in MODELS:
        model = km.create_model(name, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
        randomize(model)
        model.save_weights(tmp_path / f"{name}.weights.h5")
        np.save(tmp_path / f"{name}.npy", model.predict(x, verbose=0))
    env = {**os.environ, **JAX_CPU_ENV}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path), json.dumps(MODELS)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert set(MODELS) <= set(diffs) and "rexnet_100:inference" in diffs
    assert all(d < 2e-4 for d in diffs.values()), json.dumps(diffs)
