"""Memory is bounded by the pixel limit, not by the input: peak RSS of child processes on crafted
images (#34: a 104-byte 1 x 8000 PNG took 7.4 GB in predict; a 10000 x 10000 PNG raised the server's
RSS by 1.43 GB before it was refused, a 3.9 KB WebP of that size was served)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import PHOTOS, ROOT
from PIL import Image

PEAK = textwrap.dedent("""
    import resource, subprocess, sys
    r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
    sys.stderr.write(r.stderr)
""")
SERVE = textwrap.dedent("""
    import resource, sys
    import tensorflow as tf
    import keras_models as km
    from keras_models.export.serving import serving_module
    model = km.create_model("rexnet_100", num_classes=2, input_shape=(32, 32, 3))
    _, signatures = serving_module(model, sys.argv[1], crop_pct=0.875, interpolation="bilinear")
    serve = signatures["serving_default"]
    good = open(sys.argv[2], "rb").read()
    serve(tf.constant([good]))  # traced and run once: what follows is the bad images' cost alone
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    for path in sys.argv[3:]:
        try:
            serve(tf.constant([open(path, "rb").read()]))
            print("served", path)
        except tf.errors.InvalidArgumentError:
            print("refused", path)
    print("grew", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 - before)
""")


def _image(path, fmt: str, size: tuple[int, int], **options) -> str:
    buffer = io.BytesIO()
    Image.new("L" if fmt == "PNG" else "RGB", size).save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())
    return str(path)


def _predict_peak_mb(image: str) -> int:
    cmd = [sys.executable, "-m", "keras_models", "predict", "--model", "rexnet_100", "--weights", "none",
           "--num-classes", "10", image]
    r = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=600)
    code, peak = (int(v) for v in r.stdout.split())
    assert code == 0, r.stderr[-2000:]
    return peak


@pytest.mark.slow
def test_a_strip_costs_what_a_photo_costs_in_predict(tmp_path):
    strip = _image(tmp_path / "strip_1x8000.png", "PNG", (8000, 1))
    photo, thin = _predict_peak_mb(str(PHOTOS / "coffee.jpg")), _predict_peak_mb(strip)
    assert thin < photo + 300, f"predict peaked at {thin} MB on a 1 x 8000 strip, {photo} MB on a photo"


@pytest.mark.slow
def test_serving_refuses_oversized_png_and_webp_before_decoding(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    big_png = _image(tmp_path / "big.png", "PNG", (10000, 10000))
    big_webp = _image(tmp_path / "big.webp", "WEBP", (10000, 10000), lossless=True)
    assert os.path.getsize(big_webp) < 100_000 and os.path.getsize(big_png) < 1_000_000
    r = subprocess.run([sys.executable, "-c", SERVE, str(labels), str(PHOTOS / "coffee.jpg"), big_png, big_webp],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[-3:-1] == [f"refused {big_png}", f"refused {big_webp}"]
    grew = int(lines[-1].split()[1])
    assert grew < 200, f"the server's peak RSS grew {grew} MB on images it refused (100 M pixels: 300 MB each)"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
@pytest.mark.slow
def test_predict_applies_the_limit_to_every_format_alike(fmt, tmp_path, monkeypatch, capsys):
    from keras_models.cli import main

    image = _image(tmp_path / f"square.{fmt.lower()}", fmt, (2000, 2000))
    monkeypatch.setenv("KERAS_MODELS_MAX_IMAGE_PIXELS", "1000000")
    assert main(["predict", "--weights", "none", image]) == 2
    assert "is 2000 x 2000 pixels, over the limit of 1,000,000" in capsys.readouterr().err


def test_the_training_scan_takes_webp(tmp_path):
    from training import data as data_lib

    why, _ = data_lib._image_header(__import__("pathlib").Path(_image(tmp_path / "a.webp", "WEBP", (40, 30))))
    assert why is None
