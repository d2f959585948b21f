"""Training-input throughput, side by side in one run: `python -m benchmarks.data_pipeline OUT.csv`.

Makes a JPEG folder from the bundled photos (600 files, 500x375, quality 90: random crops and flips
of grace_hopper, chelsea and coffee, never downloaded), then times `training.data.Pipeline` alone (no
model) at 224 px, batch 32: with and without per-image RandAugment 9, and the pipeline this
project had before (whole-image decode, float crop, Keras' batch RandAugment) for the ratio.
Warm-up batches first, then the median of repeats; writes a CSV beside the summary it prints.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"
SIZE, BATCH, WARMUP, BATCHES, REPEATS = 224, 32, 5, 30, 3


def make_folder(root: Path, n: int = 600) -> Path:
    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        scale = rng.uniform(0.6, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        image = photo.crop((x, y, x + cw, y + ch)).resize((500, 375))
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:04d}.jpg", quality=90)
    return root


def legacy_dataset(source, randaugment: int):
    """Before: decode whole, cast to float, crop; RandAugment on whole batches (Keras' layer)."""
    import keras
    import tensorflow as tf

    from keras_models.preprocessing import decode_image
    from training.data import random_resized_crop

    ds = source.train.map(lambda raw, y: (source.read(raw), y)).cache().repeat().enumerate()

    def augment(index, raw, label):
        seed = tf.stack([tf.constant(0, tf.int64), index])
        image = random_resized_crop(tf.cast(decode_image(raw), tf.float32), SIZE, (0.08, 1.0), seed)
        image = tf.image.stateless_random_flip_left_right(image, seed + 1)
        return tf.ensure_shape(image, [SIZE, SIZE, 3]), label

    ds = ds.map(lambda i, xy: augment(i, *xy), num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH, drop_remainder=True)
    if randaugment:
        ra = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=randaugment / 10, seed=0)
        ds = ds.map(lambda x, y: (ra(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def timed(dataset) -> float:
    """Median images/s over REPEATS runs of BATCHES batches, after WARMUP batches."""
    iterator = iter(dataset)
    for _ in range(WARMUP):
        next(iterator)
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(BATCHES):
            next(iterator)
        rates.append(BATCHES * BATCH / (time.perf_counter() - start))
    return statistics.median(rates)


def main(out: Path) -> None:
    from training import data as data_lib

    with tempfile.TemporaryDirectory() as tmp:
        source = data_lib.load(f"folder:{make_folder(Path(tmp))}", val_split=0.1)
        rows = []
        ours = data_lib.Pipeline(SIZE, 0.875)
        for label, dataset in [
            ("ours, no RandAugment", ours.train_dataset(source, BATCH)),
            ("ours, RandAugment 9 per image", dataclasses.replace(ours, randaugment=9).train_dataset(source, BATCH)),
            ("before, no RandAugment", legacy_dataset(source, 0)),
            ("before, Keras RandAugment 9 per batch", legacy_dataset(source, 9)),
        ]:
            rate = timed(dataset)
            rows.append({"pipeline": label, "data_samples_per_sec": round(rate, 1),
                         "per_core": round(rate / (os.cpu_count() or 1), 1), "image_size": SIZE, "batch_size": BATCH,
                         "cores": os.cpu_count()})
            print(f"{label:<40}{rate:>9.1f} img/s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data_pipeline.csv"))
