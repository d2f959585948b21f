"""A checkpoint that names another architecture is refused; the native/TF EfficientNet pair above all."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_models as km
from keras_models.download import DownloadError
from keras_models.provenance import check_architecture, declared_architecture
from keras_models.state_dicts import CheckpointError


def _tiny(path, metadata=None):
    save_file({"conv_stem.weight": np.zeros((1,), np.float32)}, str(path), metadata=metadata)
    return path


def test_the_architecture_comes_from_config_json_or_safetensors_metadata(tmp_path):
    plain = _tiny(tmp_path / "a.safetensors")
    assert declared_architecture(plain) is None
    check_architecture(plain, "tf_efficientnet_b0")  # nothing declared: the model name decides
    named = _tiny(tmp_path / "b.safetensors", {"source": "timm 1.0.31 tf_efficientnet_b0, random init"})
    assert declared_architecture(named) == "tf_efficientnet_b0"  # not efficientnet_b0 inside it
    explicit = _tiny(tmp_path / "c.safetensors", {"architecture": "efficientnet_b3.ra2_in1k"})
    assert declared_architecture(explicit) == "efficientnet_b3"
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "config.json").write_text(json.dumps({"architecture": "efficientnet_b0",
                                                 "pretrained_cfg": {"tag": "ra4_e3600_r224_in1k"}}))
    weights = _tiny(hub / "model.safetensors")
    assert declared_architecture(weights) == "efficientnet_b0"
    with pytest.raises(CheckpointError, match=r"saved from efficientnet_b0 \(PyTorch symmetric padding, "
                                              r"BatchNorm eps 1e-5\), not tf_efficientnet_b0 \(TF SAME padding, "
                                              r"BatchNorm eps 1e-3\); pass --model efficientnet_b0"):
        check_architecture(weights, "tf_efficientnet_b0")
    (hub / "config.json").write_text(json.dumps({"architecture": "resnet50"}))
    with pytest.raises(CheckpointError, match="saved from resnet50, which keras-models does not have"):
        check_architecture(weights, "rexnet_100")


@pytest.mark.slow
def test_native_timm_b0_is_refused_under_the_tf_name_and_exact_under_its_own(fixtures):
    path = fixtures / "efficientnet_b0_timm.safetensors"
    with pytest.raises(CheckpointError, match="saved from efficientnet_b0 .* not tf_efficientnet_b0"):
        km.create_model("tf_efficientnet_b0", weights=str(path))
    x, logits = np.load(fixtures / "efficientnet_b0_timm.npz")["x"], np.load(fixtures / "efficientnet_b0_timm.npz")[
        "logits"]
    model = km.create_model("efficientnet_b0", weights=str(path), include_preprocessing=False,
                            classifier_activation=None)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4


@pytest.mark.slow
def test_rexnet_constructor_knows_the_published_weights_of_its_width(tmp_path, monkeypatch):
    """`km.ReXNet(width=1.3, weights="imagenet")` goes for rexnet_130's file (here: a closed port)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_MODELS_WEIGHTS_MIRROR", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and the Hub repo is not in the (empty) cache
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DownloadError, match="rexnetv1_130-590d768e.pth"):
        km.ReXNet(width=1.3, weights="imagenet")
    with pytest.raises(ValueError, match="no published ImageNet weights are known for 'rexnet_lite_130'"):
        km.ReXNet(width=1.3, lite=True, weights="imagenet")
    with pytest.raises(ValueError, match=r"'efficientnetv2_s' \(tf_efficientnetv2_s has them\)"):
        km.create_model("efficientnetv2_s", weights="imagenet")
