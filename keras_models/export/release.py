"""One export version: every requested format of a model written, measured against Keras, published.

The version folder is built under a hidden staging name and renamed only when every format is
written and measured, so a failed export leaves nothing a server could load. Every format is
run on the evaluation images and compared with the Keras model; the table goes to
`export_report.md` (and the model card) and a format that disagrees beyond `TOLERANCE` stops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_models.export import lite, serving
from keras_models.export.lite import ExportError
from keras_models.export.measure import Images, batched, compare, logit_error, median_ms
from keras_models.files import quiet_stderr

FORMATS = ("saved_model", "tflite", "onnx")
# Agreement with the Keras model a float export must reach, or it is not written: `measure.logit_error`,
# the logit difference relative to the model's logit range. Float32 rounding (BatchNorm folding, kernel
# order) stays 10-1000x under it; a graph that computes something else (a BatchNorm epsilon, a padding,
# a preprocessing step) lands 10-1000x over it. An absolute limit on probabilities refused 1 in 5 early
# checkpoints that agreed on every top-1.
TOLERANCE = {"saved_model": 1e-3, "tflite float32": 1e-3, "onnx": 1e-3}
# Published targets for int8 on ReLU6 nets (ReXNet-lite, EfficientNet-Lite): reported, not enforced.
INT8_AGREEMENT, INT8_DROP = 98.0, 1.0


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
    logit_error: float | None = None  # `measure.logit_error` against Keras: what TOLERANCE bounds


@dataclass
class ExportPlan:
    """What one export version holds and how it is served (everything but the model and images)."""

    name: str
    labels: Sequence[str]
    crop_pct: float
    interpolation: str
    formats: Sequence[str] = ("saved_model", "tflite")
    quantizations: Sequence[str] = ("float32",)
    calibration: Sequence[np.ndarray] | None = None  # int8: real images, HxWx3 0-255
    card: dict = field(default_factory=dict)  # model card fields (weights, data, training metrics)
    # A quantization-aware-trained SavedModel of the same weights (`keras-models optimize`): int8
    # converts from it, keeping the learned ranges, instead of calibrating the float model.
    int8_saved_model: str | Path | None = None

    def check(self) -> None:
        serving.check_model_name(self.name)
        check_formats(self.formats, self.quantizations)
        if "tflite" in self.formats and "int8" in self.quantizations and not self.calibration:
            raise ExportError("int8 needs calibration images: pass --calibration DATA (e.g. the training data)")

    def steps(self) -> list[str]:
        tflite = [f"tflite {q}" for q in self.quantizations] if "tflite" in self.formats else []
        return ["keras"] + [f for f in self.formats if f != "tflite"] + tflite + ["report"]


def check_formats(formats: Sequence[str], quantizations: Sequence[str]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format {', '.join(unknown) or '(none)'}; use {', '.join(FORMATS)}")
    bad_quant = [q for q in quantizations if q not in lite.QUANTIZATIONS]
    if bad_quant or ("tflite" in formats and not quantizations):
        raise ExportError(f"unknown TFLite quantization {', '.join(bad_quant) or '(none)'}; "
                          f"use {', '.join(lite.QUANTIZATIONS)}")


def export_model(model: keras.Model, repository: str | Path, plan: ExportPlan, images: Images, *,
                 verbose: bool = True) -> tuple[Path, list[Row]]:
    """Write, measure and publish `repository/<plan.name>/<next version>`; returns it and the rows."""
    plan.check()
    # Without a SavedModel the folder must not look like a servable version to TF Serving.
    servable = "saved_model" in plan.formats
    model_dir = Path(repository) / plan.name if servable else Path(repository) / plan.name / "lite"
    bar = tqdm(total=len(plan.steps()), desc=f"export {plan.name}", unit="step", disable=not verbose, leave=False)
    created = [folder for folder in (model_dir, *model_dir.parents) if not folder.exists()]  # deepest first
    staging = serving.staging_dir(model_dir)
    try:
        rows = _Release(model, staging, plan, images, bar).run()
        bar.set_postfix_str("publishing")
        version_dir = serving.publish(staging, model_dir, servable=servable)
    except BaseException:  # a failed export leaves no folder it made (a full disk, a refused format)
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return version_dir, rows


class _Release:
    """Writes each format into the staging folder and measures it against the Keras reference."""

    def __init__(self, model: keras.Model, staging: Path, plan: ExportPlan, images: Images, bar):
        self.model, self.staging, self.plan, self.images, self.bar = model, staging, plan, images, bar
        self.probabilities = tf.function(lite.ensure_probabilities(model))
        self.reference = batched(lambda x: self.probabilities(tf.constant(x)).numpy(), images.pixels)

    def run(self) -> list[Row]:
        rows = [self._step("keras", self.keras_row)]
        if "saved_model" in self.plan.formats:
            rows.append(self._step("saved_model", self.saved_model_row))
        if "onnx" in self.plan.formats:
            rows.append(self._step("onnx", self.onnx_row))
        if "tflite" in self.plan.formats:
            rows += self.tflite_rows()
        check_tolerances(rows)
        self.bar.set_postfix_str("report")
        write_report(self.staging, self.plan, rows, n_images=len(self.images.pixels))
        self.bar.update()
        return rows

    def _step(self, label: str, make_row: Callable[[], Row]) -> Row:
        self.bar.set_postfix_str(label)
        row = make_row()
        self.bar.update()
        return row

    def _row(self, fmt: str, file: str, size: int, run_one: Callable[[], object], probs: np.ndarray,
             note: str) -> Row:
        return Row(fmt, file, size, median_ms(run_one), *compare(probs, self.reference, self.images.labels), note,
                   logit_error(probs, self.reference))

    def keras_row(self) -> Row:
        one = tf.constant(self.images.pixels[:1])
        weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in self.model.weights)  # float32 weights
        return self._row("keras", "-", weight_bytes, lambda: self.probabilities(one), self.reference,
                         "reference (float32 weights)")

    def saved_model_row(self) -> Row:
        p = self.plan
        serving.write_saved_model(self.model, self.staging, name=p.name, labels=p.labels, crop_pct=p.crop_pct,
                                  interpolation=p.interpolation, warmup_images=self.images.encoded[:8], card=p.card)
        fn = tf.saved_model.load(str(self.staging)).signatures["serving_default"]
        probs = batched(lambda b: fn(image_bytes=tf.constant(b))["probabilities"].numpy(), self.images.encoded)
        first = tf.constant(self.images.encoded[:1])
        size = _dir_size(self.staging, lambda f: f.suffix in (".tflite", ".onnx") or f.name.endswith(".json"))
        return self._row("saved_model", ".", size, lambda: fn(image_bytes=first), probs,
                         "image_bytes in (decode+resize+crop in-graph)")

    def onnx_row(self) -> Row:
        path = self.staging / f"{self.plan.name}.onnx"
        session = write_onnx(self.model, path)
        key = session.get_inputs()[0].name
        probs = batched(lambda x: session.run(None, {key: x})[0], self.images.pixels)
        if lite.ends_in_logits(self.model):
            probs = tf.nn.softmax(probs).numpy()
        x1 = self.images.pixels[:1]
        return self._row("onnx", path.name, path.stat().st_size, lambda: session.run(None, {key: x1}), probs,
                         "onnxruntime CPU")

    def tflite_rows(self) -> list[Row]:
        rows = []
        with lite.inference_saved_model(self.model) as converter_input:
            for q in self.plan.quantizations:
                rows.append(self._step(f"tflite {q}", lambda q=q: self.tflite_row(q, converter_input)))
        return rows

    def tflite_row(self, quantization: str, converter_input: str) -> Row:
        p = self.plan
        path = self.staging / f"{p.name}_{quantization}.tflite"
        qat = quantization == "int8" and p.int8_saved_model is not None
        lite.tflite(self.model, path, quantization, labels=p.labels, calibration=p.calibration, name=p.name,
                    saved_model_dir=str(p.int8_saved_model) if qat else converter_input)
        runner = lite.LiteModel(path)
        note = "uint8 in/out, XNNPACK" if quantization == "int8" else "XNNPACK"
        note += ", quantization-aware trained" if qat else ""
        x1 = self.images.pixels[:1]
        return self._row(f"tflite {quantization}", path.name, path.stat().st_size, lambda: runner(x1),
                         runner(self.images.pixels), note)


def check_tolerances(rows: list[Row]) -> None:
    """A broken export is an error, not a row in a report."""
    results = {r.format: r for r in rows}
    for fmt, limit in TOLERANCE.items():
        if fmt in results and results[fmt].logit_error > limit:
            r = results[fmt]
            raise ExportError(f"{fmt} differs from the Keras model by {r.logit_error:.2g} of its logit range "
                              f"(limit {limit:g}; max |dp| {r.max_abs_diff:.2g}, top-1 agreement {r.agreement:.1f}%): "
                              "it computes something else; not published")


def write_onnx(model: keras.Model, path: Path):
    """`model` as ONNX at `path` (written then renamed); returns an onnxruntime session on it."""
    import warnings

    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("--formats onnx needs onnxruntime and tf2onnx: pip install onnxruntime tf2onnx") from None
    size = lite.image_size_of(model)
    tmp = path.with_name(f".{path.name}.tmp.onnx")
    with warnings.catch_warnings(), quiet_stderr():
        warnings.simplefilter("ignore")
        model.export(str(tmp), format="onnx", verbose=False,
                     input_signature=[keras.InputSpec(shape=(None, size, size, 3), dtype="float32", name="image")])
    os.replace(tmp, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dir_size(path: Path, exclude: Callable[[Path], bool] = lambda p: False) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not exclude(p))


def write_report(staging: Path, plan: ExportPlan, rows: list[Row], n_images: int) -> None:
    """`export_report.md`, and the rows into the model card."""
    (staging / "export_report.md").write_text(render_report(plan.name, rows, plan.card, n_images))
    card_path = staging / serving.CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.exists() else {"model": plan.name, **plan.card}
    card["export"] = {r.format: {"file": r.file, "size_bytes": r.size_bytes, "latency_ms": round(r.latency_ms, 3),
                                 "max_abs_diff": r.max_abs_diff, "logit_error": r.logit_error, "agreement": r.agreement,
                                 "accuracy": r.accuracy} for r in rows}
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _int8_note(row: Row, keras_acc: float | None) -> str:
    ok = row.agreement >= INT8_AGREEMENT and (row.accuracy is None or keras_acc - row.accuracy <= INT8_DROP)
    return (f"; {'meets' if ok else 'misses'} the int8 target (>= {INT8_AGREEMENT:g}% agreement, "
            f"<= {INT8_DROP:g} point drop)")


def render_report(name: str, rows: list[Row], card: dict, n_images: int) -> str:
    """The export table as Markdown, with what it was measured on."""
    keras_acc = rows[0].accuracy
    lines = [
        f"# Export report: {name}",
        "",
        f"- weights: {card.get('weights', '-')}",
        f"- evaluation: {n_images} images of {card.get('data', '-')} "
        f"({card.get('input', {}).get('image_size', '-')} px); agreement, max |dp| and the logit error "
        "(relative to the logit range) are against the Keras model",
        f"- latency: batch 1, median, on this machine ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} threads), TensorFlow {tf.__version__}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "| format | file | size | latency (ms) | top-1 agreement | max abs dp | logit error | top-1 accuracy | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        acc = _fmt(r.accuracy, ".2f")
        if r.accuracy is not None and keras_acc is not None and r.format != "keras":
            acc += f" ({r.accuracy - keras_acc:+.2f})"
        note = r.note + (_int8_note(r, keras_acc) if r.format == "tflite int8" and r.agreement is not None else "")
        lines.append(f"| {r.format} | {r.file} | {r.size_bytes / 1e6:.2f} MB | {r.latency_ms:.2f} | "
                     f"{_fmt(r.agreement, '.2f')}% | {_fmt(r.max_abs_diff, '.1e')} | {_fmt(r.logit_error, '.1e')} | "
                     f"{acc} | {note} |")
    return "\n".join(lines) + "\n"
