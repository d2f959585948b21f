"""`keras-models benchmark --bench data`: the training input pipeline alone (no model), side by side.

Times `training.data.Pipeline.train_dataset` on a folder or TFRecords of images (warm-up batches,
then the median of repeats of N batches), and in the same run, on the same files and cores:
`--compare timm` (timm's loader in a child process: PIL + torchvision, one DataLoader worker per
core, uint8 batches as its default prefetcher mode makes them, `benchmarks/timm_loader_child.py`),
`--compare legacy` (this project's pipeline before per-image RandAugment and the JPEG fast path:
whole-image decode, float crop, Keras' RandAugment per batch) and `--compare garden` (TF Model
Garden's `classification_input` training parser: header, `sample_distorted_bounding_box`,
`decode_and_crop_jpeg`, resize, flip, normalise; timed without RandAugment). Writes
`data_samples_per_sec` (median, p10, p90), the per-core figure and the settings to a CSV and a
bar chart beside it.

Without `--data`, a real-photo JPEG folder is made from the bundled photos (600 random crops of
grace_hopper, chelsea and coffee, 500x375, quality 90): `python -m benchmarks.data_bench DIR`
writes the same folder to DIR.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.speed import cpu_name

PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"
COMPARE = ("timm", "legacy", "garden")
TIMM_PYTHON_ENV = "KERAS_MODELS_TIMM_PYTHON"  # an interpreter with torch + timm, if not this one


class DataBenchError(ValueError):
    """A data benchmark that cannot run as asked (one line)."""


@dataclass
class DataBenchOptions:
    data: str | None = None  # folder:PATH or tfrecord:GLOB; None: photos made from the bundled ones
    image_size: int = 224
    batch_size: int = 32
    randaugment: int = 0
    randaugment_mstd: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    compare: list[str] = field(default_factory=list)
    warmup: int = 5
    batches: int = 30
    repeats: int = 3
    rounds: int = 1  # the whole sequence of pipelines, this many times (interleaved in time)
    workers: int = 0  # timm's DataLoader workers (0: one per core)
    service_workers: list[int] = field(default_factory=list)  # our pipeline on a tf.data service of k workers
    command: str = ""

    def check(self) -> None:
        unknown = [c for c in self.compare if c not in COMPARE]
        if unknown:
            raise DataBenchError(f"--compare {unknown[0]!r} is not a data peer; choose from {', '.join(COMPARE)}")
        if "garden" in self.compare and self.randaugment:
            raise DataBenchError("--compare garden times TF Model Garden's parser without RandAugment: "
                                 "drop --randaugment, or compare with timm,legacy")
        if "timm" in self.compare and self.data and not self.data.startswith("folder:"):
            raise DataBenchError("--compare timm reads image folders (torchvision ImageFolder): use --data folder:DIR")


PHOTO_SIZE = (500, 375)


def make_folder(root: Path, n: int = 600, size: tuple[int, int] = PHOTO_SIZE) -> Path:
    """`n` real-photo JPEGs of `size` in two class folders: random crops and flips of the bundled photos
    (upscaled for sizes beyond theirs, a stand-in for phone photos)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        scale = rng.uniform(0.6, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        image = photo.crop((x, y, x + cw, y + ch)).resize(size)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:04d}.jpg", quality=90)
    return root


def timed(batches, options: DataBenchOptions) -> list[float]:
    """Images/s of each repeat of `options.batches` batches, after `options.warmup` untimed ones."""
    iterator = iter(batches)
    for _ in range(options.warmup):
        next(iterator)
    rates = []
    for _ in range(options.repeats):
        start = time.perf_counter()
        for _ in range(options.batches):
            next(iterator)
        rates.append(options.batches * options.batch_size / (time.perf_counter() - start))
    return rates


def ours(source, options: DataBenchOptions):
    from training.data import Pipeline

    pipeline = Pipeline(options.image_size, 0.875, randaugment=options.randaugment,
                        randaugment_mstd=options.randaugment_mstd, mixup=options.mixup, cutmix=options.cutmix)
    return pipeline.train_dataset(source, options.batch_size)


def served(source, options: DataBenchOptions, workers: int) -> dict:
    """Our pipeline computed by a tf.data service of `workers` local worker processes (and its
    dispatcher), read in this process: what the service costs against the local pipeline."""
    from training import data_service
    from training.data import Pipeline

    pipeline = Pipeline(options.image_size, 0.875, randaugment=options.randaugment,
                        randaugment_mstd=options.randaugment_mstd, mixup=options.mixup, cutmix=options.cutmix)
    with data_service.local_cluster(workers) as url:
        ds = data_service.service_dataset(pipeline, source, options.batch_size, url=url, start=0, end=1 << 40,
                                          job=f"bench-{workers}-{time.time_ns()}")
        return {"rates": timed(ds, options), "workers": workers}


def _cached_bytes(source):
    """The training split as (encoded bytes, label), read once, cached in memory, shuffled each epoch,
    repeated: the peers' common start, as `train_dataset` starts (and as it did before #19)."""
    ds = source.train
    if source.read is not None:
        ds = ds.map(lambda raw, y: (source.read(raw), y))
    return ds.cache().shuffle(min(source.num_train, 10_000), seed=0, reshuffle_each_iteration=True).repeat()


def legacy(source, options: DataBenchOptions):
    """The pipeline before #19, as `Pipeline.train_dataset` was where the issue measured it (5cf1955):
    read, cache, shuffle, decode whole, cast to float, crop, resize, flip, clip, one-hot,
    `ignore_errors`, float32 batches; Keras' RandAugment on whole batches."""
    import keras
    import tensorflow as tf

    from training.data import crop_window

    ds = _cached_bytes(source)
    size, num_classes = options.image_size, source.num_classes

    def random_resized_crop(image, seed):  # 5cf1955's float crop and resize, kept here as it was
        return tf.image.resize(tf.slice(image, *crop_window(tf.shape(image), (0.08, 1.0), seed)), [size, size])

    def augment(index, raw, label):
        seed = tf.stack([tf.constant(0, tf.int64), index])
        image = random_resized_crop(tf.cast(source.decode(raw), tf.float32), seed)
        image = tf.image.stateless_random_flip_left_right(image, seed + 1)
        image = tf.ensure_shape(image, [size, size, 3])
        return tf.clip_by_value(image, 0.0, 255.0), tf.one_hot(label, num_classes)

    ds = ds.enumerate().map(lambda i, xy: augment(i, *xy), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors().batch(options.batch_size, drop_remainder=True)
    if options.randaugment:
        ra = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=options.randaugment / 10, seed=0)
        ds = ds.map(lambda x, y: (ra(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def garden(source, options: DataBenchOptions):
    """TF Model Garden's training parser (official/vision/dataloaders/classification_input.py with
    `preprocess_ops.random_crop_image_v2`): the crop window from the JPEG header, `decode_and_crop_jpeg`,
    bilinear resize, random flip, mean/std normalisation to float32."""
    import tensorflow as tf

    size = options.image_size

    def parse(data, label):
        shape = tf.image.extract_jpeg_shape(data)
        begin, crop, _ = tf.image.sample_distorted_bounding_box(
            shape, tf.zeros([1, 0, 4]), min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
        window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
        image = tf.image.decode_and_crop_jpeg(data, window, channels=3)
        image = tf.image.resize(image, [size, size], method="bilinear")
        image = tf.image.random_flip_left_right(image)
        image = (image - IMAGENET_MEAN) / IMAGENET_STD
        return tf.ensure_shape(image, [size, size, 3]), label

    ds = _cached_bytes(source).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(options.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def timm_rates(folder: str, options: DataBenchOptions) -> dict:
    python = os.environ.get(TIMM_PYTHON_ENV) or sys.executable
    job = {**{k: v for k, v in asdict(options).items() if k != "compare"}, "folder": folder,
           "workers": options.workers or os.cpu_count() or 1}
    done = subprocess.run([python, str(Path(__file__).with_name("timm_loader_child.py")), json.dumps(job)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise DataBenchError(f"timm's loader failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(impl: str, rates: list[float], options: DataBenchOptions, data: str, **extra) -> dict:
    cores = os.cpu_count() or 1
    median = statistics.median(rates)
    return {"impl": impl, "data": data, "image_size": options.image_size, "batch_size": options.batch_size,
            "randaugment": options.randaugment, "randaugment_mstd": options.randaugment_mstd,
            "mixup": options.mixup, "cutmix": options.cutmix,
            "data_samples_per_sec": round(median, 1),
            "data_samples_per_sec_p10": round(float(np.percentile(rates, 10)), 1),
            "data_samples_per_sec_p90": round(float(np.percentile(rates, 90)), 1),
            "per_core": round(median / cores, 1), "cores": cores, "cpu": cpu_name(),
            "repeats": options.repeats, "rounds": options.rounds, "batches": options.batches,
            "command": options.command, **extra}


def _peers(source, data: str, options: DataBenchOptions) -> list[tuple[str, Callable[[], dict]]]:
    """(name, one timing of it: {"rates", ...extra CSV fields}) for ours and each asked peer, in order."""
    def in_process(make):
        return lambda: {"rates": timed(make(source, options), options)}

    def timm():
        result = timm_rates(data.split(":", 1)[1], options)
        return {"rates": result["rates"], "impl": f"timm {result['timm']}", "workers": result["workers"],
                "torch": result["torch"]}

    peers = [("keras-models", in_process(ours))]
    peers += [(name, in_process(make)) for key, name, make in (
        ("legacy", "keras-models before #19", legacy), ("garden", "TF Model Garden parser", garden))
        if key in options.compare]
    peers += [(f"tf.data service, {k} worker(s)", lambda k=k: served(source, options, k))
              for k in options.service_workers]
    return peers + ([("timm's loader", timm)] if "timm" in options.compare else [])


def run(options: DataBenchOptions, progress=print) -> list[dict]:
    """Rows for ours and each peer, on the same files (a photo folder made for the run if no --data).
    With `rounds` > 1 the whole sequence runs again, so every pipeline is timed across the machine's
    drifts (a shared vCPU's speed moves by 10-20% within minutes) and the medians compare fairly."""
    from training.data import load

    options.check()
    with tempfile.TemporaryDirectory(prefix="keras-models-data-bench-") as tmp:
        data = options.data or f"folder:{make_folder(Path(tmp))}"
        source = load(data, val_split=0.05)
        label = options.data or "bundled photos (600 JPEGs, 500x375)"
        progress(f"{source.num_train} training images from {label}, {options.image_size} px, batch "
                 f"{options.batch_size}, {options.rounds} round(s)")
        peers = _peers(source, data, options)
        results: dict[str, dict] = {name: {"rates": []} for name, _ in peers}
        for round_ in range(options.rounds):
            for name, time_it in peers:
                result = time_it()
                results[name]["rates"] += result.pop("rates")
                results[name].update(result)
                progress(f"round {round_ + 1}: {name}: {statistics.median(results[name]['rates']):.0f} img/s"
                         + (f" ({result['workers']} workers)" if "workers" in result else ""))
        return [_row(extra.pop("impl", name), extra.pop("rates"), options, label, **extra)
                for name, extra in results.items()]


def write_csv(rows: list[dict], path: Path) -> None:
    from keras_models.files import atomic_output

    fields = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], path: Path, title: str = "") -> Path:
    """One bar per pipeline: median images/s (p10-p90 whiskers), per-core rate and ratio to ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_models.files import atomic_output

    ours_rate = rows[0]["data_samples_per_sec"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [textwrap.fill(r["impl"], 16) for r in rows]
    medians = [r["data_samples_per_sec"] for r in rows]
    errors = [[m - r["data_samples_per_sec_p10"] for m, r in zip(medians, rows)],
              [r["data_samples_per_sec_p90"] - m for m, r in zip(medians, rows)]]
    bars = ax.bar(names, medians, yerr=errors, capsize=4, color=["tab:blue"] + ["tab:gray"] * (len(rows) - 1))
    for bar, r in zip(bars, rows):
        ax.annotate(f"{r['data_samples_per_sec']:.0f} img/s\n{r['per_core']:.0f}/core, ours "
                    f"{ours_rate / r['data_samples_per_sec']:.2f}x", (bar.get_x() + bar.get_width() / 2,
                    r["data_samples_per_sec_p90"]), ha="center", va="bottom", fontsize=8)  # above the whisker
    r0 = rows[0]
    ax.set_ylim(0, 1.2 * max(r["data_samples_per_sec_p90"] for r in rows))  # room for the labels
    ax.set_ylabel("training images / s (input pipeline alone)")
    ax.set_title(f"{r0['image_size']} px, batch {r0['batch_size']}, RandAugment {r0['randaugment'] or 'off'}, "
                 f"{r0['cores']} cores ({r0['cpu']})", fontsize=9)
    fig.suptitle(title[:110], fontsize=8)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python -m benchmarks.data_bench DIR [WxH]   (writes the bundled-photo JPEG folder, "
                         f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} unless WxH)")
    width, _, height = (sys.argv[2] if len(sys.argv) == 3 else "x".join(map(str, PHOTO_SIZE))).partition("x")
    print(f"wrote {make_folder(Path(sys.argv[1]), size=(int(width), int(height)))}")
