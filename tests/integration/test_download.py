"""weights="imagenet" download path against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import load_fixture, run_cli

from keras_models.download import DownloadError, fetch
from keras_models.factory import create_from_entry
from keras_models.models.rexnet import rexnet_spec
from keras_models.registry import ModelEntry, Pretrained


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (a real socket and HTTP server, bounded to this test)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_good_corrupted_and_missing(server, tmp_path, monkeypatch, fixtures):
    root, base = server
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    good = root / "weights-good.safetensors"
    good.write_bytes((fixtures / "rexnet_100_timm.safetensors").read_bytes())
    path = fetch(f"{base}/weights-good.safetensors", hash_prefix=_sha(good)[:8])
    assert path.read_bytes() == good.read_bytes()
    assert path.parent == tmp_path / "keras" / "models"

    bad = root / "weights-bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(DownloadError, match="checksum does not match"):
        fetch(f"{base}/weights-bad.safetensors", hash_prefix=_sha(good)[:8])
    assert not (tmp_path / "keras" / "models" / "weights-bad.safetensors").exists()
    assert not list((tmp_path / "keras" / "models").glob(".*"))  # no temporary file left behind

    with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/missing\.pth: HTTP 404"):
        fetch(f"{base}/missing.pth", md5="0" * 32)


def _entry(url: str, sha: str) -> ModelEntry:
    return ModelEntry(name="rexnet_100", family="rexnet", make_spec=lambda **kw: rexnet_spec(1.0, **kw),
                      tags=(Pretrained(tag="test", url=url, source="timm", hash_prefix=sha[:8]),))


@pytest.mark.slow
def test_imagenet_weights_download_convert_cache(server, tmp_path, monkeypatch, fixtures):
    root, base = server
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    ckpt = root / "rexnetv1_100-test.safetensors"
    ckpt.write_bytes((fixtures / "rexnet_100_timm.safetensors").read_bytes())
    entry = _entry(f"{base}/{ckpt.name}", _sha(ckpt))
    x, logits = load_fixture(fixtures, "rexnet_100_timm")
    model = create_from_entry(entry, weights="imagenet", include_preprocessing=False, classifier_activation=None)
    assert np.abs(model.predict(x, verbose=0) - logits).max() < 2e-4
    ckpt.unlink()  # the converted cache now serves, without the network
    again = create_from_entry(entry, weights="imagenet", include_preprocessing=False, classifier_activation=None)
    assert np.abs(again.predict(x, verbose=0) - logits).max() < 2e-4


@pytest.mark.slow
def test_offline_error_names_url_and_convert(tmp_path):
    """A published model, a mirror nobody listens on: one line naming the URL and `convert`."""
    with socket.socket() as s:  # a free port on 127.0.0.1 with nothing behind it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"KERAS_HOME": str(tmp_path), "KERAS_MODELS_WEIGHTS_MIRROR": f"http://127.0.0.1:{port}/w",
           "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    result = run_cli("predict", "--model", "rexnet_150", "examples/photos/coffee.jpg", env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"http://127.0.0.1:{port}/w/rexnetv1_150-bd1a6aa8.pth" in result.stderr
    assert "keras-models convert" in result.stderr
    assert f"hf://timm/rexnet_150.nav_in1k/config.json: cannot reach http://127.0.0.1:{port}" in result.stderr
