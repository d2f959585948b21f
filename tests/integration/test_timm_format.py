"""Back to timm: `save_timm` writes config.json + model.safetensors that timm, the Hub and we load
with the Keras model's logits."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import HELPERS, cli, randomize
from helpers.hub_server import HubServer

import keras_models as km
from keras_models.state_dicts import CheckpointError

SIZE = 97  # odd: TF SAME pads unevenly, so a padding slip shows
# name: classes (5: a custom head, as after fine-tuning)
CASES = {"rexnet_100": 5, "rexnetr_100": 1000, "tf_efficientnet_b0": 5, "efficientnet_b0": 3,
         "tf_efficientnet_lite0": 5, "tf_efficientnetv2_b0": 4, "efficientnetv2_rw_t": 2, "tf_efficientnet_es": 3}
TIMM_PYTHON = os.environ.get("KERAS_MODELS_TIMM_PYTHON") or (
    sys.executable if importlib.util.find_spec("timm") else None)
needs_timm = pytest.mark.skipif(TIMM_PYTHON is None, reason="timm is not installed (`make bench` installs it; or "
                                "point KERAS_MODELS_TIMM_PYTHON at a Python that has it)")


def calibrate(model, x) -> None:
    """BatchNorm statistics from data (momentum 0 for one training-mode pass), so activations stay
    O(1) through random weights and the logits depend on the input: a layout slip anywhere shows."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.99


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (folder, input, the Keras model's logits)."""
    root = tmp_path_factory.mktemp("timm")
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    out = {}
    for name, classes in CASES.items():
        # no dropout or drop path: calibration's training-mode pass must not depend on a random draw
        model = km.create_model(name, num_classes=classes, input_shape=(SIZE, SIZE, 3), classifier_activation=None,
                                dropout_rate=0.0, drop_path_rate=0.0)
        randomize(model)
        calibrate(model, x)
        labels = [f"class {i}" for i in range(classes)] if classes < 1000 else None
        folder = km.save_timm(model, root / name, labels=labels)
        np.save(root / f"{name}.x.npy", x)
        logits = np.asarray(model.predict(x, verbose=0))
        assert np.abs(logits[0] - logits[1]).max() > 1e-2, f"{name}: the logits do not depend on the input"
        out[name] = (folder, root / f"{name}.x.npy", logits)
    return out


@pytest.mark.slow
def test_the_folder_is_timms_config_and_state_dict(saved):
    from safetensors.numpy import load_file

    folder, _, _ = saved["rexnet_100"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "rexnet_100" and config["num_classes"] == 5
    assert config["label_names"] == [f"class {i}" for i in range(5)]
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, SIZE, SIZE] and cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.875
    assert cfg["mean"] == pytest.approx([0.485, 0.456, 0.406]) and cfg["license"] == "mit"
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors["stem.conv.weight"].shape == (32, 3, 3, 3) and tensors["head.fc.weight"].shape == (5, 1280)
    assert tensors["stem.bn.num_batches_tracked"].dtype == np.int64
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "a staging folder was left"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_our_converter_reads_it_back_to_the_same_logits(saved, name):
    folder, x, logits = saved[name]
    again = km.create_model(name, weights=str(folder / "model.safetensors"), num_classes=CASES[name],
                            input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    assert np.abs(np.asarray(again.predict(np.load(x), verbose=0)) - logits).max() < 1e-5


@pytest.mark.slow
def test_the_hub_serves_it_back_as_hf_model(saved, monkeypatch, tmp_path):
    folder, x, logits = saved["tf_efficientnet_b0"]
    hub = HubServer({"me/b0-flowers": {f.name: f.read_bytes() for f in folder.iterdir()}})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    try:
        model = km.create_model("hf://me/b0-flowers", classifier_activation=None)
    finally:
        hub.close()
    assert model.input_shape == (None, SIZE, SIZE, 3)  # the repo's own input size
    assert np.abs(np.asarray(model.predict(np.load(x), verbose=0)) - logits).max() < 1e-5


@needs_timm
@pytest.mark.parametrize("name", sorted(CASES))
def test_timm_loads_it_with_the_keras_logits(saved, name, tmp_path):
    folder, x, logits = saved[name]
    r = subprocess.run([TIMM_PYTHON, str(HELPERS / "timm_load.py"), str(folder), str(x), str(tmp_path / "t.npy")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.abs(np.load(tmp_path / "t.npy") - logits).max() < 2e-4


@needs_timm
def test_timm_loads_it_from_the_hub_stand_in(saved, tmp_path):
    folder, x, logits = saved["rexnet_100"]
    hub = HubServer({"me/rexnet-mine": {f.name: f.read_bytes() for f in folder.iterdir()}})
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    try:
        r = subprocess.run([TIMM_PYTHON, str(HELPERS / "timm_load.py"), str(folder), str(x), str(tmp_path / "t.npy"),
                            "me/rexnet-mine"], capture_output=True, text=True, timeout=600, env=env)
    finally:
        hub.close()
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.abs(np.load(tmp_path / "t.npy") - logits).max() < 2e-4


@pytest.mark.slow
def test_what_timm_cannot_build_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="timm has no architecture for rexnet_lite_100"):
        km.save_timm(km.create_model("rexnet_lite_100", input_shape=(64, 64, 3)), tmp_path / "lite")
    with pytest.raises(CheckpointError, match="no classifier as timm builds it"):
        km.save_timm(km.create_model("rexnet_100", include_top=False, input_shape=(64, 64, 3)), tmp_path / "nt")
    with pytest.raises(ValueError, match="was not built by keras_models"):
        km.save_timm(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), tmp_path / "bare")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        km.save_timm(km.create_model("rexnet_100", input_shape=(64, 64, 3)), tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.slow
def test_save_timm_cli_from_a_training_run(digits_run, tmp_path, capsys):
    r = cli(capsys, "save-timm", "--weights", str(digits_run / "best.weights.h5"), "--out", str(tmp_path / "digits"))
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "digits" / "config.json").read_text())
    assert config["architecture"] == "rexnet_100" and config["num_classes"] == 10
    assert config["label_names"] == [str(i) for i in range(10)]
    r = cli(capsys, "save-timm", "--weights", str(digits_run / "best.weights.h5"), "--out", str(tmp_path / "digits"))
    assert r.returncode != 0 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
