"""224-px training from a JPEG folder end to end, with unreadable files: counted, never shifting resume."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import PHOTOS, ROOT, run_cli
from helpers.runs import kill_at_mid_epoch_checkpoint, read_metrics
from PIL import Image

from keras_models.files import LIBJPEG_NOISE

TRAIN = ["--model", "rexnet_100", "--image-size", "224", "--batch-size", "8", "--steps-per-epoch", "4",
         "--epochs", "2", "--checkpoint-every", "2", "--lr", "0.01"]
COUNTS = ("step", "train_bad_files", "val_bad_files", "val_images", "images_seen", "bad_files_seen")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Two classes of real-photo JPEGs (random crops of the bundled photos, 320x240, quality 90) and
    four truncated JPEGs per class: valid headers, so only decoding finds them out. One is cut before
    its Huffman tables, which makes libjpeg itself print "Input file read error" as it fails."""
    root = tmp_path_factory.mktemp("photos") / "data"
    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    for i in range(48):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        folder = root / ("cat" if i % 2 else "other")
        folder.mkdir(parents=True, exist_ok=True)
        photo.crop((x, y, x + cw, y + ch)).resize((320, 240)).save(folder / f"{i:03d}.jpg", quality=90)
    for folder in root.iterdir():
        for j, good in enumerate(sorted(folder.glob("*.jpg"))[:4]):
            data = good.read_bytes()
            cut = data.index(b"\xff\xc4") if j == 0 else len(data) // 3  # broken0: before its Huffman tables
            (folder / f"broken{j}.jpg").write_bytes(data[:cut])
    return root


def _train_cmd(data, out):
    return [sys.executable, "-m", "keras_models", "train", *TRAIN, "--data", f"folder:{data}", "--out", str(out)]


@pytest.mark.slow
def test_jpeg_folder_at_224_with_corrupt_files_resumes_exactly(photo_folder, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    whole = subprocess.run(_train_cmd(photo_folder, tmp_path / "whole"), cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr
    rows = read_metrics(tmp_path / "whole")
    assert sum(int(float(r["train_bad_files"])) for r in rows) > 0  # the broken files were met ...
    assert int(float(rows[-1]["val_bad_files"])) > 0
    assert "unreadable images met in training and" in whole.stdout  # ... and the summary says so
    leaked = [line for line in whole.stderr.splitlines() if line.encode().startswith(LIBJPEG_NOISE)]
    assert not leaked, leaked  # #34: libjpeg's own lines about that file reached stderr
    images, bad = int(float(rows[-1]["images_seen"])), int(float(rows[-1]["bad_files_seen"]))
    assert images + bad == 2 * 4 * 8  # every element of every step is an image trained on or a counted file

    out = tmp_path / "killed"
    kill_at_mid_epoch_checkpoint(_train_cmd(photo_folder, out), out, 4, ROOT)  # SIGKILL inside epoch 1
    again = subprocess.run(_train_cmd(photo_folder, out), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0, again.stderr
    resumed = read_metrics(out)
    for key in COUNTS:  # the same steps, images and unreadable files as the run nobody stopped
        assert [r[key] for r in resumed] == [r[key] for r in rows], key

    scored = run_cli("eval", "--weights", str(out / "best.weights.h5"))  # 224 px, from config.yaml
    assert scored.returncode == 0, scored.stderr
    assert f"({rows[-1]['val_images'].split('.')[0]} val images, {rows[-1]['val_bad_files'].split('.')[0]} " \
           "unreadable skipped, 224px" in scored.stdout
