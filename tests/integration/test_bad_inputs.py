"""Bad input, as data: each row is a command line, what its one-line error must say, and (after `!`)
paths that must not exist afterwards. Add a case by adding a row. Every case exits 2 with exactly
one line on stderr and leaves nothing half-written. Run in-process through the real CLI entry."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from helpers import PHOTOS, run_cli
from helpers.torch_files import write_torch_zip
from PIL import Image

import keras_models as km
from keras_models.models import get_entry
from keras_models.sources import wheel_file

PHOTO = str(PHOTOS / "coffee.jpg")
CASES = [
    # predict
    (["predict", "--top", "0", PHOTO], "argument --top: must be a whole number >= 1, got '0'"),
    (["predict", "--top", "-1", PHOTO], "argument --top: must be a whole number >= 1"),
    (["predict", "--image-size", "0", PHOTO], "argument --image-size: must be a whole number >= 32"),
    (["predict", "--crop-pct", "0", PHOTO], "argument --crop-pct: must be in (0, 1]"),
    (["predict", "--crop-pct", "-1", PHOTO], "argument --crop-pct: must be in (0, 1]"),
    (["predict", "--crop-pct", "2", PHOTO], "argument --crop-pct: must be in (0, 1]"),
    (["predict", "--crop-pct", "nan", PHOTO], "argument --crop-pct: must be a finite number"),
    (["predict", "--weights", "none", "{tmp}/truncated.jpg"], "image {tmp}/truncated.jpg: truncated or damaged"),
    (["predict", "--weights", "none", "{tmp}/headless.jpg"],  # #34: libjpeg wrote "Improper call ... state 201"
     "image {tmp}/headless.jpg is truncated or damaged (it ends before its header gives the image size)"),
    (["predict", "--weights", "none", "{tmp}/bomb.png"], "is 16000 x 16000 pixels, over the limit of 89,478,485"),
    (["predict", "--weights", "{tmp}/other.weights.h5", "--model", "rexnet_100", PHOTO],
     "does not fit rexnet_100: layer 'stem_conv' needs [(3, 3, 3, 32)] but the file holds [(3, 3, 3, 42)]"),
    # convert: crafted and non-finite checkpoints
    (["convert", "{tmp}/crafted.pth", "--model", "rexnet_100", "-o", "{tmp}/c.weights.h5"],
     "tensor 'stem.conv.weight' (offset 0, size [268435456], stride [1]) reaches element", "!{tmp}/c.weights.h5"),
    (["convert", "{tmp}/nan.safetensors", "--model", "rexnet_100", "-o", "{tmp}/n.weights.h5"],
     "tensor 'stem.conv.weight' holds NaN or infinite values", "!{tmp}/n.weights.h5"),
    # train: flags and YAML
    (["train", "--steps-per-epoch", "0", "--out", "{tmp}/r"], "steps_per_epoch must be a positive integer; got 0",
     "!{tmp}/r"),
    (["train", "--steps-per-epoch", "-5", "--out", "{tmp}/r"], "steps_per_epoch must be a positive integer; got -5",
     "!{tmp}/r"),
    (["train", "--out", ""], "out must name a run directory"),
    (["train", "--config", "{tmp}/bool.yaml", "--out", "{tmp}/r"], "bool.yaml: epochs must be an int; got True",
     "!{tmp}/r"),
    (["train", "--config", "{tmp}/twice.yaml", "--out", "{tmp}/r"], "key 'epochs' is given twice", "!{tmp}/r"),
    (["train", "--config", "{tmp}/typo.yaml", "--out", "{tmp}/r"], "unknown field(s) ['epochz']", "!{tmp}/r"),
    (["train", "--config", "{tmp}/lr.yaml", "--out", "{tmp}/r"], "lr must be a float or null; got 'fast'",
     "!{tmp}/r"),
    (["train", "--data", "folder:{tmp}/classes", "--out", "{tmp}/r"],
     "class folder {tmp}/classes/empty holds no images", "!{tmp}/r"),
    (["train", "--data", "tfds:nonexistent", "--out", "{tmp}/r"], "tensorflow-datasets has no dataset 'nonexistent'",
     "!{tmp}/r"),
    (["train", "--worker-timeout", "0", "--out", "{tmp}/r"], "worker_timeout must be > 0 seconds", "!{tmp}/r"),
    (["train", "--data-service", "grpc://127.0.0.1:1", "--strategy", "multi_worker", "--out", "{tmp}/r"],
     "--data-service with --strategy multi_worker (or auto with a TF_CONFIG cluster) is not supported", "!{tmp}/r"),
    (["convert", "{tmp}/lite0.pth", "--model", "rexnet_100", "-o", "{tmp}/w.weights.h5"],  # #34: "error: 'se_bn'"
     "a lukemelas-layout checkpoint cannot hold rexnet_100: its 'se_bn' layer has no lukemelas key",
     "!{tmp}/w.weights.h5"),
    (["train", "--lr", "0.05", "--min-lr", "10", "--out", "{tmp}/r"],  # #34: raised the LR 320x past the peak
     "min_lr must be in [0, lr]: the schedule decays to it (the peak lr is 0.05); got 10.0", "!{tmp}/r"),
    (["train", "--label-smoothing", "1.5", "--out", "{tmp}/r"], "label_smoothing must be in [0, 1)", "!{tmp}/r"),
    # prepare
    (["prepare", "--data", "digits", "--out", "{tmp}/foreign"],
     "{tmp}/foreign already holds train-*/val-* files that no preparation of this tool finished"),
    (["prepare", "--data", "digits", "--out", "{tmp}/p", "--shards", "0"], "argument --shards: must be a whole number",
     "!{tmp}/p"),
    (["prepare", "--data", "folder:{tmp}/nowhere", "--out", "{tmp}/p"], "folder {tmp}/nowhere does not exist",
     "!{tmp}/p"),
    # eval, export
    (["eval", "--weights", "{tmp}/missing.weights.h5"], "weights file {tmp}/missing.weights.h5 does not exist"),
    (["eval", "--weights", "{tmp}/other.weights.h5", "--batch-size", "0"], "argument --batch-size: must be a whole"),
    (["export", "--eval-images", "0"], "argument --eval-images: must be a whole number >= 1"),
    (["export", "--eval-images", "-5"], "argument --eval-images: must be a whole number >= 1"),
    (["export", "--out", ""], "argument --out: must not be empty"),
    (["export", "--model", "rexnet_100", "--weights", "none", "--labels", "{tmp}/labels.txt", "--name", "../escaped",
      "--out", "{tmp}/repo"], "model name '../escaped' is not allowed", "!{tmp}/repo", "!{tmp}/escaped"),
    # benchmark
    (["benchmark", "--model", ""], "argument --model: expected a comma-separated list of names"),
    (["benchmark", "--threads", "-3"], "argument --threads: must be a whole number >= 0, got '-3'"),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """The files the cases point at, made for real."""
    tmp = tmp_path_factory.mktemp("bad")
    data = (PHOTOS / "coffee.jpg").read_bytes()
    (tmp / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp / "headless.jpg").write_bytes(data[:data.index(b"\xff\xc0")])  # cut before the frame header: no size
    bomb = io.BytesIO()
    Image.new("1", (16000, 16000)).save(bomb, "PNG")  # 32 MB in memory, a few KB on disk, 768 MB as RGB
    (tmp / "bomb.png").write_bytes(bomb.getvalue())
    write_torch_zip({"stem.conv.weight": np.zeros(4, np.float32)}, tmp / "crafted.pth",
                    layouts={"stem.conv.weight": (0, (2**28,), (1,))})
    from safetensors.numpy import save_file

    from keras_models.spec import rendered_spec
    from keras_models.weights import to_state_dict

    rexnet = km.create_model("rexnet_100")
    state = to_state_dict(rexnet, rendered_spec(rexnet)[0], "timm")  # a whole timm state dict, one NaN in it
    state["stem.conv.weight"][0, 0, 0, 0] = np.nan
    save_file(state, str(tmp / "nan.safetensors"))
    shutil.copy(wheel_file(get_entry("tf_efficientnet_lite0").tag("in1k")), tmp / "lite0.pth")
    (tmp / "bool.yaml").write_text("epochs: true\n")
    (tmp / "twice.yaml").write_text("epochs: 3\nepochs: 5\n")
    (tmp / "typo.yaml").write_text("epochz: 3\n")
    (tmp / "lr.yaml").write_text("lr: fast\n")
    (tmp / "labels.txt").write_text("cat\ndog\n")
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "train-a.tfrecord").write_bytes(b"")
    for name in ("a", "b"):
        (tmp / "classes" / name).mkdir(parents=True)
        for i in range(3):
            (tmp / "classes" / name / f"{i}.jpg").write_bytes(data)
    (tmp / "classes" / "empty").mkdir()

    km.create_model("rexnet_130", num_classes=10, input_shape=(32, 32, 3)).save_weights(tmp / "other.weights.h5")
    return tmp


@pytest.mark.parametrize("case", CASES, ids=lambda c: " ".join(c[0])[:60])
@pytest.mark.slow
def test_bad_input_is_one_line_and_writes_nothing(case, bad_files, capsys):
    from keras_models.cli import main

    argv, says, *absent = (_fill(part, bad_files) for part in case)
    code = main(argv) if "argument" not in says else _parse_exit(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("keras-models: error: ") and says in err[0], err
    for path in absent:
        assert not os.path.exists(path.lstrip("!")), path


def _parse_exit(main, argv) -> int:
    with pytest.raises(SystemExit) as stop:  # argparse refuses before anything runs
        main(argv)
    return stop.value.code


def _fill(part, tmp):
    return [_fill(p, tmp) for p in part] if isinstance(part, list) else part.replace("{tmp}", str(tmp))


@pytest.mark.slow
def test_training_on_jax_says_so_at_once(tmp_path):
    r = run_cli("train", "--out", str(tmp_path / "r"), env={"KERAS_BACKEND": "jax"}, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "needs the TensorFlow backend, but KERAS_BACKEND=jax" in lines[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_pixel_limit_is_configurable(bad_files, monkeypatch, capsys):
    from keras_models.cli import main

    monkeypatch.setenv("KERAS_MODELS_MAX_IMAGE_PIXELS", "1000")
    assert main(["predict", "--weights", "none", PHOTO]) == 2
    assert "coffee.jpg is 600 x 400 pixels, over the limit of 1,000" in capsys.readouterr().err
    monkeypatch.setenv("KERAS_MODELS_MAX_IMAGE_PIXELS", "lots")
    assert main(["predict", "--weights", "none", PHOTO]) == 2
    assert "KERAS_MODELS_MAX_IMAGE_PIXELS must be a whole number" in capsys.readouterr().err


def test_a_bomb_in_a_training_folder_is_skipped_and_counted(bad_files, capsys):
    from training import data as data_lib

    folder = bad_files / "classes"
    (folder / "a" / "bomb.png").write_bytes((bad_files / "bomb.png").read_bytes())
    (folder / "empty" / "0.jpg").write_bytes((PHOTOS / "chelsea.jpg").read_bytes())
    (folder / "empty" / "1.jpg").write_bytes((PHOTOS / "chelsea.jpg").read_bytes())
    try:
        source = data_lib.load(f"folder:{folder}", val_split=0.3)
        assert source.skipped == 1 and source.num_train + source.num_val == 8
        assert "bomb.png: it is 16000 x 16000 pixels, over the limit" in capsys.readouterr().err
    finally:
        (folder / "a" / "bomb.png").unlink()
        for p in (folder / "empty").iterdir():
            p.unlink()


def test_a_jpeg_cut_inside_its_header_is_refused_before_libjpeg_sees_it(bad_files, tmp_path, capfd):
    """libjpeg prints "Improper call to JPEG library in state 201" to the process's stderr when it
    meets such a file; nothing decodes it now, in predict or in the training scan."""
    from keras_models.cli import main
    from training import data as data_lib

    assert main(["predict", "--weights", "none", str(bad_files / "headless.jpg")]) == 2
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.jpg").write_bytes((PHOTOS / "coffee.jpg").read_bytes())
    (tmp_path / "a" / "headless.jpg").write_bytes((bad_files / "headless.jpg").read_bytes())
    assert data_lib.load(f"folder:{tmp_path}", val_split=0.5).skipped == 1
    err = capfd.readouterr().err
    assert "headless.jpg: it is truncated or damaged (it ends before its header" in err
    assert "Improper call" not in err


def test_a_min_lr_above_the_recipes_peak_is_refused_when_the_peak_is_filled_in():
    from training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=r"min_lr must be in \[0, lr\].*peak lr is 0.0625"):
        TrainConfig(min_lr=10.0, out="r").resolve("rexnet", {}, num_classes=10, default_size=224,
                                                    default_crop_pct=0.875)


def test_the_data_service_under_auto_with_a_tf_config_cluster_is_refused_too(monkeypatch, tmp_path, capsys):
    """#32: `auto` becomes multi_worker when TF_CONFIG names a cluster: refused before TensorFlow starts."""
    from keras_models.cli import main

    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert main(["train", "--data-service", "grpc://127.0.0.1:1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(or auto with a TF_CONFIG cluster) is not supported yet" in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_decode_predictions_refuses_a_top_that_is_not_a_count(top):
    with pytest.raises(ValueError, match="top must be a whole number >= 1"):
        km.decode_predictions(np.full((1, 1000), 1e-3), top=top)


def test_numpy_class_counts_are_whole_numbers():
    model = km.create_model("rexnet_100", num_classes=np.int64(10), input_shape=(32, 32, 3))
    assert model.output_shape == (None, 10)


@pytest.mark.slow
def test_a_whole_keras_model_as_weights_and_a_truncated_keras_file_say_what_they_are(tmp_path):
    model = km.create_model("rexnet_100", num_classes=2, input_shape=(32, 32, 3))
    model.save(tmp_path / "last.keras")
    with pytest.raises(ValueError, match="last.keras is a whole Keras model, not a weights file: load it with"):
        km.create_model("rexnet_100", weights=str(tmp_path / "last.keras"), num_classes=2)
    data = (tmp_path / "last.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.keras is not a readable .keras file: it is truncated or damaged"):
        km.load_model(tmp_path / "cut.keras")
    with pytest.raises(FileNotFoundError, match="gone.keras does not exist"):
        km.load_model(tmp_path / "gone.keras")


@pytest.fixture
def full_disk(tmp_path):
    """A real 2 MB filesystem (tmpfs): too small for any model's weights."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


FULL_DISK_COMMANDS = [  # every kind of writer: HDF5 (h5py), SavedModel and checkpoints (TF), TFLite
    ["convert", "{tmp}/lite0.pth", "--model", "tf_efficientnet_lite0", "-o", "{disk}/x.weights.h5"],
    ["save-preset", "--weights", "imagenet", "--model", "tf_efficientnet_lite0", "--out", "{disk}/preset"],
    ["export", "--weights", "{run}/best.weights.h5", "--formats", "saved_model", "--out", "{disk}/models"],
    ["export", "--weights", "{run}/best.weights.h5", "--formats", "tflite", "--out", "{disk}/models"],
    ["train", "--model", "rexnet_100", "--data", "digits", "--image-size", "32", "--epochs", "1",
     "--steps-per-epoch", "2", "--checkpoint-every", "1", "--out", "{disk}/run"],  # a TF checkpoint mid-epoch
]


@pytest.mark.parametrize("command", FULL_DISK_COMMANDS, ids=lambda c: " ".join(c[:3]))
@pytest.mark.slow
def test_a_full_disk_is_one_line_not_a_crash(full_disk, bad_files, digits_run, command, capsys):
    """#34: h5py segfaulted (exit 139) after the error, with raw tracebacks, when the disk filled
    mid-write; TensorFlow's writers gave their raw error and left `*_temp` checkpoint folders and
    empty model folders. Now: one line, exit 1, and no file or folder that is not whole."""
    from keras_models.cli import main

    assert main([c.format(disk=full_disk, tmp=bad_files, run=digits_run) for c in command]) == 1
    err = capsys.readouterr().err  # a progress bar, then one line (the bar is cleared with a carriage return)
    last = err.strip().splitlines()[-1].split("\r")[-1]
    assert err.count("keras-models: error:") == 1 and "Traceback" not in err, err
    assert last.startswith("keras-models: error: ") and ("not enough space" in last or "disk filled up" in last), err
    left = sorted(str(p.relative_to(full_disk)) for p in full_disk.rglob("*"))
    if command[0] == "train":  # a run folder stays, resumable: its settings, its lock, nothing half-saved
        left = [p for p in left if "tfevents" not in p]
        assert left == ["run", "run/.lock", "run/checkpoints", "run/config.yaml", "run/labels.txt", "run/logs"], left
    else:
        assert left == [], left


def test_eval_after_the_data_moved_says_to_pass_data(digits_run, tmp_path, capsys):
    """#34: export/eval of a run whose data folder moved gave no hint about --data."""
    from keras_models.cli import main

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(digits_run / "best.weights.h5", run)
    config = (digits_run / "config.yaml").read_text().replace("data: digits", f"data: folder:{tmp_path}/moved")
    (run / "config.yaml").write_text(config)
    assert main(["eval", "--weights", str(run / "best.weights.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the run trained on folder:{tmp_path}/moved: if the data moved, pass --data" in err[0]
