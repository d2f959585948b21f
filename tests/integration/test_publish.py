"""Publishing: `km.push_to_hub` and `keras-models push` upload to a Hub stand-in on 127.0.0.1 through
huggingface_hub's upload API; what they publish loads back here (and in timm) with the same logits."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from helpers import HELPERS, randomize, run_cli
from helpers.hub_server import HubServer
from test_timm_format import TIMM_PYTHON, calibrate, needs_timm

import keras_models as km
from keras_models.hub import HubError

SIZE = 64
TOKEN = "hf_writer"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    server = HubServer({})
    server.tokens[TOKEN] = {"me"}
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # read at import: the LFS path
    server.env = env
    yield server
    server.close()


@pytest.fixture(scope="module")
def tuned():
    """A 'fine-tuned' model: random weights, BatchNorm statistics from data, a 3-class head."""
    model = km.create_model("tf_efficientnet_b0", num_classes=3, input_shape=(SIZE, SIZE, 3),
                            classifier_activation=None)
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    randomize(model)
    calibrate(model, x)
    return model, x, np.asarray(model.predict(x, verbose=0))


@pytest.mark.parametrize("fmt", ["timm", "preset"])
@pytest.mark.slow
def test_push_then_load_from_the_hub_gives_the_same_logits(hub, tuned, fmt):
    model, x, logits = tuned
    url = km.push_to_hub(model, f"hf://me/flowers-{fmt}", format=fmt, labels=["daisy", "rose", "tulip"])
    assert url.startswith(hub.url) and hub.commits == [(f"me/flowers-{fmt}", f"tf_efficientnet_b0 ({fmt}), "
                                                                             "published with keras-models")]
    files = hub.repos[f"me/flowers-{fmt}"]
    assert "README.md" in files and ("model.safetensors" in files if fmt == "timm" else "model.weights.h5" in files)
    card = files["README.md"].decode()
    assert "library_name: " in card and "daisy, rose, tulip" in card and "sha256" in card
    again = km.create_model(f"hf://me/flowers-{fmt}", classifier_activation=None)
    assert np.abs(np.asarray(again.predict(x, verbose=0)) - logits).max() < 1e-5


def test_a_refused_token_or_namespace_is_one_line_and_publishes_nothing(hub, tuned, monkeypatch):
    model, _, _ = tuned
    monkeypatch.setenv("HF_TOKEN", "hf_stolen")
    with pytest.raises(HubError, match=r"hf://me/x: the Hub refused the token .*nothing was published") as e:
        km.push_to_hub(model, "hf://me/x")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(HubError, match=r"hf://someone-else/x: this token may not write there"):
        km.push_to_hub(model, "hf://someone-else/x")
    assert hub.repos == {} and hub.commits == []


def test_an_upload_that_fails_mid_way_leaves_no_release(hub, tuned, monkeypatch):
    """The weights' LFS upload is refused: the commit never happens, so no file is announced."""
    model, _, _ = tuned
    original = hub.httpd.RequestHandlerClass.do_PUT

    def refuse(handler):
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        handler._json(422, {"error": "the object failed its checksum"})

    hub.httpd.RequestHandlerClass.do_PUT = refuse
    try:
        with pytest.raises(HubError, match="nothing was published"):
            km.push_to_hub(model, "hf://me/half")
    finally:
        hub.httpd.RequestHandlerClass.do_PUT = original
    assert hub.repos.get("me/half") == {} and hub.commits == []  # the repo exists, empty: no release


@pytest.mark.slow
def test_push_cli_from_a_training_run(hub, digits_run, tmp_path):
    r = run_cli("push", str(digits_run), "hf://me/digits", env=hub.env)
    assert r.returncode == 0, r.stderr
    files = hub.repos["me/digits"]
    card, config = files["README.md"].decode(), json.loads(files["config.json"])
    assert config["architecture"] == "rexnet_100" and config["label_names"] == [str(i) for i in range(10)]
    assert "| data | digits |" in card and "val top-1" in card and "None: trained from scratch." in card
    r = run_cli("push", str(digits_run), "hf://me/digits", env={**hub.env, "HF_TOKEN": "nope"})
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "refused the token" in r.stderr


@needs_timm
def test_timm_loads_the_pushed_repo(hub, tuned, tmp_path):
    model, x, logits = tuned
    km.push_to_hub(model, "hf://me/flowers")
    folder = tmp_path / "repo"
    folder.mkdir()
    for name, data in hub.repos["me/flowers"].items():
        (folder / name).write_bytes(data)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([TIMM_PYTHON, str(HELPERS / "timm_load.py"), str(folder), str(tmp_path / "x.npy"),
                        str(tmp_path / "t.npy"), "me/flowers"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **hub.env, "HF_HOME": str(tmp_path / "timm-hf")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.abs(np.load(tmp_path / "t.npy") - logits).max() < 2e-4
