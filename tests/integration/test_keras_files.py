"""`.keras` files load tomorrow: saved here, loaded in a new process that only runs `import keras_models`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import randomize

import keras_models as km

SIZE = 64
# name: what a user builds (every family, head and build option the issue lists)
CASES = {
    "rexnet_5_classes_drop_path": lambda: km.create_model("rexnet_100", num_classes=5, drop_path_rate=0.1,
                                                          input_shape=(SIZE, SIZE, 3)),
    "rexnet_lite_constructor": lambda: km.ReXNet(width=1.3, lite=True, num_classes=3, input_shape=(SIZE, SIZE, 3)),
    "rexnetr_no_top_avg": lambda: km.create_model("rexnetr_100", include_top=False, pooling="avg",
                                                  input_shape=(SIZE, SIZE, 3)),
    "efficientnet_b0_no_top_max": lambda: km.EfficientNetB0(include_top=False, pooling="max",
                                                            input_shape=(SIZE, SIZE, 3)),
    "native_efficientnet_b0": lambda: km.create_model("efficientnet_b0", num_classes=4, input_shape=(SIZE, SIZE, 3)),
    "lite0_features_only": lambda: km.create_model("tf_efficientnet_lite0", features_only=True,
                                                   input_shape=(SIZE, SIZE, 3)),
    "v2_b0": lambda: km.create_model("tf_efficientnetv2_b0", num_classes=6, input_shape=(SIZE, SIZE, 3)),
}

LOADER = """
import json, sys
import numpy as np
import keras
cases = json.loads(sys.argv[1])
first = next(iter(cases.values()))
try:  # before keras_models is imported its layers are unknown: proof that the import is what registers them
    keras.saving.load_model(first["file"])
    print("loaded-without-keras_models")
except Exception as e:
    print("refused-without-keras_models:", type(e).__name__)
import keras_models  # noqa: F401  (all a user does)
for name, case in cases.items():
    model = keras.saving.load_model(case["file"])
    out = model.predict(np.load(case["x"]), verbose=0)
    out = np.concatenate([np.ravel(o) for o in keras.tree.flatten(out)])
    print(name, float(np.max(np.abs(out - np.load(case["y"])))))
"""


def _flat(out) -> np.ndarray:
    return np.concatenate([np.ravel(o) for o in keras.tree.flatten(out)])


def _save(model: keras.Model, folder, name: str, x: np.ndarray) -> dict:
    path = folder / f"{name}.keras"
    model.save(path)
    np.save(folder / f"{name}.x.npy", x)
    np.save(folder / f"{name}.y.npy", _flat(model.predict(x, verbose=0)))
    return {"file": str(path), "x": str(folder / f"{name}.x.npy"), "y": str(folder / f"{name}.y.npy")}


@pytest.mark.slow
def test_keras_files_load_in_a_new_process_after_import_keras_models(tmp_path, digits_run):
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    cases = {}
    for name, make in CASES.items():
        model = make()
        randomize(model)
        cases[name] = _save(model, tmp_path, name, x)

    # a preset's model, and a model fine-tuned with keras.callbacks.ModelCheckpoint writing the file
    preset = km.save_preset(km.create_model("rexnet_100", num_classes=2, input_shape=(SIZE, SIZE, 3)),
                            tmp_path / "preset")
    cases["preset_model"] = _save(km.create_model(str(preset)), tmp_path, "preset_model", x)
    tuned = km.create_model("tf_efficientnet_b0", num_classes=2, input_shape=(SIZE, SIZE, 3))
    tuned.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    checkpoint = tmp_path / "checkpoint.keras"
    tuned.fit(x, np.array([0, 1]), epochs=1, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(checkpoint)])
    np.save(tmp_path / "checkpoint.y.npy", _flat(tuned.predict(x, verbose=0)))
    cases["model_checkpoint"] = {"file": str(checkpoint), "x": str(tmp_path / "rexnet_5_classes_drop_path.x.npy"),
                                 "y": str(tmp_path / "checkpoint.y.npy")}

    # a training run's last.keras (32-px digits, the run's own input size)
    last = digits_run / "last.keras"
    assert last.is_file(), f"the training run wrote no {last.name}"
    run_model = keras.saving.load_model(last)
    digits_x = np.random.default_rng(1).uniform(0, 255, (2, *run_model.input_shape[1:])).astype("float32")
    cases["run_last_keras"] = {**_save(run_model, tmp_path, "run_last", digits_x), "file": str(last)}

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", LOADER, json.dumps(cases)], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("refused-without-keras_models"), lines[0]
    diffs = dict(line.rsplit(" ", 1) for line in lines[1:])
    assert set(diffs) == set(cases)
    assert {name: float(d) for name, d in diffs.items() if float(d) > 1e-5} == {}


@pytest.mark.parametrize("name", ["rexnet_100", "tf_efficientnet_b0"])
@pytest.mark.slow
def test_a_keras_file_needs_keras_models_its_layers_are_custom(tmp_path, name):
    """What the docs say: a `.keras` file of ours loads where keras_models is installed (custom
    layers: PyTorch-epsilon BatchNorm, PartialResidual); for a keras_models-free artifact, export."""
    model = km.create_model(name, num_classes=2, input_shape=(SIZE, SIZE, 3))
    model.save(tmp_path / "m.keras")
    config = json.loads(__import__("zipfile").ZipFile(tmp_path / "m.keras").read("config.json"))
    registered = {layer.get("registered_name") for layer in config["config"]["layers"]}
    assert any(str(r).startswith("keras_models>") for r in registered)
