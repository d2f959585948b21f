"""`keras-models export`: a trained run's weights into a measured export version.

Reads the run beside the weights (`config.yaml`: model, data, size, crop; `labels.txt`;
`metrics.csv`), takes evaluation and calibration images from its data, and hands them to the
library's `keras_models.export.export_model`, so the exported graph preprocesses exactly as
`keras-models eval` did.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from keras_models.export import ExportError, ExportPlan, export_model
from keras_models.export.measure import Images, prepare
from keras_models.export.serving import check_model_name, sample_image
from keras_models.factory import create_model
from keras_models.files import file_digest
from keras_models.models import get_entry
from keras_models.preprocessing import EvalTransform
from keras_models.run_files import check_labels, read_labels, read_run_files
from training import data as data_lib
from training.evaluate import run_settings
from training.optimize import QAT_SAVED_MODEL


def training_metrics(weights: Path) -> dict:
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


@dataclass
class RunExport:
    """What one `export` call works from: the weights, their run (if any), model, data and transform."""

    weights: str  # a file, "imagenet" or "none"
    model: str
    transform: EvalTransform
    source: data_lib.DataSource | None  # the evaluation data, when there is any

    @property
    def weights_file(self) -> Path | None:
        return Path(self.weights).expanduser() if self.weights not in ("imagenet", "none") else None

    @property
    def run_dir(self) -> Path | None:
        return self.weights_file.parent if self.weights_file is not None else None

    def class_names(self, labels: str | None) -> list[str]:
        """--labels, else labels.txt beside the weights, else the data's classes, else ImageNet's."""
        if labels:
            return read_labels(labels)
        if self.run_dir is not None and (self.run_dir / "labels.txt").is_file():
            return read_labels(self.run_dir / "labels.txt")
        if self.source is not None:
            return self.source.class_names
        if self.weights == "imagenet":
            from keras_models.imagenet import imagenet_classes

            return [n for _, n in imagenet_classes()]
        raise ExportError("--labels FILE is needed (no labels.txt beside the weights)")

    def eval_images(self, limit: int, num_classes: int) -> Images:
        """The validation images (labelled when the data's classes are the model's), or a sample image."""
        if self.source is None:  # e.g. ImageNet weights with no dataset: agreement only, no accuracy
            return prepare([sample_image()], self.transform)
        encoded, y = data_lib.encoded_images(self.source, "val", limit)
        return prepare(encoded, self.transform, y if self.source.num_classes == num_classes else None)

    def calibration(self, calibration: str | None, limit: int) -> list:
        """int8 calibration images: the training split of --calibration, else of the run's data."""
        if calibration is None and self.source is None:
            raise ExportError("int8 needs calibration images: pass --calibration DATA (e.g. folder:PATH)")
        same = calibration is None or (self.source is not None and calibration == self.source.name)
        source = self.source if same else data_lib.load(calibration)
        encoded, _ = data_lib.encoded_images(source, "train", limit)
        return list(prepare(encoded, self.transform).pixels)

    def card(self, num_classes: int) -> dict:
        entry = get_entry(self.model)
        t = self.transform
        card = {"model": self.model,
                "weights": str(self.weights_file.resolve()) if self.weights_file else self.weights,
                "num_classes": num_classes, "data": self.source.name if self.source is not None else None,
                "input": {"image_size": t.image_size, "crop_pct": t.crop_pct, "interpolation": t.interpolation,
                          "pixels": "RGB 0-255; short side resized to image_size/crop_pct, centre crop, "
                                    "normalised in-graph"},
                "family": entry.family}
        if self.weights_file is not None:
            card["weights_sha256"] = file_digest(self.weights_file)
            if metrics := training_metrics(self.weights_file):
                card["training"] = metrics
        return card

    def qat_saved_model(self) -> Path | None:
        """A `keras-models optimize --method qat|prune+qat` run: int8 keeps the ranges QAT learned."""
        qat = self.run_dir / QAT_SAVED_MODEL if self.run_dir is not None else None
        return qat if qat is not None and qat.is_dir() else None


def resolve(weights: str, model: str | None, data: str | None, image_size: int | None,
            crop_pct: float | None) -> RunExport:
    """Model, data and transform from the arguments, then the run's config.yaml, then the model's defaults."""
    is_file = weights not in ("imagenet", "none")
    if is_file and not Path(weights).expanduser().is_file():
        raise ExportError(f"weights file {weights} does not exist")
    has_run = is_file and (Path(weights).expanduser().parent / "config.yaml").is_file()
    if model is None and not has_run:
        raise ExportError("--model is needed (no config.yaml beside the weights to read it from)")
    if data or has_run:
        s = run_settings(weights if is_file else None, model=model, data=data, image_size=image_size,
                         crop_pct=crop_pct)
        return RunExport(weights, s.model, s.pipeline.eval_transform, s.source)
    entry = get_entry(model)
    transform = EvalTransform(image_size or entry.make_spec().default_size, crop_pct or entry.crop_pct,
                              entry.interpolation)
    return RunExport(weights, model, transform, None)


def export(*, weights: str = "imagenet", model: str | None = None, labels: str | None = None,
           formats: str = "saved_model,tflite", tflite_quant: str = "float32", data: str | None = None,
           calibration: str | None = None, calibration_images: int = 200, eval_images: int = 500,
           image_size: int | None = None, crop_pct: float | None = None, out: str = "saved_models",
           name: str | None = None, verbose: bool = True):
    """Export a weights file in every requested format, measured on its run's validation images."""
    from keras_models.export.release import check_formats

    formats_list = [f.strip() for f in formats.split(",") if f.strip()]
    quants = [q.strip() for q in tflite_quant.split(",") if q.strip()]
    check_formats(formats_list, quants)
    if name is not None:
        check_model_name(name)
    run = resolve(weights, model, data, image_size, crop_pct)
    class_names = run.class_names(labels)
    if labels:
        check_labels(class_names, read_run_files(weights).num_classes, labels)
    images = run.eval_images(eval_images, len(class_names))
    int8 = "tflite" in formats_list and "int8" in quants
    t = run.transform
    plan = ExportPlan(name=name or run.model, labels=class_names, crop_pct=t.crop_pct, interpolation=t.interpolation,
                      formats=formats_list, quantizations=quants,
                      calibration=run.calibration(calibration, calibration_images) if int8 else None,
                      card=run.card(len(class_names)), int8_saved_model=run.qat_saved_model() if int8 else None)
    if plan.int8_saved_model is not None:
        plan.card["int8"] = "quantization-aware training (keras-models optimize); ranges from the QAT model"
    net = create_model(run.model, weights=None if weights == "none" else weights, num_classes=len(class_names),
                       input_shape=(t.image_size, t.image_size, 3))
    version_dir, rows = export_model(net, out, plan, images, verbose=verbose)
    if verbose:
        print((version_dir / "export_report.md").read_text())
        print(f"wrote {version_dir}")
    return version_dir, rows
