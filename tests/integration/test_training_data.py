"""Data sources and pipelines on real images: digits, image folders with bad files, TFRecords."""

from __future__ import annotations

import contextlib
import logging
import re

import numpy as np
import pytest
import tensorflow as tf
from helpers import PHOTOS
from PIL import Image

from training import data as data_lib
from training.data import BAD, GOOD


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """Real digits written as PNG/JPEG files, class per folder, plus files that are not images."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("folder")
    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images[:200], d.target[:200])):
        folder = root / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        pil = Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((24, 24))
        pil.save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "digit_3" / "notes.jpg").write_text("not an image")  # bad header: skipped up front
    truncated = root / "digit_5" / "truncated.png"
    png = next((root / "digit_5").glob("*.png")).read_bytes()
    truncated.write_bytes(png[: len(png) // 2])  # valid header, broken body: dropped at decode
    return root


def test_digits_is_real_stratified_and_offline():
    src = data_lib.load("digits", val_split=0.2, seed=0)
    assert (src.num_train, src.num_val, src.num_classes) == (1438, 359, 10)
    labels = np.concatenate([y for _, y in src.val.batch(1000).as_numpy_iterator()])
    assert np.bincount(labels).min() >= 35  # every class held out in proportion
    assert data_lib.load("digits", seed=0).num_val == 359
    a = next(iter(data_lib.load("digits", seed=1).val.batch(5)))[1].numpy()
    b = next(iter(data_lib.load("digits", seed=2).val.batch(5)))[1].numpy()
    assert not np.array_equal(a, b)  # the split follows the seed


@pytest.mark.slow
def test_folder_skips_bad_files_and_keeps_going(digits_folder, capsys):
    src = data_lib.load(f"folder:{digits_folder}", val_split=0.25, seed=0)
    err = capsys.readouterr().err
    assert "skipping" in err and "notes.jpg" in err and src.skipped == 1
    assert src.num_classes == 10 and src.class_names[0] == "digit_0"
    assert src.num_train + src.num_val == 201  # 200 real + the truncated one (caught at decode time)
    pipe = data_lib.Pipeline(image_size=32, crop_pct=1.0, hflip=False)
    # Two passes over everything: the truncated file stays in the stream as a blank marked BAD
    # (counted, weight 0), so the element count per step never shifts and the epoch never crashes.
    batches = list(pipe.train_dataset(src, 8).take(2 * src.num_train // 8))
    x, y, status = batches[0]
    assert x.shape == (8, 32, 32, 3) and y.shape == (8, 10) and 0 <= float(tf.reduce_min(x))
    train_bad = sum(int((s.numpy() == BAD).sum()) for *_, s in batches)
    val = [s.numpy() for *_, s in pipe.eval_dataset(src, 32)]
    val_bad, val_good = (sum(int((s == k).sum()) for s in val) for k in (BAD, GOOD))
    assert (train_bad, val_bad) in ((2, 0), (0, 1))  # the one truncated file, wherever the split put it
    assert val_good + val_bad == src.num_val


@pytest.mark.parametrize("held_out", ["val", "validation", "valid", "test"])
def test_folder_with_train_and_held_out_subfolders(tmp_path, digits_folder, held_out):
    """#34: train/ + test/ (or valid/) used to train a two-class "test"/"train" classifier."""
    for split in ("train", held_out):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
    files = sorted(digits_folder.glob("digit_*/*.png"))[:12]
    for i, f in enumerate(files):
        split = held_out if i % 3 == 0 else "train"
        (tmp_path / split / ("a" if i % 2 else "b") / f.name).write_bytes(f.read_bytes())
    src = data_lib.load(f"folder:{tmp_path}")
    assert (src.num_train, src.num_val, src.class_names) == (8, 4, ["a", "b"])


def test_a_half_split_layout_is_refused_not_taken_as_classes(tmp_path, digits_folder):
    for split in ("train", "holdout"):
        (tmp_path / split / "a").mkdir(parents=True)
        for f in sorted(digits_folder.glob("digit_*/*.png"))[:3]:
            (tmp_path / split / "a" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(data_lib.DataError, match=r"has split folder\(s\) train but not both train/ and one of "
                                                 r"val, validation, valid, test/"):
        data_lib.load(f"folder:{tmp_path}")


@pytest.mark.parametrize("encode", ["jpeg", "png"])
@pytest.mark.slow
def test_tfrecord_images_over_the_pixel_limit_are_counted_bad_not_decoded(tmp_path, monkeypatch, encode):
    """A TFRecord is not scanned: its JPEG windows and other images are refused in-graph from the header."""
    path = tmp_path / "train-00000-of-00001"
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(8):
            side = 64 if i % 2 else 16  # 64 x 64 = 4096 pixels: over the limit below
            image = np.full((side, side, 3), 40 * (i % 5), np.uint8)
            encoded = (tf.io.encode_jpeg if encode == "jpeg" else tf.io.encode_png)(image).numpy()
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
            })).SerializeToString())
    monkeypatch.setenv("KERAS_MODELS_MAX_IMAGE_PIXELS", "1000")
    src = data_lib.load(f"tfrecord:{path}", val_split=0.25)
    _, y, status = next(iter(data_lib.Pipeline(32, 1.0).train_dataset(src, 6)))
    labels, statuses = y.numpy().argmax(-1), status.numpy()
    assert set(labels[statuses == GOOD]) == {0} and set(labels[statuses == BAD]) == {1}  # the 64-px ones: bad


def _records(path, images, labels) -> None:
    """A TF Model Garden TFRecord: PNG-encoded `images` with integer `labels`."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for img, label in zip(images, labels):
            encoded = tf.io.encode_png(np.repeat((img * 255 / 16).astype(np.uint8)[..., None], 3, -1)).numpy()
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            })).SerializeToString())


@pytest.mark.parametrize("labels, said", [([0, 1, -1, 0] * 3, "has label -1: labels are class indices"),
                                          ([3] * 12, "hold one class (3): a classifier needs at least two")])
def test_tfrecord_labels_are_checked_against_the_classes(tmp_path, labels, said):
    """#34: label -1 trained; a one-class TFRecord trained to "100%"."""
    _records(tmp_path / "train.tfrecord", np.zeros((len(labels), 8, 8)), labels)
    with pytest.raises(data_lib.DataError, match=re.escape(said)):
        data_lib.load(f"tfrecord:{tmp_path}/train.tfrecord")


@pytest.mark.parametrize("share, held_out", [(0.9, 54), (0.6, 36), (0.2, 12), (0.25, 15), (1 / 3, 20)])
def test_tfrecord_val_split_is_the_share_asked_for(tmp_path, share, held_out):
    """#34: --val-split was rounded to 1/k of the records (0.9 and 0.6 both gave 50%)."""
    _records(tmp_path / "train.tfrecord", np.zeros((60, 8, 8)), np.arange(60) % 3)
    with _tf_warnings() as warned:
        src = data_lib.load(f"tfrecord:{tmp_path}/train.tfrecord", val_split=share)
        assert (src.num_val, src.num_train) == (held_out, 60 - held_out)
        assert (sum(1 for _ in src.val), sum(1 for _ in src.train)) == (held_out, 60 - held_out)
    assert not warned, warned  # #34: "AutoGraph could not transform <lambda>" for each split's filter


@contextlib.contextmanager
def _tf_warnings():
    """The messages TensorFlow's logger gives meanwhile (AutoGraph warns through it)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        yield messages
    finally:
        tf.get_logger().removeHandler(handler)


@pytest.mark.slow
def test_tfrecord_model_garden_layout(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    _records(tmp_path / "train-00000-of-00001", d.images[:60], d.target[:60])
    (tmp_path / "labels.txt").write_text("\n".join(f"d{i}" for i in range(10)))
    src = data_lib.load(f"tfrecord:{tmp_path}/train-*", val_split=0.2)
    assert (src.num_train, src.num_val, src.class_names[3]) == (48, 12, "d3")
    x, y, _ = next(iter(data_lib.Pipeline(image_size=32, crop_pct=1.0).train_dataset(src, 8)))
    assert x.shape == (8, 32, 32, 3)
    val = data_lib.Pipeline(32, 1.0).eval_dataset(src, 64)
    val_labels = np.concatenate([lbl.numpy()[s.numpy() == GOOD] for _, lbl, s in val])
    np.testing.assert_array_equal(val_labels, d.target[:60][::5])
    with pytest.raises(data_lib.DataError, match="no TFRecord files match"):
        data_lib.load(f"tfrecord:{tmp_path}/nothing-*")


def test_resume_skip_gives_the_same_stream():
    """Data position: skipping k elements continues exactly where an uninterrupted run was."""
    src = data_lib.load("digits")
    pipe = data_lib.Pipeline(image_size=32, crop_pct=1.0, hflip=False, seed=3)
    full = [x.numpy() for x, *_ in pipe.train_dataset(src, 8).take(5)]
    resumed = [x.numpy() for x, *_ in pipe.train_dataset(src, 8, skip_elements=3 * 8).take(2)]
    np.testing.assert_array_equal(full[3], resumed[0])
    np.testing.assert_array_equal(full[4], resumed[1])


def test_mixup_cutmix_soft_labels():
    images = tf.random.uniform([8, 32, 32, 3], 0, 255)
    labels = tf.one_hot(tf.range(8) % 4, 4)
    status = tf.constant([GOOD] * 7 + [BAD], tf.int8)
    for mixup, cutmix in ((0.8, 0.0), (0.0, 1.0)):
        x, y, mixed = data_lib.mix_batch(images, labels, status, mixup, cutmix, tf.constant([1, 2], tf.int64))
        assert mixed.numpy().tolist() == [BAD] + [GOOD] * 6 + [BAD]  # mixed with the blank: left out too
        assert x.shape == images.shape
        np.testing.assert_allclose(tf.reduce_sum(y, -1), 1.0, rtol=1e-6)
        assert float(tf.reduce_max(y)) < 1.0  # every row mixed with a row of another class
        assert float(tf.reduce_max(tf.abs(x - images))) > 1.0


@pytest.mark.slow
def test_tfds_prepared_dataset_is_found_from_its_files(tmp_path):
    import subprocess
    import sys

    from helpers import HELPERS

    built = subprocess.run([sys.executable, str(HELPERS / "tfds_digits_builder.py"), str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    src = data_lib.load("tfds:digits_local", data_dir=str(tmp_path))  # no builder code in this process
    assert (src.num_train, src.num_val, src.num_classes) == (150, 50, 10)  # "test" serves as validation
    pipe = data_lib.Pipeline(image_size=32, crop_pct=1.0)
    x, y, _ = next(iter(pipe.train_dataset(src, 8)))
    assert x.shape == (8, 32, 32, 3) and y.shape == (8, 10)  # grayscale became RGB
    labels = np.concatenate([lbl.numpy()[s.numpy() == GOOD] for _, lbl, s in pipe.eval_dataset(src, 16)])
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(np.sort(labels), np.sort(load_digits().target[150:200]))
    with pytest.raises(data_lib.DataError, match="tensorflow-datasets has no dataset 'nope'"):
        data_lib.load("tfds:nope", data_dir=str(tmp_path))


@pytest.mark.slow
def test_randaugment_in_the_pipeline():
    src = data_lib.load("digits")
    plain = data_lib.Pipeline(image_size=32, crop_pct=1.0, hflip=False, seed=5)
    strong = data_lib.Pipeline(image_size=32, crop_pct=1.0, hflip=False, seed=5, randaugment=9)
    x0, y0, _ = next(iter(plain.train_dataset(src, 16)))
    x1, y1, _ = next(iter(strong.train_dataset(src, 16)))
    np.testing.assert_array_equal(y0, y1)
    assert x0.dtype == x1.dtype == tf.uint8  # a quarter of float32's bytes to the device
    assert x1.shape == x0.shape
    assert float(tf.reduce_mean(tf.abs(tf.cast(x1, tf.float32) - tf.cast(x0, tf.float32)))) > 1.0


def test_folder_without_images_is_one_clear_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "readme.txt").write_text("no images here")
    with pytest.raises(data_lib.DataError, match="class folder .*a holds no images"):
        data_lib.load(f"folder:{tmp_path}")
    empty = tmp_path / "empty.tfrecord"
    tf.io.TFRecordWriter(str(empty)).close()
    with pytest.raises(data_lib.DataError, match="hold no records"):
        data_lib.load(f"tfrecord:{empty}")


def test_tfds_can_prepare_its_packaged_datasets(tmp_path):
    """`train --data tfds:mnist` failed with "No module named 'importlib_resources'" before any download:
    tensorflow-datasets imports it to find a packaged dataset's checksums and does not declare it."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    checksums = builder._checksums_path  # what download_and_prepare reads first
    assert checksums is not None and "mnist" in str(checksums) and checksums.exists()


@pytest.mark.slow
def test_per_image_randaugment_on_a_jpeg_folder_is_per_image_and_resumable(tmp_path):
    """One photo copied 16 times: without RandAugment every crop is the whole photo (area 1), flipped or
    not per image; with it each image gets its own ops; skipping to an element index gives its same
    pixels (resume)."""
    data = (PHOTOS / "grace_hopper.jpg").read_bytes()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(8):
            (tmp_path / name / f"{i}.jpg").write_bytes(data)
    src = data_lib.load(f"folder:{tmp_path}", val_split=0.25)
    assert src.encoded  # JPEG bytes: the fast path decodes only the crop window
    options = {"image_size": 64, "crop_pct": 1.0, "crop_scale": (1.0, 1.0), "hflip": False, "seed": 7}
    plain = next(iter(data_lib.Pipeline(**options).train_dataset(src, 8)))[0].numpy()
    assert np.abs(plain - plain[:1]).max() < 1e-3  # identical inputs, identical crops
    flips = next(iter(data_lib.Pipeline(**{**options, "hflip": True}).train_dataset(src, 8)))[0].numpy()
    mirrored = [np.array_equal(x, plain[0, :, ::-1]) for x in flips]
    assert 0 < sum(mirrored) < 8 and all(m or np.array_equal(x, plain[0]) for m, x in zip(mirrored, flips))
    strong = data_lib.Pipeline(**options, randaugment=9, randaugment_mstd=0.5)
    batch = next(iter(strong.train_dataset(src, 8)))[0].numpy()
    assert len({b.tobytes() for b in batch}) >= 6  # ops drawn per image, not once per batch
    resumed = next(iter(strong.train_dataset(src, 4, skip_elements=4)))[0].numpy()
    np.testing.assert_array_equal(resumed, batch[4:])


@pytest.mark.slow
def test_a_folder_of_small_jpegs_decodes_without_choosing_a_format_or_dct_scaling(tmp_path):
    """The scan keeps the largest short side of the training photos (coffee's 400 px here), so at
    96 px only 1/1 and 1/2 are reachable and nothing else is tried, and that they are all JPEGs;
    the batches equal the ones testing the format and choosing among all four scalings per image
    (`short_side=None`, `jpeg_only=False`: what a TFRecord source does). A PNG among them turns
    `jpeg_only` off."""
    import dataclasses

    for name in ("cat", "cup"):
        (tmp_path / name).mkdir()
        for i in range(4):
            photo = "chelsea.jpg" if name == "cat" else "coffee.jpg"
            (tmp_path / name / f"{i}.jpg").write_bytes((PHOTOS / photo).read_bytes())
    src = data_lib.load(f"folder:{tmp_path}", val_split=0.25)
    assert src.short_side == 400 and src.jpeg_only  # coffee is 600 x 400, chelsea 451 x 300
    assert data_lib.jpeg_scales(src.short_side, 96) == (1, 2)  # 2 needs a window of 2 x 2 x 96 = 384
    assert data_lib.jpeg_scales(src.short_side, 224) == (1,)
    assert data_lib.jpeg_scales(None, 224) == data_lib.JPEG_SCALES
    pipe = data_lib.Pipeline(image_size=96, crop_pct=1.0, crop_scale=(0.5, 1.0), seed=3)
    known = [x.numpy() for x, *_ in pipe.train_dataset(src, 6).take(3)]
    unknown = dataclasses.replace(src, short_side=None, jpeg_only=False)
    np.testing.assert_array_equal(known, [x.numpy() for x, *_ in pipe.train_dataset(unknown, 6).take(3)])
    small = data_lib.Pipeline(image_size=224, crop_pct=1.0, crop_scale=(0.5, 1.0), seed=3)
    np.testing.assert_array_equal([x.numpy() for x, *_ in small.train_dataset(src, 6).take(2)],
                                  [x.numpy() for x, *_ in small.train_dataset(unknown, 6).take(2)])
    Image.open(PHOTOS / "chelsea.jpg").save(tmp_path / "cat" / "png.png")
    assert not data_lib.load(f"folder:{tmp_path}", val_split=0.25).jpeg_only


def _class_folder(folder, sources, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in sources[:n]:
        (folder / f.name).write_bytes(f.read_bytes())


def test_every_file_left_out_is_named_and_counted(tmp_path, digits_folder, capsys):
    """#34: a val/ class missing from train/, a symlinked subfolder and a run folder inside the data
    were dropped without a word (the run's curves.png became a class on the next scan)."""
    pngs = sorted(digits_folder.glob("digit_*/*.png"))
    root = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2)):
        _class_folder(root / split / "a", pngs, n)
        _class_folder(root / split / "b", pngs[10:], n)
    _class_folder(root / "val" / "zebra", pngs[20:], 3)  # a class train/ does not have
    _class_folder(tmp_path / "elsewhere", pngs[30:], 2)
    (root / "train" / "a" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    run = root / "train" / "my_run"  # a run written into the data folder
    _class_folder(run, pngs[40:], 1)
    for marker in ("config.yaml", "metrics.csv"):
        (run / marker).write_text("x\n")
    src = data_lib.load(f"folder:{root}")
    err = capsys.readouterr().err
    assert (src.class_names, src.num_train, src.num_val) == (["a", "b"], 8, 4)
    assert f"skipping {root}/val/zebra/ (3 files): a class that {root}/train does not have" in err
    assert f"skipping {root}/train/a/more/ (2 files): a link to a folder is not followed" in err
    assert f"skipping {run}/ (3 files): a training run's folder, not a class" in err
    assert src.skipped == 8 and f"8 file(s) in {root} were left out (each named above)" in err


@pytest.mark.slow
def test_a_training_split_of_only_unreadable_images_stops_in_one_line(tmp_path, capsys):
    """#34: an all-undecodable training split exited 0 after "0 images"."""
    from keras_models.cli import main

    with tf.io.TFRecordWriter(str(tmp_path / "junk.tfrecord")) as w:
        for i in range(12):
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff\xd8\xff damaged"])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
            })).SerializeToString())
    code = main(["train", "--model", "rexnet_100", "--data", f"tfrecord:{tmp_path}/junk.tfrecord", "--image-size",
                 "32", "--batch-size", "4", "--steps-per-epoch", "2", "--epochs", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "not one training image of epoch 1 could be decoded" in err[-1], err[-3:]
