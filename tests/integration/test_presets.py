"""Preset folders in keras-hub's layout: save, reload anywhere, refuse when damaged; from a run too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import PHOTOS, cli, randomize

import keras_models as km
from keras_models.presets import read_preset
from keras_models.state_dicts import CheckpointError


@pytest.mark.slow
def test_save_and_reload_a_preset(tmp_path):
    model = km.create_model("rexnet_100", num_classes=3, input_shape=(64, 64, 3), classifier_activation=None)
    randomize(model)
    preset = km.save_preset(model, tmp_path / "flowers", labels=["daisy", "rose", "tulip"])
    assert sorted(p.name for p in preset.iterdir()) == [
        "config.json", "labels.txt", "metadata.json", "model.weights.h5", "preprocessor.json"]
    assert json.loads((preset / "config.json").read_text())["config"]["model"] == "rexnet_100"
    assert json.loads((preset / "preprocessor.json").read_text())["image_size"] == [64, 64]

    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    again = km.create_model(str(preset))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert km.create_model(str(preset), num_classes=7).output_shape == (None, 7)  # a new head on its backbone

    with pytest.raises(FileExistsError, match="already exists"):
        km.save_preset(model, preset)
    with pytest.raises(ValueError, match="2 labels for 3 classes"):
        km.save_preset(model, tmp_path / "other", labels=["a", "b"])
    assert not (tmp_path / "other").exists()
    weights = preset / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256 in metadata.json"):
        km.create_model(str(preset))
    with pytest.raises(CheckpointError, match="is not a keras-models preset: it has no config.json"):
        km.create_model(str(tmp_path))


@pytest.mark.slow
def test_an_imagenet_tag_as_a_preset_predicts_like_the_tag(tmp_path, capsys):
    photo = str(PHOTOS / "chelsea.jpg")
    made = cli(capsys, "save-preset", "--weights", "imagenet", "--model", "tf_efficientnet_lite0",
               "--out", str(tmp_path / "lite0"))
    assert made.returncode == 0, made.stderr
    direct = cli(capsys, "predict", "--model", "tf_efficientnet_lite0", photo)
    packaged = cli(capsys, "predict", "--model", str(tmp_path / "lite0"), photo)
    assert direct.returncode == packaged.returncode == 0, packaged.stderr
    assert packaged.stdout == direct.stdout and "Egyptian cat" in direct.stdout


@pytest.mark.slow
def test_a_trained_run_becomes_a_preset_with_its_labels(digits_run, tmp_path, capsys):
    made = cli(capsys, "save-preset", "--weights", str(digits_run / "best.weights.h5"), "--out", str(tmp_path / "p"))
    assert made.returncode == 0, made.stderr
    config, pre, labels = read_preset(tmp_path / "p")
    assert config["model"] == "rexnet_100" and config["num_classes"] == 10 and len(labels) == 10
    assert pre["image_size"] == [32, 32]
    again = cli(capsys, "save-preset", "--weights", str(digits_run / "best.weights.h5"), "--out", str(tmp_path / "p"))
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow
def test_a_folder_named_like_a_model_hides_nothing(tmp_path, monkeypatch):
    """#34: `train --out rexnet_100` (or an empty `mkdir rexnet_100`) made `rexnet_100` mean that folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rexnet_100").mkdir()
    assert km.create_model("rexnet_100", num_classes=3, input_shape=(32, 32, 3)).output_shape == (None, 3)
    (tmp_path / "rexnet_100").rmdir()
    km.save_preset(km.create_model("rexnet_100", num_classes=2, input_shape=(32, 32, 3)), "rexnet_100")
    with pytest.warns(UserWarning, match="taken as the registry name; for the preset folder of that name write "
                                         "./rexnet_100"):
        assert km.create_model("rexnet_100", input_shape=(32, 32, 3)).output_shape == (None, 1000)
    assert km.create_model("./rexnet_100").output_shape == (None, 2)  # written as a path: the folder
    km.save_preset(km.create_model("rexnet_100", num_classes=4, input_shape=(32, 32, 3)), "mine")
    assert km.create_model("mine").output_shape == (None, 4)  # a bare word no model has: the preset folder
