"""Data sources and tf.data pipelines.

A source yields `(raw, label)` pairs, where `raw` is a decoded uint8 image or whatever its
`decode` turns into one (a file path, encoded bytes). Pipelines shard, shuffle and skip on the
cheap `raw` elements and decode and augment after, so resuming mid-run never decodes the
images it skips. Images stay RGB in [0, 255]: the models normalise in-graph.
"""

from __future__ import annotations

import fractions
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_models.preprocessing import (
    FORMATS,
    IMAGE_FORMATS,
    EvalTransform,
    ImageError,
    check_pixels,
    decode_image,
    header_size,
    is_image_file,
    pixel_limit_check,
)
from training.augment import rand_augment

CACHE_LIMIT = 50_000  # sources with at most this many training files keep their bytes in memory


class DataError(ValueError):
    """A dataset that cannot be read, with what to do about it."""


@dataclass
class DataSource:
    name: str
    class_names: list[str]
    train: tf.data.Dataset  # (raw, label int32), unshuffled
    val: tf.data.Dataset
    num_train: int
    num_val: int
    decode: Callable[[tf.Tensor], tf.Tensor] = lambda x: x  # (read) raw -> uint8 HxWx3
    read: Callable[[tf.Tensor], tf.Tensor] | None = None  # raw -> bytes, done before caching
    defaults: dict = field(default_factory=dict)  # image_size, crop_pct, crop_scale, hflip
    skipped: int = 0  # unreadable files left out
    cache: bool = True
    short_side: int | None = None  # the largest short side among the training images, if their headers tell
    jpeg_only: bool = False  # every training file is a JPEG (by its header): no format test per image
    listing: tuple[np.ndarray, np.ndarray] | None = None  # (raws, labels) of train: random access (the data service)
    shards: list[str] | None = None  # TFRecord files of train, when val is separate (the data service)

    @property
    def encoded(self) -> bool:
        """Whether `raw` (after `read`) is encoded image bytes that `decode_image` decodes (folders,
        TFRecords): those take the JPEG fast path in training."""
        return self.decode is decode_image

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load(spec: str, *, val_split: float = 0.2, seed: int = 0, data_dir: str | None = None,
         manual_dir: str | None = None) -> DataSource:
    """`digits`, `folder:PATH`, `tfds:NAME[/CONFIG]` or `tfrecord:TRAIN_GLOB[,VAL_GLOB]`."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return _digits(val_split, seed)
    if kind == "folder" and arg:
        return _folder(Path(arg).expanduser(), val_split, seed)
    if kind == "tfds" and arg:
        return _tfds(arg, data_dir, val_split, manual_dir)
    if kind == "tfrecord" and arg:
        return _tfrecord(arg, val_split)
    raise DataError(f"unknown data {spec!r}: use digits, folder:PATH, tfds:NAME[/CONFIG] or tfrecord:GLOB")


def stratified_split(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded hold-out with the same class balance in both parts: (train_idx, val_idx)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(len(idx) * val_split)) if len(idx) > 1 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# --- sources -----------------------------------------------------------------------------
def _digits(val_split: float, seed: int) -> DataSource:
    """scikit-learn's bundled digits: 1,797 real 8x8 handwritten digits, no network needed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.repeat((d.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None], 3, axis=-1)
    labels = d.target.astype(np.int32)
    tr, va = stratified_split(labels, val_split, seed)
    return DataSource(
        name="digits",
        class_names=[str(i) for i in range(10)],
        train=tf.data.Dataset.from_tensor_slices((images[tr], labels[tr])),
        val=tf.data.Dataset.from_tensor_slices((images[va], labels[va])),
        num_train=len(tr), num_val=len(va), listing=(images[tr], labels[tr]),
        # Tiny, centred, orientation-sensitive: whole-image eval, gentle crops, no flips; 1.4k
        # images overfit with the ImageNet decay of 1e-5 (val top-1 95.0% vs 97.5% with 5e-4).
        defaults={"image_size": 32, "crop_pct": 1.0, "crop_scale": (0.6, 1.0), "hflip": False,
                  "weight_decay": 5e-4},
    )


HEADER_BYTES = 1 << 16  # enough for a JPEG's size marker behind its EXIF block


def _image_header(path: Path) -> tuple[str | None, bytes]:
    """(why the file is no usable training image (not an image, or over the pixel limit) or None,
    the first HEADER_BYTES of it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        return f"unreadable ({e.strerror})", b""
    if not is_image_file(path, head):
        return f"not a {IMAGE_FORMATS} image", head
    try:
        check_pixels(head, "it", complete=len(head) < HEADER_BYTES)
    except ImageError as e:
        return str(e), head
    return None, head


@dataclass
class _Listing:
    """A class-per-subfolder scan: usable files with their labels, and what was left out."""

    class_names: list[str]
    files: list[str]
    labels: list[int]
    skipped: int
    short_side: int | None  # the largest short side; None if some header did not tell
    jpeg_only: bool


RUN_MARKERS = ("config.yaml", "metrics.csv")  # what every training run folder holds: never a class


def _files_under(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))


def _skip_folder(folder: Path, why: str) -> int:
    """Warn that a folder's files are left out, naming it; returns how many files that is."""
    count = _files_under(folder)
    print(f"warning: skipping {folder}/ ({count} file{'s' * (count != 1)}): {why}", file=sys.stderr)
    return count


def _scan_classes(root: Path, class_names: list[str] | None = None) -> _Listing:
    """Lists `root/<class>/**` images. Warns once per bad file, and names every folder left out (a
    training run's folder, a link to a folder), counting its files as skipped."""
    skipped = 0
    if class_names is None:
        class_names = []
        for p in sorted(root.iterdir()):
            if not p.is_dir() or p.name.startswith("."):
                continue
            if all((p / marker).is_file() for marker in RUN_MARKERS):
                skipped += _skip_folder(p, "a training run's folder, not a class (keep --out outside the data)")
            else:
                class_names.append(p.name)
    files, labels, sizes, jpeg_only = [], [], [], True
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        before = len(files)
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() and path.is_dir():
                skipped += _skip_folder(path, "a link to a folder is not followed (copy or move the images)")
                continue
            if not path.is_file() or path.name.startswith("."):
                continue
            problem, head = _image_header(path)
            if problem is not None:
                print(f"warning: skipping {path}: {problem}", file=sys.stderr)
                skipped += 1
                continue
            files.append(str(path))
            labels.append(label)
            sizes.append(header_size(head))
            jpeg_only = jpeg_only and head.startswith(FORMATS["JPEG"][1])
        if len(files) == before:
            raise DataError(f"class folder {folder} holds no images: add some or remove the folder")
    short_side = None if None in sizes or not sizes else max(min(size) for size in sizes)
    return _Listing(class_names, files, labels, skipped, short_side, jpeg_only)


HELD_OUT_FOLDERS = ("val", "validation", "valid", "test")  # beside train/, in this order of preference


def _folder(root: Path, val_split: float, seed: int) -> DataSource:
    """`root/<class>/*.jpg`, or `root/train/<class>/...` with a held-out split beside it: `val`,
    `validation`, `valid` or `test` (the first of these that exists)."""
    if not root.is_dir():
        raise DataError(f"folder {root} does not exist")
    val_root = next((root / v for v in HELD_OUT_FOLDERS if (root / v).is_dir()), None)
    if not (root / "train").is_dir() or val_root is None:
        splits = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in ("train", *HELD_OUT_FOLDERS))
        if splits:  # a split layout half there: its folder names must not become classes
            raise DataError(f"{root} has split folder(s) {', '.join(splits)} but not both train/ and one of "
                            f"{', '.join(HELD_OUT_FOLDERS)}/: give both, or put class folders directly in {root}")
    if (root / "train").is_dir() and val_root is not None:
        if val_root.name != "val":
            print(f"{root}: training on train/, validating on {val_root.name}/", file=sys.stderr)
        listing = _scan_classes(root / "train")
        val_listing = _scan_classes(val_root, listing.class_names)
        tr_files, tr_labels, va_files, va_labels = listing.files, listing.labels, val_listing.files, val_listing.labels
        skipped = listing.skipped + val_listing.skipped
        for extra in sorted(p for p in val_root.iterdir() if p.is_dir() and not p.name.startswith(".")
                            and p.name not in listing.class_names):
            skipped += _skip_folder(extra, f"a class that {root / 'train'} does not have")
    else:
        listing = _scan_classes(root)
        skipped, tr_files, va_files = listing.skipped, [], []
        if listing.files:
            files, labels = listing.files, listing.labels
            tr, va = stratified_split(np.asarray(labels), val_split, seed)
            tr_files, tr_labels = [files[i] for i in tr], [labels[i] for i in tr]
            va_files, va_labels = [files[i] for i in va], [labels[i] for i in va]
    class_names = listing.class_names
    if len(class_names) < 2 or not tr_files or not va_files:
        raise DataError(f"{root} needs at least two class subfolders of images (root/<class>/*.jpg, "
                        f"or root/train/<class> with root/val/<class>)")
    if skipped:
        print(f"warning: {skipped} file(s) in {root} were left out (each named above)", file=sys.stderr)

    def files_ds(files, labels):
        return tf.data.Dataset.from_tensor_slices((files, np.asarray(labels, np.int32)))

    return DataSource(
        name=f"folder:{root}", class_names=class_names,
        train=files_ds(tr_files, tr_labels), val=files_ds(va_files, va_labels),
        num_train=len(tr_files), num_val=len(va_files), read=tf.io.read_file, decode=decode_image, skipped=skipped,
        cache=len(tr_files) <= CACHE_LIMIT, short_side=listing.short_side, jpeg_only=listing.jpeg_only,
        listing=(np.array(tr_files), np.asarray(tr_labels, np.int32)),
    )


def _tfds(name: str, data_dir: str | None, val_split: float, manual_dir: str | None = None) -> DataSource:
    """A tensorflow-datasets image classification set, already prepared in `data_dir` or downloadable."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"tensorflow-datasets has no dataset {name.split('/')[0]!r} "
                        "(see `tfds.list_builders()`), or use folder:PATH or tfrecord:GLOB") from None
    except ValueError as e:  # an unknown config or version of a known dataset
        raise DataError(f"tfds {name!r}: {str(e).strip().splitlines()[0][:200]}") from None
    try:
        if not builder.is_prepared():
            config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir)) if manual_dir else None
            builder.download_and_prepare(download_config=config)
    except Exception as e:  # tfds raises many types; the message is what the user needs
        where = data_dir or "~/tensorflow_datasets"
        raise DataError(f"tfds dataset {name!r} is not prepared in {where} and could not be prepared "
                        f"({str(e).strip().splitlines()[0][:200]}); run `tfds build {name.split('/')[0]} "
                        f"--data_dir DIR` where there is a network, then pass --data-dir DIR") from None
    info = builder.info
    image_key = next((k for k, f in info.features.items() if isinstance(f, tfds.features.Image)), None)
    label_key = next((k for k, f in info.features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    if image_key is None or label_key is None:
        raise DataError(f"tfds dataset {name!r} has no Image + ClassLabel features")
    splits = list(info.splits.keys())
    val_name = next((s for s in ("validation", "val", "test") if s in splits), None)
    if "train" not in splits:
        raise DataError(f"tfds dataset {name!r} has no 'train' split (splits: {splits})")
    if val_name:
        train_split, val_split_name = "train", val_name
    else:
        pct = round(100 * val_split)
        train_split, val_split_name = f"train[{pct}%:]", f"train[:{pct}%]"

    def split(s):
        ds = builder.as_dataset(split=s, shuffle_files=False)
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def count(s):
        return int(info.splits[s].num_examples)

    channels = info.features[image_key].shape[-1]
    decode = tf.image.grayscale_to_rgb if channels == 1 else tf.identity
    return DataSource(
        name=f"tfds:{name}", class_names=list(info.features[label_key].names),
        train=split(train_split), val=split(val_split_name),
        num_train=count(train_split), num_val=count(val_split_name), decode=decode,
        cache=count(train_split) <= CACHE_LIMIT and info.download_size < 2**30,
    )


_TFRECORD_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


SHARD_NAME = re.compile(r"(.*)-(\d+)-of-(\d+)(\.[^/]*)?")  # train-00003-of-00008.tfrecord


def _shards(pattern: str) -> list[str]:
    """The files a glob matches (local or an object store's, through tf.io.gfile), refusing a set of
    `NAME-i-of-N` shards that is not whole (a copy or a preparation that did not finish)."""
    files = sorted(tf.io.gfile.glob(os.path.expanduser(pattern)))
    if not files:
        raise DataError(f"no TFRecord files match {pattern!r}")
    sets: dict[tuple[str, str], set[int]] = {}
    for path in files:
        if m := SHARD_NAME.fullmatch(path):
            sets.setdefault((m.group(1), m.group(3)), set()).add(int(m.group(2)))
    for (stem, count), found in sets.items():
        if found != set(range(int(count))):
            raise DataError(f"{pattern!r} matches {len(found)} of the {int(count)} shards {stem}-*-of-{count}: the set "
                            "is incomplete (a copy or a `keras-models prepare` that did not finish)")
    return files


def parse_record(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A serialized Model Garden example -> (encoded image, int32 label)."""
    ex = tf.io.parse_single_example(record, _TFRECORD_FEATURES)
    return ex["image/encoded"], tf.cast(ex["image/class/label"], tf.int32)


def _tfrecord(arg: str, val_split: float) -> DataSource:
    """TF Model Garden layout: `image/encoded` + `image/class/label`; optional labels.txt beside."""
    train_glob, _, val_glob = arg.partition(",")
    train_files = _shards(train_glob)
    val_files = _shards(val_glob) if val_glob else []

    def records(files):
        return tf.data.TFRecordDataset(files).map(parse_record, num_parallel_calls=tf.data.AUTOTUNE)

    def read_labels(files):
        try:
            return np.fromiter((int(lbl) for _, lbl in records(files).as_numpy_iterator()), np.int64)
        except tf.errors.OpError as e:
            raise DataError(f"cannot read {files[0]}: {e.message.splitlines()[0]}") from None

    train_labels = read_labels(train_files)  # one pass gives counts and the class range
    labels = np.concatenate([train_labels, read_labels(val_files)]) if val_files else train_labels
    if not len(labels):
        raise DataError(f"the TFRecord files matching {arg!r} hold no records")
    labels_txt = f"{os.path.dirname(train_files[0])}/labels.txt"
    if tf.io.gfile.exists(labels_txt):
        with tf.io.gfile.GFile(labels_txt) as f:
            class_names = [line.strip() for line in f.read().splitlines() if line.strip()]
    else:
        class_names = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.max() >= len(class_names):
        raise DataError(f"{labels_txt} lists {len(class_names)} classes but a record has label {labels.max()}")
    if labels.min() < 0:
        raise DataError(f"a record of {arg!r} has label {labels.min()}: labels are class indices "
                        f"0..{len(class_names) - 1}")
    if len(np.unique(train_labels)) < 2:
        raise DataError(f"the training records of {arg!r} hold one class ({int(train_labels[0])}): a classifier needs "
                        "at least two")
    if val_files:
        train, val = records(train_files), records(val_files)
        num_train, num_val = len(train_labels), len(labels) - len(train_labels)
    else:  # hold out val_split of the records, evenly spread over all files, in whole-number arithmetic
        share = fractions.Fraction(val_split).limit_denominator(10_000)
        p, q = share.numerator, share.denominator

        def held_out(i):  # record i is the first at or past each step of q/p records
            return tf.math.floordiv(i * p, q) > tf.math.floordiv((i - 1) * p, q)

        def kept(i, record):
            return tf.logical_not(held_out(i))

        def shown(i, record):  # a named function: AutoGraph cannot read two lambdas on one line
            return held_out(i)

        def record_only(i, record):
            return record

        indexed = records(train_files).enumerate()
        train = indexed.filter(kept).map(record_only)
        val = indexed.filter(shown).map(record_only)
        num_val = ((len(labels) - 1) * p) // q + 1
        num_train = len(labels) - num_val

    return DataSource(name=f"tfrecord:{arg}", class_names=class_names, train=train, val=val,
                      num_train=num_train, num_val=num_val, decode=decode_image, cache=num_train <= CACHE_LIMIT,
                      shards=train_files if val_files else None)


def encoded_images(source: DataSource, split: str, limit: int) -> tuple[list[bytes], np.ndarray]:
    """Up to `limit` images of a source's split as encoded bytes (PNG for in-memory arrays), with labels."""
    ds = getattr(source, split).take(limit)
    if source.read is not None:
        ds = ds.map(lambda raw, y: (source.read(raw), y))
    encoded, labels = [], []
    for raw, y in ds:
        if raw.dtype != tf.string:
            raw = tf.io.encode_png(tf.cast(source.decode(raw), tf.uint8))
        encoded.append(raw.numpy())
        labels.append(int(y))
    return encoded, np.array(labels, np.int64)


# --- transforms --------------------------------------------------------------------------
def crop_window(shape: tf.Tensor, scale: tuple[float, float], seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Inception crop window (area `scale`, aspect 3/4-4/3) for an image of `shape`: (begin, size)."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=seed, min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin, crop_size


def _resize(crop: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear to size x size, float32. The crop is cast first: TensorFlow's bilinear kernel is ~1.5x
    slower on uint8 input than the cast and the float kernel together."""
    return tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear")


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Round pixels to uint8, as timm's `FastCollateMixup` does. Only for pixels already in [0, 255],
    such as bilinear taps or mixes of uint8 images (convex combinations)."""
    return tf.cast(tf.round(image), tf.uint8)


def random_resized_crop(image: tf.Tensor, size: int, scale: tuple[float, float], seed: tf.Tensor) -> tf.Tensor:
    """Inception crop of a decoded image, resized to size x size (float32), seeded statelessly."""
    begin, crop_size = crop_window(tf.shape(image), scale, seed)
    return _resize(tf.slice(image, begin, crop_size), size)


JPEG_SCALES = (1, 2, 4, 8)  # the DCT scalings libjpeg decodes at (1/r of each side)


def _scalable(side, r: int, size: int):
    """Whether a window `side` px on its short side may decode at 1/r for `size` px out: it stays at
    least twice `size` (a Python int or a tensor)."""
    return side >= 2 * r * size


def jpeg_scales(short_side: int | None, size: int) -> tuple[int, ...]:
    """The scalings `decode_jpeg_window` can pick for images whose short sides are at most
    `short_side` (None: unknown, all of them): a source of small photos needs no choice, and
    choosing costs ~4% of the input rate (a `switch_case` per image)."""
    if short_side is None:
        return JPEG_SCALES
    return tuple(r for r in JPEG_SCALES if r == 1 or _scalable(short_side, r, size))


def decode_jpeg_window(data: tf.Tensor, begin: tf.Tensor, crop_size: tf.Tensor, size: int,
                       scales: tuple[int, ...] = JPEG_SCALES) -> tf.Tensor:
    """The window `begin`/`crop_size` of a JPEG, decoded alone, at the coarsest DCT scaling 1/r of
    `scales` that leaves it at least twice `size` on each side: a phone photo's 3000-px window decodes
    at 1/4 for 224 px, skipping most of the inverse DCT and colour conversion. Averaging r x r blocks
    first, the result is on average nearer the antialiased resize PIL gives timm's loader than
    bilinear taps of the full resolution are (tested; scaling down to under twice the output was
    not). The window moves by under r/2 source pixels, a fraction of one output pixel."""
    def at(r: int):
        def decode():
            if r == 1:
                return tf.image.decode_and_crop_jpeg(data, tf.concat([begin[:2], crop_size[:2]], 0), channels=3)
            top, left = begin[0] // r, begin[1] // r  # the window in the 1/r image's pixels
            bottom, right = -(-(begin[0] + crop_size[0]) // r), -(-(begin[1] + crop_size[1]) // r)
            window = tf.stack([top, left, bottom - top, right - left])
            return tf.image.decode_and_crop_jpeg(data, window, channels=3, ratio=r)
        return decode

    if len(scales) == 1:
        return at(scales[0])()
    fits = [_scalable(tf.reduce_min(crop_size[:2]), r, size) for r in scales[1:]]
    index = tf.reduce_sum(tf.cast(tf.stack(fits), tf.int32))  # scalings only grow coarser
    return tf.switch_case(index, [at(r) for r in scales])


def random_resized_crop_encoded(data: tf.Tensor, size: int, scale: tuple[float, float], seed: tf.Tensor,
                                scales: tuple[int, ...] = JPEG_SCALES, jpeg_only: bool = False) -> tf.Tensor:
    """The same crop (same window for the same seed) of an encoded image: a JPEG decodes only the
    window (`decode_jpeg_window` at one of `scales`, from its header's size), other formats decode
    whole, then crop; `jpeg_only` skips the format test. The uint8 crop is resized; nothing outside
    it is converted to float."""
    def jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        check = pixel_limit_check(tf.reduce_prod(tf.cast(shape[:2], tf.int64)))
        with tf.control_dependencies([check]):  # a TFRecord's JPEG is not scanned: refused here, undecoded
            begin, crop_size = crop_window(shape, scale, seed)
        return decode_jpeg_window(data, begin, crop_size, size, scales)

    def other():
        image = decode_image(data)
        begin, crop_size = crop_window(tf.shape(image), scale, seed)
        return tf.slice(image, begin, crop_size)

    crop = jpeg() if jpeg_only else tf.cond(tf.image.is_jpeg(data), jpeg, other)
    return _resize(crop, size)


def mix_batch(images: tf.Tensor, labels: tf.Tensor, status: tf.Tensor, mixup: float, cutmix: float,
              seed: tf.Tensor):
    """Batch-mode MixUp / CutMix against the reversed batch (timm's `mode=batch`), soft labels; a
    sample mixed with a blank (an unreadable file) is itself left out (status BAD). uint8 images stay
    uint8, the mix rounded (timm's `FastCollateMixup`, what its loader does by default)."""
    dtype = images.dtype
    images = tf.cast(images, tf.float32)
    def beta(alpha, s):
        a = tf.random.stateless_gamma([], s, alpha)
        b = tf.random.stateless_gamma([], s + 1, alpha)
        return a / (a + b)

    seeds = tf.random.experimental.stateless_split(seed, 3)
    use_cutmix = cutmix > 0 and (mixup <= 0 or tf.random.stateless_uniform([], seeds[0]) < 0.5)
    other_x, other_y = tf.reverse(images, [0]), tf.reverse(labels, [0])
    if use_cutmix:
        lam = beta(cutmix, seeds[1])
        h, w = tf.shape(images)[1], tf.shape(images)[2]
        cut = tf.sqrt(1.0 - lam)
        ch, cw = tf.cast(cut * tf.cast(h, tf.float32), tf.int32), tf.cast(cut * tf.cast(w, tf.float32), tf.int32)
        cy = tf.random.stateless_uniform([], seeds[2], 0, h, tf.int32)
        cx = tf.random.stateless_uniform([], seeds[2] + 7, 0, w, tf.int32)
        y0, y1 = tf.maximum(cy - ch // 2, 0), tf.minimum(cy + ch // 2, h)
        x0, x1 = tf.maximum(cx - cw // 2, 0), tf.minimum(cx + cw // 2, w)
        rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]
        box = tf.cast((rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1), images.dtype)[None, :, :, None]
        images = images * (1 - box) + other_x * box
        lam = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
    else:
        lam = beta(mixup, seeds[1])
        images = lam * images + (1 - lam) * other_x
    images = to_uint8(images) if dtype == tf.uint8 else images
    return images, lam * labels + (1 - lam) * other_y, tf.maximum(status, tf.reverse(status, [0]))


@dataclass(frozen=True)
class Pipeline:
    """How images become batches, for training and for evaluation (`eval_transform`, the serving contract)."""

    image_size: int
    crop_pct: float
    interpolation: str = "bilinear"
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    randaugment: int = 0  # magnitude 0-10 (0 = off), per image, timm's semantics (training.augment)
    randaugment_mstd: float = 0.0  # timm's mstd: N(0, mstd) noise on each op's magnitude
    mixup: float = 0.0
    cutmix: float = 0.0
    seed: int = 0

    @property
    def eval_transform(self) -> EvalTransform:
        """The serving contract's transform at this pipeline's size, crop and interpolation."""
        return EvalTransform(self.image_size, self.crop_pct, self.interpolation)

    def eval_image(self, image: tf.Tensor) -> tf.Tensor:
        return self.eval_transform.eval_image(image)

    def train_dataset(self, source: DataSource, batch_size: int, *, input_context=None,
                      skip_elements: int = 0) -> tf.data.Dataset:
        """Endless, seeded, sharded stream of (images uint8 RGB, one-hot labels, status) batches.

        Images stay uint8 to the device, a quarter of the bytes of float32 (the model casts and
        normalises in-graph), as timm's loader hands uint8 to its GPU-side normaliser.

        A file that fails to read or decode stays in the stream as a blank image with status BAD
        (weight 0 in the loss, counted), so every step consumes the same elements and a resumed
        run skips exactly what the interrupted one saw.
        """
        ds = source.train
        if input_context is not None and input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        ds = _checked(ds, source)  # (raw, label, status): cached sources are decoded once here
        if source.cache:
            ds = ds.cache()
        ds = ds.shuffle(min(source.num_train, 10_000), seed=self.seed, reshuffle_each_iteration=True).repeat()
        ds = ds.skip(skip_elements).enumerate(start=skip_elements)  # (index, (raw, label, status))
        augment_one, blank_one = self.augmenter(source)

        def augment(index, element):
            return augment_one(index, element[0], element[1])

        def blank(index, element):
            return blank_one(index, element[0], element[1])

        def known(index, element):  # validity decided when the bytes were cached
            return tf.cond(element[2] == GOOD, lambda: augment(index, element), lambda: blank(index, element))

        if not can_fail(source):
            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        elif source.cache:
            ds = ds.map(known, num_parallel_calls=tf.data.AUTOTUNE)
        else:  # read from disk every epoch: each decode guarded
            ds = guarded_map(ds, augment, blank)
        return self._finish(ds.batch(batch_size, drop_remainder=True), source.num_classes).prefetch(tf.data.AUTOTUNE)

    def augmenter(self, source: DataSource) -> tuple[Callable, Callable]:
        """(augment, blank): (key, raw bytes or pixels, label) -> (uint8 image, label, status). Each
        image's crop, flip and RandAugment are a pure function of (seed, key); `blank` stands in for
        an unreadable file (status BAD)."""
        decode, encoded, size = source.decode, source.encoded, self.image_size
        scales = jpeg_scales(source.short_side, size)

        def augment(key, raw, label):
            seed = tf.stack([tf.cast(self.seed, tf.int64), key])
            if encoded:  # JPEG fast path: only the crop window is decoded
                image = random_resized_crop_encoded(raw, size, self.crop_scale, seed, scales, source.jpeg_only)
            else:
                image = random_resized_crop(decode(raw), size, self.crop_scale, seed)
            image = tf.ensure_shape(to_uint8(image), [size, size, 3])  # tf.slice forgot the shape
            if self.hflip:  # after the resize, as timm flips, on the fewest bytes the image has
                image = tf.image.stateless_random_flip_left_right(image, seed + 1)
            if self.randaugment:
                image = tf.cast(rand_augment(image, seed + 2, self.randaugment, self.randaugment_mstd), tf.uint8)
            return image, label, tf.constant(GOOD, tf.int8)

        def blank(key, raw, label):
            return tf.zeros([size, size, 3], tf.uint8), label, tf.constant(BAD, tf.int8)

        return augment, blank

    def finish_keyed(self, batches: tf.data.Dataset, num_classes: int, keep_keys: bool = False) -> tf.data.Dataset:
        """`_finish` for batches of (positions, images, labels, status): a batch's MixUp/CutMix is
        seeded by its first position, not by a count that each service worker would repeat. With
        `keep_keys`, the positions come last in each batch."""
        def finish(keys, images, labels, status):
            labels = tf.one_hot(labels, num_classes)
            if self.mixup > 0 or self.cutmix > 0:
                images, labels, status = mix_batch(images, labels, status, self.mixup, self.cutmix,
                                                   tf.stack([tf.cast(self.seed, tf.int64), keys[0]]))
            return (images, labels, status, keys) if keep_keys else (images, labels, status)

        return batches.map(finish, num_parallel_calls=tf.data.AUTOTUNE)

    def _finish(self, batches: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
        """One-hot labels, a batch at a time (one op per batch, not one per image), then MixUp/CutMix."""
        def one_hot(images, labels, status):
            return images, tf.one_hot(labels, num_classes), status

        if self.mixup <= 0 and self.cutmix <= 0:
            return batches.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
        return batches.enumerate().map(
            lambda i, b: mix_batch(*one_hot(*b), self.mixup, self.cutmix, tf.stack([tf.cast(self.seed, tf.int64), i])),
            num_parallel_calls=tf.data.AUTOTUNE)

    def eval_dataset(self, source: DataSource, batch_size: int, *, input_context=None,
                     replicas_per_pipeline: int = 1) -> tf.data.Dataset:
        """Every validation image once, in order: (images, integer labels, status) batches.

        With an input context (a worker of a cluster), this pipeline's shard, padded with PAD
        elements so that every pipeline yields the same number of full batches: the counts of all
        of them sum to exactly one pass over the split. Unreadable files come as BAD, not dropped.
        """
        ds = source.val
        pipelines = input_context.num_input_pipelines if input_context is not None else 1
        if pipelines > 1:
            ds = ds.shard(pipelines, input_context.input_pipeline_id)
        size, decode = self.image_size, source.decode

        def score(raw, label, status=None):
            return self.eval_image(decode(raw)), label, tf.constant(GOOD, tf.int8)

        def blank(raw, label, status=None):
            return tf.zeros([size, size, 3]), label, tf.constant(BAD, tf.int8)

        ds = _checked(ds, source, decode_now=False)
        ds = guarded_map(ds, score, blank) if can_fail(source) else ds.map(score, tf.data.AUTOTUNE)
        per_step = batch_size * replicas_per_pipeline
        steps = eval_steps(source.num_val, pipelines, per_step)
        padding = tf.data.Dataset.from_tensors((tf.zeros([size, size, 3]), tf.constant(0, tf.int32),
                                                tf.constant(PAD, tf.int8))).repeat()
        ds = ds.concatenate(padding).take(steps * per_step)
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# Status of each element: scored, an unreadable file kept as a blank (weight 0, counted), padding
GOOD, BAD, PAD = 0, 1, 2
GUARD_PARALLELISM = 16  # elements decoded at once under the guard (measured: 16 ~ the unguarded rate)


def eval_steps(num_val: int, pipelines: int, per_step: int) -> int:
    """Steps for one pass over `num_val` images split over `pipelines` feeding `per_step` each."""
    return max(1, math.ceil(math.ceil(num_val / pipelines) / per_step))


def guarded_map(ds: tf.data.Dataset, fn: Callable, fallback: Callable) -> tf.data.Dataset:
    """`ds.map(fn)` where an element that fails (a corrupt or vanished file) becomes `fallback(element)`
    instead of an error or a silent drop (`ignore_errors`), so the stream keeps its length and order.

    tf.data cannot catch an error inside one map, so each element gets a one-element dataset:
    `fn` with errors ignored, then the fallback, first one wins; interleaved, in order, in parallel.
    """
    def one(*element):
        tried = tf.data.Dataset.from_tensors(element).map(fn).ignore_errors()
        return tried.concatenate(tf.data.Dataset.from_tensors(element).map(fallback)).take(1)

    return ds.interleave(one, cycle_length=GUARD_PARALLELISM, block_length=1,
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def can_fail(source: DataSource) -> bool:
    """Files and encoded bytes can fail to decode; in-memory arrays cannot."""
    return source.read is not None or source.encoded


def _checked(ds: tf.data.Dataset, source: DataSource, decode_now: bool | None = None) -> tf.data.Dataset:
    """(raw, label) -> (bytes, label, status). Files are read here; a file that cannot be read is
    BAD. A cached source is also decoded once here (decode_now), so its later epochs know each
    element's status without guarding every decode (the guard costs ~25% of the input rate)."""
    decode_now = source.cache if decode_now is None else decode_now
    if not can_fail(source):
        return ds.map(lambda raw, y: (raw, y, tf.constant(GOOD, tf.int8)))
    read = source.read or tf.identity

    def check(raw, label):
        data = read(raw)
        status = tf.constant(GOOD, tf.int8)
        if decode_now:  # fails here, under the guard, if the bytes do not decode; the status uses the
            # decoded pixels so that graph optimisation cannot prune the decode away
            status = tf.where(tf.size(source.decode(data)) > 0, status, tf.constant(BAD, tf.int8))
        return data, label, status

    def unreadable(raw, label):
        return tf.constant(b""), label, tf.constant(BAD, tf.int8)

    return guarded_map(ds, check, unreadable)
