"""`keras-models prepare`: a folder written once as TFRecord shards reads back as the same images,
labels and counts; unreadable files are named, not written; a killed run leaves nothing a glob sees."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, photo_crops

from training import data as data_lib
from training.prepare import PrepareError, prepare


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three classes of real-photo JPEGs and PNGs, two truncated JPEGs and a text file named .jpg."""
    root = photo_crops(tmp_path_factory.mktemp("prep") / "photos", 45, ("cat", "dog", "fox"), (96, 72), png_every=5)
    data = (root / "dog" / "01.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(data[: len(data) // 3])
    (root / "dog" / "no_tables.jpg").write_bytes(data[: data.index(b"\xff\xc4")])
    (root / "fox" / "notes.jpg").write_text("not an image")
    return root


def _fingerprints(source: data_lib.DataSource, split: str) -> list[tuple[str, str]]:
    """(sha256 of the encoded bytes, class name) of every readable image of a split, sorted."""
    ds = getattr(source, split)
    if source.read is not None:
        ds = ds.map(lambda path, label: (source.read(path), label))
    rows = []
    for data, label in ds.as_numpy_iterator():
        try:
            data_lib.decode_image(data)
        except Exception:  # the folder's unreadable files: prepare leaves them out
            continue
        rows.append((hashlib.sha256(data).hexdigest(), source.class_names[label]))
    return sorted(rows)


@pytest.mark.slow
def test_shards_read_back_as_the_folder(photos, tmp_path, capsys):
    out = tmp_path / "shards"
    summary = prepare(f"folder:{photos}", str(out), shards=3, val_split=0.25)
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.txt", "prepare.json", *(f"train-{i:05d}-of-00003.tfrecord" for i in range(3)),
        *(f"val-{i:05d}-of-00003.tfrecord" for i in range(3))]
    folder = data_lib.load(f"folder:{photos}", val_split=0.25)
    shards = data_lib.load(f"tfrecord:{out}/train-*,{out}/val-*")
    assert shards.class_names == folder.class_names == ["cat", "dog", "fox"]
    for split in ("train", "val"):
        assert _fingerprints(shards, split) == _fingerprints(folder, split), split
    unreadable = summary["train"]["unreadable"] + summary["val"]["unreadable"]
    assert sorted(os.path.basename(p) for p in unreadable) == ["cut.jpg", "no_tables.jpg"]
    assert summary["skipped_at_scan"] == 1  # notes.jpg, named by the scan
    assert shards.num_train + shards.num_val == 45 == summary["train"]["written"] + summary["val"]["written"]
    assert json.loads((out / "prepare.json").read_text()) == summary

    labels = [int(lbl) for _, lbl in shards.train.as_numpy_iterator()]
    assert labels[:12] != sorted(labels[:12])  # written in a shuffled order, not class by class

    again = prepare(f"folder:{photos}", str(out), shards=3, val_split=0.25)  # the same plan: nothing to do
    assert again == summary and "already prepared" in capsys.readouterr().err
    with pytest.raises(PrepareError, match="already holds shards prepared from folder:.* with other settings"):
        prepare(f"folder:{photos}", str(out), shards=2, val_split=0.25)


def test_an_incomplete_set_of_shards_is_refused(photos, tmp_path):
    out = tmp_path / "shards"
    prepare(f"folder:{photos}", str(out), shards=3)
    (out / "train-00001-of-00003.tfrecord").unlink()
    incomplete = r"matches 2 of the 3 shards .*train-\*-of-00003: the set is incomplete"
    with pytest.raises(data_lib.DataError, match=incomplete):
        data_lib.load(f"tfrecord:{out}/train-*,{out}/val-*")


@pytest.mark.slow
def test_a_killed_preparation_leaves_nothing_a_glob_sees_and_a_rerun_starts_over(tmp_path):
    """SIGKILL while the digits are being written (encoded to PNG, 1,797 of them), then the same command."""
    out = tmp_path / "digits"
    cmd = [sys.executable, "-m", "keras_models", "prepare", "--data", "digits", "--out", str(out), "--shards", "4"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    staging = out / ".partial"
    while time.time() < deadline and proc.poll() is None:
        if any(p.stat().st_size > 0 for p in staging.glob("train-*")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the preparation ended before it could be killed"
    assert list(out.glob("train-*")) == [] and list(out.glob("val-*")) == []
    with pytest.raises(data_lib.DataError, match="no TFRecord files match"):
        data_lib.load(f"tfrecord:{out}/train-*")

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "unfinished preparation: starting it over" in rerun.stderr
    assert "train: 1438 images in 4 shard(s)" in rerun.stdout and "val: 359 images" in rerun.stdout
    shards = data_lib.load(f"tfrecord:{out}/train-*,{out}/val-*")
    assert (shards.num_train, shards.num_val) == (1438, 359) and not staging.exists()
