"""`keras-models prepare`: any data source written once as TFRecord shards that `tfrecord:` reads.

The layout is TF Model Garden's (`image/encoded`, `image/class/label`, plus `image/format`,
`image/filename` and `image/index`, the record's position in its split), `labels.txt` beside,
train and val as `train-00000-of-00008.tfrecord` ... and `val-...`. Training records are written in
a seeded random order (shards read one after another still mix the classes). Every image is read
and decoded once on the way in: an unreadable one is counted and named, not written.

Nothing appears under a final name before the whole preparation is done: the shards are written in
`OUT/.partial/` and moved out at the end, so a killed run leaves nothing a `tfrecord:` glob picks
up, and a rerun starts that folder over. Paths go through `tf.io.gfile` (object stores included).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from training import data as data_lib

STAGING = ".partial"
SUMMARY = "prepare.json"
LABELS = "labels.txt"
DEFAULT_SHARD_MB = 128  # TensorFlow's guidance: shards of 100 MB or more read at full speed
SPLITS = ("train", "val")


class PrepareError(ValueError):
    """A preparation that cannot go ahead as asked (one line, with what to do)."""


@dataclass
class SplitReport:
    written: int = 0
    shards: int = 0
    bytes: int = 0
    unreadable: list[str] = field(default_factory=list)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def prepare(data: str, out: str, *, shards: int | None = None, shard_mb: float = DEFAULT_SHARD_MB,
            val_split: float = 0.2, seed: int = 0, data_dir: str | None = None) -> dict:
    """Write `data` as shards under `out`; returns the summary also written to `out/prepare.json`."""
    plan = {"data": data, "val_split": val_split, "seed": seed, "shards": shards, "shard_mb": shard_mb}
    done = _finished(out)
    if done is not None:
        if done["plan"] == plan:
            print(f"{out} is already prepared from {data}: nothing to do", file=sys.stderr)
            return done
        raise PrepareError(f"{out} already holds shards prepared from {done['plan']['data']} with other settings: "
                           "pass another --out, or delete it first")
    staging = f"{out}/{STAGING}"
    ours = [f"{out}/{LABELS}"] + [p for split in SPLITS for p in tf.io.gfile.glob(f"{out}/{split}-*-of-*.tfrecord")]
    if tf.io.gfile.exists(staging):  # a run killed while writing or moving: start over
        print(f"note: {out} holds an unfinished preparation: starting it over", file=sys.stderr)
        for path in ours:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        tf.io.gfile.rmtree(staging)
    elif len(ours) > 1 or tf.io.gfile.glob(f"{out}/train-*") or tf.io.gfile.glob(f"{out}/val-*"):
        raise PrepareError(f"{out} already holds train-*/val-* files that no preparation of this tool finished: "
                           "pass another --out")
    source = data_lib.load(data, val_split=val_split, seed=seed, data_dir=data_dir)
    tf.io.gfile.makedirs(staging)
    reports = {split: _write_split(source, split, staging, shards, shard_mb, seed) for split in SPLITS}
    for split, report in reports.items():
        if not report.written:
            raise PrepareError(f"no readable {split} image in {data}: nothing to write")
    _write_text(f"{staging}/{LABELS}", "".join(f"{name}\n" for name in source.class_names))
    summary = {"plan": plan, "classes": len(source.class_names), "skipped_at_scan": source.skipped,
               **{split: asdict(report) for split, report in reports.items()}}
    _write_text(f"{staging}/{SUMMARY}", json.dumps(summary, indent=1) + "\n")
    _publish(staging, out)
    return summary


def _finished(out: str) -> dict | None:
    path = f"{out}/{SUMMARY}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _publish(staging: str, out: str) -> None:
    """Move the finished files out of staging: shards first, the summary (what marks a finished
    preparation) last."""
    names = sorted(tf.io.gfile.listdir(staging), key=lambda name: name == SUMMARY)
    for name in names:
        tf.io.gfile.rename(f"{staging}/{name}", f"{out}/{name}", overwrite=True)
    tf.io.gfile.rmtree(staging)


def _records(source: data_lib.DataSource, split: str, seed: int) -> tf.data.Dataset:
    """(name, encoded bytes, label, status) in the order they are written: training shuffled by
    `seed`. In-memory images are encoded as PNG (lossless); files keep their own bytes."""
    ds = getattr(source, split)
    count = source.num_train if split == "train" else source.num_val
    if split == "train":  # a whole permutation for paths and small arrays, a 10k window otherwise
        ds = ds.shuffle(count if source.read is not None else min(count, 10_000), seed=seed,
                        reshuffle_each_iteration=False)

    def named(raw, label):
        return (raw if source.read is not None else tf.constant(b"")), raw, label

    def encode(name, raw, label):
        if source.read is not None:
            data = source.read(raw)
        elif source.encoded:
            data = raw
        else:
            data = tf.io.encode_png(tf.cast(source.decode(raw), tf.uint8))
        check = tf.size(data_lib.decode_image(data)) > 0  # fails (under the guard) if it does not decode
        return name, data, label, tf.where(check, data_lib.GOOD, data_lib.BAD)

    def unreadable(name, raw, label):
        return name, tf.constant(b""), label, tf.constant(data_lib.BAD, tf.int32)

    return data_lib.guarded_map(ds.map(named), encode, unreadable)


def _example(data: bytes, label: int, name: bytes, index: int) -> bytes:
    kind = b"jpeg" if data.startswith(b"\xff\xd8") else b"png" if data.startswith(b"\x89PNG") else b"other"

    def raw(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def number(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": raw(data), "image/format": raw(kind), "image/filename": raw(name),
        "image/class/label": number(label), "image/index": number(index),
    })).SerializeToString()


def _shard_count(source: data_lib.DataSource, split: str, shards: int | None, shard_mb: float) -> int:
    count = source.num_train if split == "train" else source.num_val
    if shards is not None:
        return max(1, min(shards, count))
    sample = [len(b) for b in data_lib.encoded_images(source, split, 64)[0]]
    estimate = np.mean(sample) * count if sample else 0
    return max(1, math.ceil(estimate / (shard_mb * 1e6)))


def _write_split(source: data_lib.DataSource, split: str, staging: str, shards: int | None, shard_mb: float,
                 seed: int) -> SplitReport:
    """Record k goes to shard k mod N: shards of equal counts, each a spread of the whole split."""
    count = _shard_count(source, split, shards, shard_mb)
    total = source.num_train if split == "train" else source.num_val
    report = SplitReport(shards=count)
    writers = [tf.io.TFRecordWriter(f"{staging}/{shard_name(split, i, count)}") for i in range(count)]
    try:
        bar = tqdm(_records(source, split, seed).as_numpy_iterator(), total=total, desc=f"prepare {split}",
                   unit="img", file=sys.stderr)
        for name, encoded, label, status in bar:
            if status != data_lib.GOOD:
                report.unreadable.append(name.decode() or f"{split} element {report.written + len(report.unreadable)}")
                continue
            writers[report.written % count].write(_example(encoded, int(label), name, report.written))
            report.written += 1
            report.bytes += len(encoded)
    finally:
        for writer in writers:
            writer.close()
    return report


def print_summary(out: str, summary: dict) -> None:
    """What was written and what was left out, each unreadable file named."""
    for split in SPLITS:
        report = summary[split]
        print(f"{split}: {report['written']} images in {report['shards']} shard(s), "
              f"{report['bytes'] / 1e6:.1f} MB, {len(report['unreadable'])} unreadable left out")
        for name in report["unreadable"]:
            print(f"  left out (unreadable): {name}")
    if summary["skipped_at_scan"]:
        print(f"{summary['skipped_at_scan']} file(s) were left out when the data was scanned (each named above)")
    print(f"-> {out}: train with --data 'tfrecord:{out}/train-*,{out}/val-*'")
