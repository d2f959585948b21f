"""`keras-models verify`: re-check every file of an export version against its Keras model.

The SavedModel is loaded in a fresh process that never imports keras_models (`serving_check.py`:
signatures, REST and gRPC on 127.0.0.1); TFLite and ONNX files are run here. Every check is a
row (name, ok, detail); any failure is an `ExportError` naming the failed checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_models.export import lite, serving
from keras_models.export.lite import ExportError
from keras_models.export.measure import Images, compare, logit_error, prepare
from keras_models.export.metadata import read_metadata
from keras_models.export.release import TOLERANCE
from keras_models.preprocessing import EvalTransform


def verify(version_dir: str | Path, *, weights: str | None = None, verbose: bool = True) -> list[dict]:
    """Check every file of an export version against the Keras model; returns (name, ok, detail) rows."""
    version_dir = resolve_version(Path(version_dir).expanduser())
    card = read_card(version_dir)
    weights = weights or card.get("weights")
    if weights not in ("imagenet", None) and not Path(weights).is_file():
        raise ExportError(f"the Keras weights {weights} are gone; pass --weights FILE to compare against")
    spec = card["input"]
    transform = EvalTransform(spec["image_size"], spec["crop_pct"], spec["interpolation"])
    images = prepare(_warmup_images(version_dir) + [serving.sample_image()], transform)
    checks = Checks(verbose)
    if verbose:
        print(f"verifying {version_dir} ({card['model']}, {len(images.encoded)} images) against {weights}")
    reference = _reference(card, weights, images)
    missing = check_listed_files(checks, version_dir, card)
    if (version_dir / "saved_model.pb").is_file() and "saved_model" not in missing:
        check_saved_model(checks, version_dir, images, reference)
    for path in sorted(version_dir.glob("*.tflite")):
        checks.run(path.name, lambda path=path: check_tflite(checks, path, version_dir, card, images, reference))
    for path in sorted(version_dir.glob("*.onnx")):
        checks.run(path.name, lambda path=path: check_onnx(checks, path, images, reference))
    if not checks.rows:
        raise ExportError(f"{version_dir} holds no model to verify (no SavedModel, .tflite or .onnx file)")
    checks.raise_on_failure()
    if verbose:
        print(f"all {len(checks.rows)} checks passed")
        report = version_dir / "export_report.md"
        if report.is_file():
            print("\n" + report.read_text())
    return checks.rows


def resolve_version(path: Path) -> Path:
    """An export version folder, or a model folder (its latest version); it must hold a model card."""
    if not (path / serving.CARD_FILE).is_file() and serving.versions(path):
        path = path / str(serving.versions(path)[-1])
    if not (path / serving.CARD_FILE).is_file():
        raise ExportError(f"{path} is not a keras-models export (no {serving.CARD_FILE})")
    return path


def read_card(version_dir: Path) -> dict:
    path = version_dir / serving.CARD_FILE
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"{path} is unreadable ({type(e).__name__}): the export is damaged; export again") from None
    if not isinstance(card, dict) or not isinstance(card.get("input"), dict) or "model" not in card:
        raise ExportError(f"{path} is not a keras-models model card (no model or input): export again")
    return card


def listed_files(card: dict) -> dict[str, list[str]]:
    """What the export wrote, by format, from the model card (`export` rows; a bare `saved_model()` card
    lists its signatures): every one of these must be there."""
    rows = card.get("export") or ({"saved_model": {"file": "."}} if "signatures" in card else {})
    files = {}
    for fmt, row in rows.items():
        if fmt == "saved_model":
            files[fmt] = ["saved_model.pb", "variables/variables.index"]
        elif fmt != "keras" and isinstance(row, dict) and row.get("file"):
            files[fmt] = [row["file"]]
    return files


def check_listed_files(checks: Checks, version_dir: Path, card: dict) -> set[str]:
    """A failed check for every file the card lists that is gone; returns the formats missing one."""
    missing = set()
    for fmt, names in listed_files(card).items():
        gone = [n for n in names if not (version_dir / n).is_file()]
        if gone:
            missing.add(fmt)
            checks.add(f"{fmt} files", False, f"{', '.join(gone)} listed in {serving.CARD_FILE} but missing")
    return missing


class Checks:
    """The rows of one verification, printed as they come."""

    def __init__(self, verbose: bool):
        self.rows: list[dict] = []
        self.verbose = verbose

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.rows.append({"name": name, "ok": bool(ok), "detail": detail})
        if self.verbose:
            print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")

    def run(self, name: str, check) -> None:
        """`check()`, whose failure to even run (a truncated or foreign file) is a failed check naming it."""
        try:
            check()
        except Exception as e:  # the runtimes raise many types for a damaged file
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.add(name, False, f"cannot be loaded: {reason}")

    def within(self, name: str, diff: float, limit: float, detail: str) -> None:
        self.add(name, diff <= limit, f"{detail}logit error {diff:.1e} of the logit range (limit {limit:g})")

    def raise_on_failure(self) -> None:
        failed = [r["name"] for r in self.rows if not r["ok"]]
        if failed:
            raise ExportError(f"{len(failed)} of {len(self.rows)} checks failed: {', '.join(failed)}")


def _reference(card: dict, weights: str | None, images: Images) -> np.ndarray:
    """The Keras model's probabilities on the images (the export must reproduce them)."""
    from keras_models.factory import create_model

    size = card["input"]["image_size"]
    net = create_model(card["model"], weights=weights, num_classes=card["num_classes"], input_shape=(size, size, 3))
    return tf.function(lite.ensure_probabilities(net))(tf.constant(images.pixels)).numpy()


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


def check_saved_model(checks: Checks, version_dir: Path, images: Images, reference: np.ndarray) -> None:
    """The serving contract in a fresh process (`serving_check.py`), then its outputs against Keras."""
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
            checks.add(f"saved_model {row['name']}", row["ok"], row["detail"] or "fresh process")
        probs = np.load(out_dir / "outputs.npz")["probabilities"]
    checks.within("saved_model vs Keras", logit_error(probs, reference), TOLERANCE["saved_model"],
                  f"{len(probs)} images, ")


def check_tflite(checks: Checks, path: Path, version_dir: Path, card: dict, images: Images,
                 reference: np.ndarray) -> None:
    """Builtin ops only, metadata (labels, input size), outputs against Keras (float32: within tolerance)."""
    data = path.read_bytes()
    custom = lite.custom_ops(data)
    checks.add(f"{path.name} builtin ops only", not custom, ", ".join(custom) or "no custom or Flex ops")
    meta = read_metadata(data)
    labels_file = version_dir / "assets" / "labels.txt"
    expected = labels_file.read_text().splitlines() if labels_file.is_file() else meta["labels"]
    size = card["input"]["image_size"]
    labels_ok = meta["labels"] == expected and len(meta["labels"]) == card["num_classes"]
    checks.add(f"{path.name} metadata", labels_ok and meta["image_size"] == (size, size),
               f"{len(meta['labels'])} labels, {meta['image_size']} input, mean {meta['mean']} std {meta['std']}")
    probs = lite.LiteModel(path)(images.pixels)
    diff, agree, _ = compare(probs, reference)
    if path.stem.endswith("_float32"):
        checks.within(f"{path.name} vs Keras", logit_error(probs, reference), TOLERANCE["tflite float32"], "")
    else:
        checks.add(f"{path.name} vs Keras", True, f"top-1 agreement {agree:.0f}%, max |dp| {diff:.1e} (reported)")


def check_onnx(checks: Checks, path: Path, images: Images, reference: np.ndarray) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(None, {session.get_inputs()[0].name: images.pixels})[0]
    checks.within(f"{path.name} vs Keras", logit_error(probs, reference), TOLERANCE["onnx"],
                  "onnxruntime, ")
