"""`keras-models export`: every requested format of one model into one new version, each measured.

The version folder is built under a hidden staging name and renamed only when every format is
written and measured, so a failed export leaves nothing a server could load. Every format is
run on the evaluation images and compared with the Keras model; the table goes to
`export_report.md` and stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_models.export import lite, serving
from keras_models.export.lite import ExportError

FORMATS = ("saved_model", "tflite", "onnx")
# Agreement with the Keras model the export must reach, or it is not written (max |dp|).
TOLERANCE = {"saved_model": 1e-5, "tflite float32": 1e-4, "onnx": 1e-4}
# Published targets for int8 on ReLU6 nets (ReXNet-lite, EfficientNet-Lite): reported, not enforced.
INT8_AGREEMENT, INT8_DROP = 98.0, 1.0


@dataclass
class Images:
    """Evaluation images three ways: as sent to a server, as the models see them, and their labels."""

    encoded: list[bytes]  # JPEG/PNG bytes, what clients send to `serving_default`
    pixels: np.ndarray  # N x S x S x 3 float32 0-255 after the evaluation transform
    labels: np.ndarray | None  # int class ids, None when there is no labelled set


@dataclass
class Row:
    format: str
    file: str
    size_bytes: int
    latency_ms: float
    max_abs_diff: float | None  # against Keras probabilities
    agreement: float | None  # % top-1 equal to Keras
    accuracy: float | None  # % top-1 correct
    note: str = ""


def encoded_images(source, split: str, limit: int) -> tuple[list[bytes], np.ndarray]:
    """Up to `limit` images of a data source's split as encoded bytes (PNG for in-memory arrays)."""
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


def prepare(encoded: Sequence[bytes], pipeline, labels: np.ndarray | None = None) -> Images:
    """Decode and transform exactly as evaluation does; undecodable files are dropped."""
    keep, pixels = [], []
    for i, data in enumerate(encoded):
        try:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            continue
        keep.append(i)
        pixels.append(pipeline.eval_image(image).numpy())
    return Images([encoded[i] for i in keep], np.stack(pixels),
                  None if labels is None else labels[keep])


def median_ms(fn: Callable[[], object], budget_s: float = 3.0, max_runs: int = 50) -> float:
    """Batch-1 latency: 3 warm-up calls, then the median of up to `max_runs` within a time budget."""
    for _ in range(3):
        fn()
    times, deadline = [], time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def compare(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None
            ) -> tuple[float, float, float | None]:
    """(max |dp|, % top-1 agreement, % top-1 accuracy or None) of `probs` against the Keras `reference`."""
    diff = float(np.abs(probs - reference).max())
    agreement = float((probs.argmax(1) == reference.argmax(1)).mean() * 100)
    accuracy = None if labels is None else float((probs.argmax(1) == labels).mean() * 100)
    return diff, agreement, accuracy


def batched(fn: Callable[[np.ndarray], np.ndarray], items, size: int = 64) -> np.ndarray:
    """`fn` over `items` in chunks of `size`, outputs concatenated."""
    return np.concatenate([fn(items[i:i + size]) for i in range(0, len(items), size)])


def _dir_size(path: Path, exclude: Callable[[Path], bool] = lambda p: False) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not exclude(p))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_formats(formats: Sequence[str], quantizations: Sequence[str]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format {', '.join(unknown) or '(none)'}; use {', '.join(FORMATS)}")
    bad_quant = [q for q in quantizations if q not in lite.QUANTIZATIONS]
    if bad_quant or ("tflite" in formats and not quantizations):
        raise ExportError(f"unknown TFLite quantization {', '.join(bad_quant) or '(none)'}; "
                          f"use {', '.join(lite.QUANTIZATIONS)}")


def export_model(model: keras.Model, repository: str | Path, name: str, *, labels: Sequence[str],
                 images: Images, calibration: Sequence[np.ndarray] | None, crop_pct: float, interpolation: str,
                 formats: Sequence[str] = ("saved_model", "tflite"), quantizations: Sequence[str] = ("float32",),
                 card: dict | None = None, verbose: bool = True,
                 int8_saved_model: str | Path | None = None) -> tuple[Path, list[Row]]:
    """Write, measure and publish; returns the version folder and the report rows.

    `int8_saved_model`: a quantization-aware-trained SavedModel of the same weights (`keras-models
    optimize`) to convert int8 from, instead of calibrating the float model.
    """
    check_formats(formats, quantizations)
    if "tflite" in formats and "int8" in quantizations and not calibration:
        raise ExportError("int8 needs calibration images: pass --calibration DATA (e.g. the training data)")
    # Without a SavedModel the folder must not look like a servable version to TF Serving.
    model_dir = Path(repository) / name if "saved_model" in formats else Path(repository) / name / "lite"
    steps = (["keras"] + [f for f in formats if f != "tflite"]
             + ([f"tflite {q}" for q in quantizations] if "tflite" in formats else []) + ["report"])
    bar = tqdm(total=len(steps), desc=f"export {name}", unit="step", disable=not verbose, leave=False)
    staging = serving.staging_dir(model_dir)
    try:
        rows = _write_and_measure(model, staging, name, labels, images, calibration, crop_pct, interpolation,
                                  formats, quantizations, card or {}, bar, int8_saved_model)
        bar.set_postfix_str("publishing")
        version_dir = serving.publish(staging, model_dir, servable="saved_model" in formats)
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return version_dir, rows


def _write_and_measure(model, staging, name, labels, images, calibration, crop_pct, interpolation,
                       formats, quantizations, card, bar, int8_saved_model=None) -> list[Row]:
    probabilities = tf.function(lite.ensure_probabilities(model))
    reference = batched(lambda x: probabilities(tf.constant(x)).numpy(), images.pixels)
    one = tf.constant(images.pixels[:1])
    _, _, accuracy = compare(reference, reference, images.labels)
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)  # float32 weights
    rows = [Row("keras", "-", weight_bytes, median_ms(lambda: probabilities(one)), 0.0, 100.0, accuracy,
                "reference (float32 weights)")]
    bar.update()
    if "saved_model" in formats:
        bar.set_postfix_str("saved_model")
        serving.write_saved_model(model, staging, name=name, labels=labels, crop_pct=crop_pct,
                                  interpolation=interpolation, warmup_images=images.encoded[:8],
                                  card=card)
        loaded = tf.saved_model.load(str(staging))
        fn = loaded.signatures["serving_default"]
        probs = batched(lambda b: fn(image_bytes=tf.constant(b))["probabilities"].numpy(), images.encoded)
        first = tf.constant(images.encoded[:1])
        size = _dir_size(staging, lambda p: p.suffix in (".tflite", ".onnx") or p.name.endswith(".json"))
        rows.append(Row("saved_model", ".", size, median_ms(lambda: fn(image_bytes=first)),
                        *compare(probs, reference, images.labels), "image_bytes in (decode+resize+crop in-graph)"))
        bar.update()
    if "onnx" in formats:
        bar.set_postfix_str("onnx")
        rows.append(_onnx(model, staging / f"{name}.onnx", images, reference))
        bar.update()
    if "tflite" in formats:
        with lite.inference_saved_model(model) as converter_input:
            for q in quantizations:
                bar.set_postfix_str(f"tflite {q}")
                path = staging / f"{name}_{q}.tflite"
                qat = q == "int8" and int8_saved_model is not None
                lite.tflite(model, path, q, labels=labels, calibration=calibration, name=name,
                            saved_model_dir=str(int8_saved_model) if qat else converter_input)
                runner = lite.LiteModel(path)
                probs = runner(images.pixels)
                x1 = images.pixels[:1]
                note = "uint8 in/out, XNNPACK" if q == "int8" else "XNNPACK"
                note += ", quantization-aware trained" if qat else ""
                rows.append(Row(f"tflite {q}", path.name, path.stat().st_size, median_ms(lambda: runner(x1)),
                                *compare(probs, reference, images.labels), note))
                bar.update()
    results = {r.format: r for r in rows}
    for fmt, limit in TOLERANCE.items():  # a broken export is an error, not a row in a report
        if fmt in results and results[fmt].max_abs_diff > limit:
            raise ExportError(f"{fmt} differs from the Keras model by {results[fmt].max_abs_diff:.2g} "
                              f"(limit {limit:g}); not published")
    bar.set_postfix_str("report")
    report = render_report(name, rows, card, n_images=len(images.pixels))
    (staging / "export_report.md").write_text(report)
    card_path = staging / serving.CARD_FILE
    full_card = json.loads(card_path.read_text()) if card_path.exists() else {"model": name, **card}
    full_card["export"] = {r.format: {"file": r.file, "size_bytes": r.size_bytes, "latency_ms": round(r.latency_ms, 3),
                                      "max_abs_diff": r.max_abs_diff, "agreement": r.agreement,
                                      "accuracy": r.accuracy} for r in rows}
    card_path.write_text(json.dumps(full_card, indent=2) + "\n")
    bar.update()
    return rows


def _onnx(model: keras.Model, path: Path, images: Images, reference: np.ndarray) -> Row:
    import warnings

    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("--formats onnx needs onnxruntime and tf2onnx: pip install onnxruntime tf2onnx") from None
    size = lite.image_size_of(model)
    tmp = path.with_name(f".{path.name}.tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from keras_models.files import quiet_stderr

        with quiet_stderr():
            model.export(str(tmp), format="onnx", verbose=False,
                         input_signature=[keras.InputSpec(shape=(None, size, size, 3), dtype="float32", name="image")])
    os.replace(tmp, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    key = session.get_inputs()[0].name
    probs = batched(lambda x: session.run(None, {key: x})[0], images.pixels)
    if abs(float(probs[0].sum()) - 1) > 1e-3:  # the model ended in logits
        probs = tf.nn.softmax(probs).numpy()
    x1 = images.pixels[:1]
    return Row("onnx", path.name, path.stat().st_size, median_ms(lambda: session.run(None, {key: x1})),
               *compare(probs, reference, images.labels), "onnxruntime CPU")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_report(name: str, rows: list[Row], card: dict, n_images: int) -> str:
    """The export table as Markdown, with what it was measured on."""
    keras_acc = rows[0].accuracy
    lines = [
        f"# Export report: {name}",
        "",
        f"- weights: {card.get('weights', '-')}",
        f"- evaluation: {n_images} images of {card.get('data', '-')} "
        f"({card.get('input', {}).get('image_size', '-')} px); agreement and max |dp| are against the Keras model",
        f"- latency: batch 1, median, on this machine ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} threads), TensorFlow {tf.__version__}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "| format | file | size | latency (ms) | top-1 agreement | max abs dp | top-1 accuracy | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        acc = _fmt(r.accuracy, ".2f")
        if r.accuracy is not None and keras_acc is not None and r.format != "keras":
            acc += f" ({r.accuracy - keras_acc:+.2f})"
        note = r.note
        if r.format == "tflite int8" and r.agreement is not None:
            ok = r.agreement >= INT8_AGREEMENT and (r.accuracy is None or keras_acc - r.accuracy <= INT8_DROP)
            note += "; meets" if ok else "; misses"
            note += f" the int8 target (>= {INT8_AGREEMENT:g}% agreement, <= {INT8_DROP:g} point drop)"
        lines.append(f"| {r.format} | {r.file} | {r.size_bytes / 1e6:.2f} MB | {r.latency_ms:.2f} | "
                     f"{_fmt(r.agreement, '.2f')}% | {_fmt(r.max_abs_diff, '.1e')} | {acc} | {note} |")
    return "\n".join(lines) + "\n"
