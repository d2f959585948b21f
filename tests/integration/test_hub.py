"""hf:// models and pretrained tags through huggingface_hub, against a Hub stand-in on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import PHOTOS, load_fixture, run_cli
from helpers.hub_server import HubServer, timm_repo

import keras_models as km
from keras_models.hub import HubError
from keras_models.state_dicts import CheckpointError

OPTIONS = {"include_preprocessing": False, "classifier_activation": None}


@pytest.fixture
def hub(fixtures, tmp_path, monkeypatch):
    """Three timm repos (one of them holding a native B0 under a TF name), the library pointed at
    them the way users do it (HF_ENDPOINT, HF_HOME), release URLs refused at once (a closed port)."""
    server = HubServer({
        "timm/rexnet_100.nav_in1k": timm_repo(fixtures / "rexnet_100_timm.safetensors", "rexnet_100", "nav_in1k"),
        "timm/efficientnet_b0.ra_in1k": timm_repo(fixtures / "efficientnet_b0_timm.safetensors",
                                                  "efficientnet_b0", "ra_in1k"),
        "timm/tf_efficientnet_b0.ns_jft_in1k": timm_repo(fixtures / "efficientnet_b0_timm.safetensors",
                                                         "efficientnet_b0", "ra_in1k"),
        "timm/config_only": {"config.json": b'{"architecture": "rexnet_100", "num_classes": 1000}'},
    })
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "KERAS_HOME": str(tmp_path / "keras"),
           "KERAS_MODELS_WEIGHTS_MIRROR": "http://127.0.0.1:9"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server.env = env
    yield server
    server.close()


@pytest.mark.slow
def test_hf_models_load_like_timm_through_the_cdn_redirect_and_the_cache(hub, fixtures, tmp_path):
    for handle, stem in (("hf://timm/rexnet_100.nav_in1k", "rexnet_100_timm"),
                         ("hf://timm/efficientnet_b0.ra_in1k", "efficientnet_b0_timm")):
        x, logits = load_fixture(fixtures, stem)
        model = km.create_model(handle, **OPTIONS)
        assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4
    assert any(r.startswith("GET /cdn/") for r in hub.requests)  # the 302 to the "CDN" was followed
    downloads = sum(r.startswith("GET /cdn/") for r in hub.requests)
    km.create_model("hf://timm/rexnet_100.nav_in1k", **OPTIONS)
    assert sum(r.startswith("GET /cdn/") for r in hub.requests) == downloads  # from the cache

    five = km.create_model("hf://timm/rexnet_100.nav_in1k", num_classes=5, **OPTIONS)  # fine-tuning head
    assert five.output_shape == (None, 5)

    x, logits = load_fixture(fixtures, "rexnet_100_timm")  # a Hub model shared on as a preset
    preset = km.save_preset(km.create_model("hf://timm/rexnet_100.nav_in1k", **OPTIONS), tmp_path / "preset")
    assert np.abs(km.create_model(str(preset)).predict(x, verbose=0) - logits).max() < 2e-4


@pytest.mark.slow
def test_a_registry_tag_comes_from_the_hub_and_a_mislabelled_repo_is_refused(hub, fixtures):
    """No release URL answers (closed mirror): the tag's Hub repo serves it. A repo under a TF name
    whose config says native B0 is refused naming both, never converted with the wrong padding."""
    x, logits = load_fixture(fixtures, "efficientnet_b0_timm")
    model = km.create_model("efficientnet_b0.ra_in1k", pretrained=True, **OPTIONS)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4
    with pytest.raises(CheckpointError, match="saved from efficientnet_b0 .*not tf_efficientnet_b0"):
        km.create_model("tf_efficientnet_b0.ns_jft_in1k", pretrained=True, **OPTIONS)


@pytest.mark.slow
def test_missing_repos_revisions_files_and_corrupted_downloads_are_one_line(hub):
    cases = [("hf://timm/nope", "no such repository"),
             ("hf://timm/rexnet_100.nav_in1k@v9", "no revision 'v9'"),
             ("hf://timm/config_only", "has none of model.safetensors, pytorch_model.bin"),
             ("hf://rexnet_100", "not a Hub model: write hf://org/name")]
    for handle, message in cases:
        with pytest.raises(HubError, match=message):
            km.create_model(handle)
    hub.corrupt.add("model.safetensors")
    with pytest.raises(HubError, match="does not match its ETag after a fresh download"):
        km.create_model("hf://timm/efficientnet_b0.ra_in1k")
    hub.corrupt.clear()
    km.create_model("hf://timm/efficientnet_b0.ra_in1k")  # the damaged blob was not kept


@pytest.mark.slow
def test_a_tampered_cache_blob_is_downloaded_again(hub, fixtures, tmp_path):
    x, logits = load_fixture(fixtures, "rexnet_100_timm")
    km.create_model("hf://timm/rexnet_100.nav_in1k")
    (blob,) = [p for p in (tmp_path / "hf" / "hub").rglob("blobs/*") if p.stat().st_size > 10_000]
    data = bytearray(blob.read_bytes())
    data[-4:] = b"\0\0\0\0"
    blob.write_bytes(bytes(data))
    before = sum(r.startswith("GET /cdn/") for r in hub.requests)
    model = km.create_model("hf://timm/rexnet_100.nav_in1k", **OPTIONS)
    assert sum(r.startswith("GET /cdn/") for r in hub.requests) == before + 1
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4


@pytest.mark.slow
def test_predict_from_the_hub_then_offline_from_the_cache(hub, tmp_path):
    """The user path: `keras-models predict --model hf://...`, then HF_HUB_OFFLINE=1 on the same
    HF_HOME (the cache answers), then offline with an empty cache (one line, exit 2)."""
    photo = str(PHOTOS / "grace_hopper.jpg")
    online = run_cli("predict", "--model", "hf://timm/rexnet_100.nav_in1k", photo, env=hub.env)
    assert online.returncode == 0, online.stderr
    served = len(hub.requests)
    offline = run_cli("predict", "--model", "hf://timm/rexnet_100.nav_in1k", photo,
                      env={**hub.env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == online.stdout and len(hub.requests) == served  # not one request
    empty = run_cli("predict", "--model", "hf://timm/rexnet_100.nav_in1k", photo,
                    env={**hub.env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty")})
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [
        "keras-models: error: hf://timm/rexnet_100.nav_in1k/config.json: HF_HUB_OFFLINE is set and it is not "
        f"in the cache (cache: {tmp_path / 'empty' / 'hub'})"]
