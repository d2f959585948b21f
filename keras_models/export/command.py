"""`keras-models export` and `keras-models verify`, from a weights file (and its run) to checked files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_models.export import bundle, lite, serving
from keras_models.export.lite import ExportError
from keras_models.export.metadata import read_metadata

QAT_SAVED_MODEL = "qat_saved_model"  # written by `keras-models optimize` beside its weights


def read_labels(path: str | Path) -> list[str]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ExportError(f"labels file {path} does not exist")
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not labels:
        raise ExportError(f"labels file {path} is empty: one class name per line")
    return labels


def _training_metrics(weights: Path) -> dict:
    """The best epoch from the run's metrics.csv, for the model card."""
    path = weights.parent / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    best = max(rows, key=lambda r: float(r["val_top1"] or -1))
    return {"epochs": len(rows), "best_epoch": int(best["epoch"]), "val_top1": float(best["val_top1"]),
            "val_top5": float(best["val_top5"])}


def export(*, weights: str = "imagenet", model: str | None = None, labels: str | None = None,
           formats: str = "saved_model,tflite", tflite_quant: str = "float32", data: str | None = None,
           calibration: str | None = None, calibration_images: int = 200, eval_images: int = 500,
           image_size: int | None = None, crop_pct: float | None = None, out: str = "saved_models",
           name: str | None = None, verbose: bool = True) -> tuple[Path, list[bundle.Row]]:
    """Export a weights file in every requested format, measured on its run's validation images."""
    from keras_models.imagenet import imagenet_classes
    from keras_models.registry import create_model, get_entry
    from training import data as data_lib
    from training.evaluate import run_settings

    formats_list = [f.strip() for f in formats.split(",") if f.strip()]
    quants = [q.strip() for q in tflite_quant.split(",") if q.strip()]
    bundle.check_formats(formats_list, quants)
    is_file = weights not in ("imagenet", "none")
    if is_file and not Path(weights).expanduser().is_file():
        raise ExportError(f"weights file {weights} does not exist")
    run_dir = Path(weights).expanduser().parent if is_file else None
    has_run = run_dir is not None and (run_dir / "config.yaml").is_file()
    if model is None and not has_run:
        raise ExportError("--model is needed (no config.yaml beside the weights to read it from)")

    source = None
    if data or has_run:
        settings = run_settings(weights if is_file else None, model=model, data=data, image_size=image_size,
                                crop_pct=crop_pct)
        model, source, pipeline = settings.model, settings.source, settings.pipeline
    else:  # e.g. ImageNet weights with no dataset: agreement on a sample image only, no accuracy
        entry = get_entry(model)
        pipeline = data_lib.Pipeline(image_size=image_size or entry.spec().default_size,
                                     crop_pct=crop_pct or entry.crop_pct, interpolation=entry.interpolation)
    entry = get_entry(model)

    if labels:
        class_names = read_labels(labels)
    elif run_dir is not None and (run_dir / "labels.txt").is_file():
        class_names = read_labels(run_dir / "labels.txt")
    elif source is not None:
        class_names = source.class_names
    elif weights == "imagenet":
        class_names = [n for _, n in imagenet_classes()]
    else:
        raise ExportError("--labels FILE is needed (no labels.txt beside the weights)")

    if source is not None:
        encoded, y = bundle.encoded_images(source, "val", eval_images)
        images = bundle.prepare(encoded, pipeline, y if source.num_classes == len(class_names) else None)
    else:
        images = bundle.prepare([serving.sample_image()], pipeline)
    calib = None
    if "tflite" in formats_list and "int8" in quants:
        if calibration is None and source is None:
            raise ExportError("int8 needs calibration images: pass --calibration DATA (e.g. folder:PATH)")
        calib_source = source if calibration is None or (source is not None and calibration == source.name) \
            else data_lib.load(calibration)
        calib_encoded, _ = bundle.encoded_images(calib_source, "train", calibration_images)
        calib = list(bundle.prepare(calib_encoded, pipeline).pixels)

    size = pipeline.image_size
    net = create_model(model, weights=None if weights == "none" else weights, num_classes=len(class_names),
                       input_shape=(size, size, 3))
    card = {"model": model, "weights": str(Path(weights).expanduser().resolve()) if is_file else weights,
            "num_classes": len(class_names), "data": source.name if source is not None else None,
            "input": {"image_size": size, "crop_pct": pipeline.crop_pct, "interpolation": entry.interpolation,
                      "pixels": "RGB 0-255; short side resized to image_size/crop_pct, centre crop, "
                                "normalised in-graph"},
            "family": entry.family}
    if is_file:
        card["weights_sha256"] = bundle.sha256(Path(weights).expanduser())
        if metrics := _training_metrics(Path(weights).expanduser()):
            card["training"] = metrics
    # A `keras-models optimize --method qat|prune+qat` run: int8 keeps the ranges QAT learned.
    qat_dir = run_dir / QAT_SAVED_MODEL if run_dir is not None and (run_dir / QAT_SAVED_MODEL).is_dir() else None
    if qat_dir is not None and "int8" in quants:
        card["int8"] = "quantization-aware training (keras-models optimize); ranges from the QAT model"
    version_dir, rows = bundle.export_model(
        net, out, name or model, labels=class_names, images=images, calibration=calib, crop_pct=pipeline.crop_pct,
        interpolation=entry.interpolation, formats=formats_list, quantizations=quants, card=card, verbose=verbose,
        int8_saved_model=qat_dir)
    if verbose:
        print((version_dir / "export_report.md").read_text())
        print(f"wrote {version_dir}")
    return version_dir, rows


# --- verify --------------------------------------------------------------------------------
def _warmup_images(version_dir: Path) -> list[bytes]:
    """The encoded images of the largest `image_bytes` warm-up request (real evaluation images)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / "assets.extra" / serving.WARMUP_FILE
    best: list[bytes] = []
    if path.is_file():
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            if "image_bytes" in request.inputs:
                batch = list(tf.make_ndarray(request.inputs["image_bytes"]))
                best = batch if len(batch) > len(best) else best
    return best


def verify(version_dir: str | Path, *, weights: str | None = None, verbose: bool = True) -> list[dict]:
    """Check every file of an export version against the Keras model; returns (name, ok, detail) rows."""
    from keras_models.registry import create_model
    from training.data import Pipeline

    version_dir = Path(version_dir).expanduser()
    if not (version_dir / serving.CARD_FILE).is_file() and serving.versions(version_dir):
        version_dir = version_dir / str(serving.versions(version_dir)[-1])  # a model folder: its latest version
    card_path = version_dir / serving.CARD_FILE
    if not card_path.is_file():
        raise ExportError(f"{version_dir} is not a keras-models export (no {serving.CARD_FILE})")
    card = json.loads(card_path.read_text())
    weights = weights or card.get("weights")
    if weights not in ("imagenet", None) and not Path(weights).is_file():
        raise ExportError(f"the Keras weights {weights} are gone; pass --weights FILE to compare against")
    spec = card["input"]
    pipeline = Pipeline(image_size=spec["image_size"], crop_pct=spec["crop_pct"], interpolation=spec["interpolation"])
    encoded = _warmup_images(version_dir) + [serving.sample_image()]
    images = bundle.prepare(encoded, pipeline)
    net = create_model(card["model"], weights=weights, num_classes=card["num_classes"],
                       input_shape=(spec["image_size"],) * 2 + (3,))
    reference = tf.function(lite.ensure_probabilities(net))(tf.constant(images.pixels)).numpy()
    rows: list[dict] = []

    def add(name: str, ok: bool, detail: str) -> None:
        rows.append({"name": name, "ok": bool(ok), "detail": detail})
        if verbose:
            print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")

    if verbose:
        print(f"verifying {version_dir} ({card['model']}, {len(images.encoded)} images) against {weights}")
    if (version_dir / "saved_model.pb").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            image_dir, out_dir = Path(tmp) / "images", Path(tmp) / "out"
            image_dir.mkdir()
            for i, data in enumerate(images.encoded):
                (image_dir / f"{i:03d}.img").write_bytes(data)
            # -I: no script folder on sys.path, no user site: nothing but TF and the serving protos.
            proc = subprocess.run([sys.executable, "-I", str(Path(__file__).with_name("serving_check.py")),
                                   str(version_dir), str(image_dir), str(out_dir)], capture_output=True, text=True)
            if not (out_dir / "checks.json").is_file():
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise ExportError(f"the serving check process failed: {tail}")
            for row in json.loads((out_dir / "checks.json").read_text()):
                add(f"saved_model {row['name']}", row["ok"], row["detail"] or "fresh process")
            probs = np.load(out_dir / "outputs.npz")["probabilities"]
        diff = float(np.abs(probs - reference).max())
        add("saved_model vs Keras", diff <= bundle.TOLERANCE["saved_model"],
            f"max |dp| {diff:.1e} on {len(probs)} images (limit {bundle.TOLERANCE['saved_model']:g})")
    labels_file = version_dir / "assets" / "labels.txt"
    for path in sorted(version_dir.glob("*.tflite")):
        data = path.read_bytes()
        custom = lite.custom_ops(data)
        add(f"{path.name} builtin ops only", not custom, ", ".join(custom) or "no custom or Flex ops")
        meta = read_metadata(data)
        labels_ok = meta["labels"] == (labels_file.read_text().splitlines() if labels_file.is_file()
                                       else meta["labels"]) and len(meta["labels"]) == card["num_classes"]
        add(f"{path.name} metadata", labels_ok and meta["image_size"] == (spec["image_size"],) * 2,
            f"{len(meta['labels'])} labels, {meta['image_size']} input, mean {meta['mean']} std {meta['std']}")
        diff, agree, _ = bundle.compare(lite.LiteModel(path)(images.pixels), reference)
        if path.stem.endswith("_float32"):
            add(f"{path.name} vs Keras", diff <= bundle.TOLERANCE["tflite float32"],
                f"max |dp| {diff:.1e} (limit {bundle.TOLERANCE['tflite float32']:g})")
        else:
            add(f"{path.name} vs Keras", True, f"top-1 agreement {agree:.0f}%, max |dp| {diff:.1e} (reported)")
    for path in sorted(version_dir.glob("*.onnx")):
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probs = session.run(None, {session.get_inputs()[0].name: images.pixels})[0]
        diff = float(np.abs(probs - reference).max())
        add(f"{path.name} vs Keras", diff <= bundle.TOLERANCE["onnx"], f"onnxruntime, max |dp| {diff:.1e}")
    failed = [r["name"] for r in rows if not r["ok"]]
    if failed:
        raise ExportError(f"{len(failed)} of {len(rows)} checks failed: {', '.join(failed)}")
    if verbose:
        print(f"all {len(rows)} checks passed")
        report = version_dir / "export_report.md"
        if report.is_file():
            print("\n" + report.read_text())
    return rows
