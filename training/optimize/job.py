"""One optimize run, in its own process: fine-tune a tf_keras twin with tfmot, convert, measure.

Outputs (in `--out`, published by renaming a staging folder once everything is measured):
`best.weights.h5` (Keras 3, the optimized float weights), `config.yaml` and `labels.txt`
(so `eval` and `export` read the run like any other), `<model>_<method>.tflite`,
`qat_saved_model/` for the QAT methods (`export --tflite-quant int8` converts from it, keeping
the learned ranges), `optimize_report.md` and `optimize.json`.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras
import yaml
from tqdm.auto import tqdm

from keras_models.export import lite
from keras_models.export.measure import Images, batched, compare, median_ms, prepare
from keras_models.factory import create_model
from keras_models.files import ensure_space, owned_temp_prefix, remove_stale, weights_bytes
from keras_models.models import get_entry
from training.data import GOOD, encoded_images
from training.evaluate import run_settings
from training.optimize import METHODS, QAT_SAVED_MODEL, OptimizeError, OptimizeOptions
from training.optimize import methods as M
from training.optimize.twin import build_twin, copy_weights

SCAN_IMAGES = 128  # calibration images the pruning sensitivity scan predicts on


@dataclasses.dataclass
class Result:
    """One row of the report: a TFLite model measured on the validation images."""

    name: str
    file: str
    quantization: str
    accuracy: float
    size_bytes: int
    gzip_bytes: int
    latency_ms: float
    note: str = ""


class Job:
    """One optimize run's inputs, built once: the source model and its twin, images, data, fine-tuning."""

    def __init__(self, opts: OptimizeOptions):
        self.opts = opts
        self.settings = settings = run_settings(opts.weights, model=opts.model, data=opts.data,
                                                image_size=opts.image_size)
        self.source, pipeline, run_cfg = settings.source, settings.pipeline, settings.run
        if run_cfg is not None:  # fine-tune with the run's own augmentation
            pipeline = dataclasses.replace(pipeline, crop_scale=tuple(run_cfg.crop_scale), hflip=run_cfg.hflip)
        self.entry, self.size, classes = get_entry(settings.model), settings.image_size, self.source.num_classes
        self.build_options = {"input_shape": (self.size, self.size, 3), "num_classes": classes,
                              "classifier_activation": None}
        self.model = create_model(settings.model, weights=opts.weights, **self.build_options)
        self.twin = self.new_twin()
        _check_twin(self.model, self.twin, self.size)
        encoded, labels = encoded_images(self.source, "val", opts.eval_images or self.source.num_val)
        self.images = prepare(encoded, pipeline.eval_transform, labels)
        calib_encoded, _ = encoded_images(self.source, "train", opts.calibration_images)
        self.calibration = list(prepare(calib_encoded, pipeline.eval_transform).pixels)
        self.steps = opts.steps_per_epoch or max(1, self.source.num_train // opts.batch_size)
        # (images, targets, sample weight): an unreadable file (or eval padding) weighs nothing
        self.train = pipeline.train_dataset(self.source, opts.batch_size).map(
            lambda x, y, status: (tf.cast(x, tf.float32), y, tf.cast(status == GOOD, tf.float32)))
        self.val = pipeline.eval_dataset(self.source, 128).map(
            lambda x, y, status: (x, tf.one_hot(y, classes), tf.cast(status == GOOD, tf.float32)))
        self.label_smoothing = run_cfg.label_smoothing if run_cfg and run_cfg.label_smoothing is not None else 0.1
        if opts.distill:  # targets: the float source model's probabilities on the same augmented images
            teacher = self.new_twin()  # its own variables: tfmot wrappers share layers
            self.train = self.train.map(lambda x, y, w: (x, tf.nn.softmax(teacher(x, training=False)), w))
            self.label_smoothing = 0.0
        self.history: dict = {}
        self.info: dict = {}  # notes for the report (sparsity, BatchNorm statistics, ...)
        self.layer_sparsity: dict | None = None
        self.staging: Path | None = None  # the output folder being written (run)
        self.int8_epochs: Int8Epochs | None = None  # QAT's scored epochs

    @property
    def labels(self) -> list[str]:
        return self.source.class_names

    def new_twin(self) -> tf_keras.Model:
        """A tf_keras twin holding the source model's weights."""
        twin = build_twin(self.entry.make_spec(), **self.build_options)
        copy_weights(self.model, twin)
        return twin

    def fine_tune(self, net: tf_keras.Model, phase: str, callbacks=(), keep_best: _KeepBest | None = None) -> dict:
        opts = self.opts
        print(f"{phase}: {opts.epochs} epochs x {self.steps} steps, lr {opts.lr} (cosine), batch {opts.batch_size}")
        schedule = tf_keras.optimizers.schedules.CosineDecay(opts.lr, opts.epochs * self.steps)
        sgd = tf_keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
        if keep_best is not None:  # the best epoch, as training keeps best.weights.h5
            callbacks = [*callbacks, keep_best]
        net.compile(optimizer=sgd, loss=tf_keras.losses.CategoricalCrossentropy(
                        from_logits=True, label_smoothing=self.label_smoothing),
                    metrics=[tf_keras.metrics.CategoricalAccuracy(name="top1")])
        history = net.fit(self.train, epochs=opts.epochs, steps_per_epoch=self.steps, validation_data=self.val,
                          callbacks=list(callbacks), verbose=opts.verbose)
        return {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}

    def batch_norm_statistics(self, net: tf_keras.Model) -> str:
        """Keep the fine-tuned BatchNorm statistics or re-estimate them, whichever validates better.

        Re-estimating is what rescues a short run (one-shot 50% pruning: 35% accuracy with stale
        statistics, 95% re-estimated); after a long one the fine-tuned statistics already follow
        the final weights, and the choice is the epoch selection's, on the same validation images.
        """
        before, weights = _keras_top1(net, self.images), net.get_weights()
        M.recalibrate_batch_norm(net, (x for x, *_ in self.train.take(self.steps)))
        if _keras_top1(net, self.images) >= before:
            return "re-estimated"
        net.set_weights(weights)
        return "fine-tuned"

    def source_rows(self, staging: Path) -> list[Result]:
        """The source weights through float32 and post-training int8: what the method is measured against."""
        with lite.inference_saved_model(self.model) as converter_input:  # one converter input, two conversions
            float32 = lite.tflite(self.model, staging / "source_float32.tflite", "float32", labels=self.labels,
                                  saved_model_dir=converter_input)
            int8 = lite.tflite(self.model, staging / "source_int8.tflite", "int8", labels=self.labels,
                               calibration=self.calibration, saved_model_dir=converter_input)
        return [_measure("float32 (source weights)", float32, self.images),
                _measure("int8 post-training (source weights)", int8, self.images)]

    def float_rows(self, staging: Path, path: Path, tag: str, note: str) -> list[Result]:
        """Compressed float weights as float32, and through post-training int8."""
        name = self.settings.model
        with lite.inference_saved_model(self.model) as converter_input:
            lite.tflite(self.model, path, "float32", labels=self.labels, name=name, saved_model_dir=converter_input)
            int8 = lite.tflite(self.model, staging / f"{name}_{tag}_int8.tflite", "int8", labels=self.labels,
                               calibration=self.calibration, name=name, saved_model_dir=converter_input)
        method = self.opts.method
        return [_measure(f"{method} (float32)", path, self.images, note),
                _measure(f"{method} + int8 post-training", int8, self.images, note)]

    def qat_rows(self, staging: Path, path: Path, note: str) -> list[Result]:
        """The best QAT epoch through its own ranges: its qat_saved_model/ (which `export` converts
        from too) and its int8 flatbuffer, converted once when the epoch was scored."""
        flatbuffer = self.int8_epochs.publish(staging / QAT_SAVED_MODEL)
        lite.tflite(self.model, path, "int8", labels=self.labels, name=self.settings.model, flatbuffer=flatbuffer)
        return [_measure(f"{self.opts.method} (int8)", path, self.images, note)]


class Int8Epochs:
    """What QAT is for, per epoch: the int8 TFLite converted from the epoch's fake-quant ranges and
    its accuracy (`_KeepBest`'s score). The best epoch's SavedModel and flatbuffer are kept, so the
    published model is the one scored, not converted a second time (~30 s at 32 px)."""

    def __init__(self, job: Job, scratch: Path):
        self.job, self.scratch = job, scratch
        self.latest: Path | None = None  # the epoch just scored
        self.best: Path | None = None

    def score(self, net: tf_keras.Model, logs: dict) -> float:
        if self.latest is not None and self.latest != self.best:
            shutil.rmtree(self.latest)
        self.latest = Path(tempfile.mkdtemp(prefix="epoch-", dir=self.scratch))
        _write_qat_saved_model(net, self.job.size, self.latest / QAT_SAVED_MODEL)
        flatbuffer = lite.convert(self.job.model, "int8", calibration=self.job.calibration,
                                  saved_model_dir=str(self.latest / QAT_SAVED_MODEL))
        (self.latest / "int8.tflite").write_bytes(flatbuffer)
        return _tflite_top1(self.latest / "int8.tflite", self.job.images)

    def keep_latest(self) -> None:
        if self.best is not None:
            shutil.rmtree(self.best)
        self.best = self.latest

    def publish(self, saved_model: Path) -> bytes:
        """Move the best epoch's SavedModel to `saved_model`; its flatbuffer; the scratch removed."""
        (self.best / QAT_SAVED_MODEL).rename(saved_model)
        flatbuffer = (self.best / "int8.tflite").read_bytes()
        shutil.rmtree(self.scratch)
        return flatbuffer


class Prune:
    """Magnitude pruning to `--sparsity` (per-layer from a sensitivity scan, or uniform), blocks of inputs."""

    quantized = False

    def optimize(self, job: Job, net: tf_keras.Model) -> tf_keras.Model:
        opts, steps = job.opts, job.steps
        sparsity: float | dict[str, float] = opts.sparsity
        if opts.prune_allocation == "sensitivity":
            bar = lambda layers: tqdm(layers, desc="sensitivity scan", unit="layer", disable=not opts.verbose)
            sparsity = M.allocate_sparsity(net, np.stack(job.calibration[:SCAN_IMAGES]), opts.sparsity,
                                           opts.prune_block, bar)
            job.layer_sparsity = {name: round(s, 3) for name, s in sparsity.items()}
        pruned, callbacks, final_step = M.apply_pruning(net, sparsity, opts.epochs * steps, opts.prune_block)
        # The best epoch once every mask is final (Keras validation accuracy of the pruned model).
        best = _KeepBest(lambda _, logs: 100 * logs["val_top1"], first_epoch=math.ceil(final_step / steps) - 1)
        job.history["prune"] = job.fine_tune(pruned, f"pruning to {opts.sparsity:.0%} sparsity", callbacks, best)
        optimized = M.strip(pruned)
        job.info["batch_norm"] = job.batch_norm_statistics(optimized)
        job.info["sparsity"] = round(M.sparsity_of(optimized), 4)
        return optimized


class Cluster:
    """Weight clustering to `--clusters` distinct values per kernel."""

    quantized = False

    def optimize(self, job: Job, net: tf_keras.Model) -> tf_keras.Model:
        clustered = M.apply_clustering(net, job.opts.clusters)
        job.history["cluster"] = job.fine_tune(clustered, f"clustering to {job.opts.clusters} values per kernel")
        optimized = M.strip(clustered)
        job.info["batch_norm"] = job.batch_norm_statistics(optimized)
        job.info["unique_values_per_kernel"] = M.unique_values(optimized)
        return optimized


class QAT:
    """Quantization-aware training from calibrated ranges; keeps the epoch whose int8 TFLite validates best."""

    quantized = True

    def __init__(self, preserve_sparsity: bool = False):
        self.preserve_sparsity = preserve_sparsity

    def optimize(self, job: Job, net: tf_keras.Model) -> tf_keras.Model:
        calibration = job.calibration
        batches = [np.stack(calibration[k:k + 32]) for k in range(0, len(calibration), 32)]
        qat = M.apply_qat(net, preserve_sparsity=self.preserve_sparsity, calibration=batches)
        # The epoch whose converted int8 TFLite validates best (fake quantization differs by an image or two).
        job.int8_epochs = epochs = Int8Epochs(job, Path(tempfile.mkdtemp(prefix=".int8-epochs-", dir=job.staging)))
        best = _KeepBest(epochs.score, log_as="val_int8_top1", on_best=epochs.keep_latest)
        job.history["qat"] = job.fine_tune(qat, "quantization-aware training", keep_best=best)
        if self.preserve_sparsity:
            job.info["sparsity"] = round(M.sparsity_of(qat), 4)
        return qat


class Chain:
    """Methods one after the other (prune+qat: prune, then QAT that keeps the zeros)."""

    def __init__(self, *methods):
        self.methods = methods
        self.quantized = methods[-1].quantized

    def optimize(self, job: Job, net: tf_keras.Model) -> tf_keras.Model:
        for method in self.methods:
            net = method.optimize(job, net)
        return net


STRATEGIES = {"qat": QAT(), "prune": Prune(), "cluster": Cluster(), "prune+qat": Chain(Prune(), QAT(True))}
assert tuple(STRATEGIES) == METHODS, "every method has one strategy"


def run(opts: OptimizeOptions) -> dict:
    started = time.perf_counter()
    job = Job(opts)
    method = STRATEGIES[opts.method]
    out = Path(opts.out)
    remove_stale(out.parent, out.name)  # what a killed optimize run of the same --out left
    job.staging = staging = Path(tempfile.mkdtemp(prefix=owned_temp_prefix(out.name), dir=out.parent))
    try:
        rows = job.source_rows(staging)
        optimized = method.optimize(job, job.twin)
        copy_weights(optimized, job.model)  # the float weights, for eval/export like any run
        ensure_space(staging, weights_bytes(job.model), "best.weights.h5")
        job.model.save_weights(staging / "best.weights.h5")
        keras_top1 = _keras_top1(optimized, job.images)
        tag = opts.method.replace("+", "_")
        path = staging / f"{job.settings.model}_{tag}.tflite"
        note = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in job.info.items())
        rows += (job.qat_rows(staging, path, note) if method.quantized
                 else job.float_rows(staging, path, tag, note))
        _write_run_files(staging, opts, job.settings, job.labels)
        result = _result(job, rows, keras_top1, time.perf_counter() - started)
        report = render_report(result)
        (staging / "optimize_report.md").write_text(report)
        (staging / "optimize.json").write_text(json.dumps(result, indent=2) + "\n")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if opts.verbose:
        print(report)
        print(f"wrote {out}/ (best.weights.h5, {path.name}, optimize_report.md)")
    return result


def _result(job: Job, rows: list[Result], keras_top1: float, seconds: float) -> dict:
    opts, prune = job.opts, "prune" in job.opts.method
    return {"model": job.settings.model, "method": opts.method, "weights": str(opts.weights),
            "data": job.source.name, "image_size": job.size, "epochs": opts.epochs, "lr": opts.lr,
            "batch_size": opts.batch_size, "distill": opts.distill,
            "sparsity": opts.sparsity if prune else None,
            "prune_block": opts.prune_block if prune else None,
            "prune_allocation": opts.prune_allocation if prune else None,
            "clusters": opts.clusters if opts.method == "cluster" else None, "eval_images": len(job.images.pixels),
            "keras_top1": keras_top1, **job.info,
            "layer_sparsity": job.layer_sparsity, "history": job.history,
            "rows": [dataclasses.asdict(r) for r in rows], "seconds": round(seconds, 1)}


class _KeepBest(tf_keras.callbacks.Callback):
    """Score every epoch's model from `first_epoch` on (0-based) and restore the best when training
    ends; a new score is logged into the history as `log_as`; `on_best` is called at each new best."""

    def __init__(self, score: Callable[[tf_keras.Model, dict], float], first_epoch: int = 0,
                 log_as: str | None = None, on_best: Callable[[], None] | None = None):
        super().__init__()
        self.score, self.first_epoch, self.log_as, self.on_best = score, first_epoch, log_as, on_best
        self.best, self.weights = -1.0, None

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if epoch < self.first_epoch:
            return
        value = self.score(self.model, logs)
        if self.log_as:
            logs[self.log_as] = value
        if value > self.best:
            self.best, self.weights = value, self.model.get_weights()
            if self.on_best is not None:
                self.on_best()
        print(f"epoch {epoch + 1}: score {value:.2f}% (best {self.best:.2f}%)")

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)


def _check_twin(model, twin, size: int) -> None:
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    diff = float(np.abs(np.asarray(model(x, training=False)) - twin(x, training=False).numpy()).max())
    if diff > 1e-3:
        raise OptimizeError(f"the tf_keras twin of {model.name} differs from the Keras 3 model by {diff:.3g}")


def _keras_top1(net: tf_keras.Model, images: Images) -> float:
    logits = batched(lambda x: net(x, training=False).numpy(), images.pixels)
    return float((logits.argmax(1) == images.labels).mean() * 100)


class _Probabilities(tf.Module):
    """Tracks the network's variables only: a tracked tf_keras model makes SavedModel trace every
    layer's call for Keras reloading (about 60 s for ReXNet under QAT), which the converter never reads."""

    def __init__(self, net: tf_keras.Model):
        super().__init__()
        self.weights = list(net.variables)
        self._forward = lambda image: net(image, training=False)  # a lambda is not tracked

    def __call__(self, image):
        return {"probabilities": tf.nn.softmax(self._forward(image))}


def _write_qat_saved_model(net: tf_keras.Model, size: int, path: Path) -> None:
    """`image (1xSxSx3, 0-255) -> probabilities` with the fake-quant ranges the converter keeps."""
    module = _Probabilities(net)
    serve = tf.function(module.__call__, input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def _tflite_top1(path: Path, images: Images) -> float:
    probs = lite.LiteModel(path)(images.pixels)
    return compare(probs, probs, images.labels)[2]


def _measure(name: str, path: Path, images: Images, note: str = "") -> Result:
    runner = lite.LiteModel(path)
    data = path.read_bytes()
    x1 = images.pixels[:1]
    quant = "int8" if runner.input["dtype"] == np.uint8 else "float32"
    return Result(name, path.name, quant, _tflite_top1(path, images), len(data), len(gzip.compress(data, 9)),
                  median_ms(lambda: runner(x1)), note)


def _write_run_files(staging: Path, opts: OptimizeOptions, settings, class_names: list[str]) -> None:
    """config.yaml (the source run's, so eval/export resolve the same data and size) and labels."""
    source_config = Path(opts.weights).parent / "config.yaml"
    config = yaml.safe_load(source_config.read_text()) if source_config.is_file() else {
        "model": settings.model, "data": settings.source.name, "image_size": settings.image_size,
        "crop_pct": settings.crop_pct}
    config["out"] = str(opts.out)
    config.setdefault("extra", {})["optimized"] = {"method": opts.method, "from": str(opts.weights),
                                                    "epochs": opts.epochs, "lr": opts.lr}
    (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (staging / "labels.txt").write_text("\n".join(class_names) + "\n")


def render_report(result: dict) -> str:
    rows = [Result(**r) for r in result["rows"]]
    base = rows[0]
    lines = [f"# {result['model']}: {result['method']} on {result['data']} ({result['image_size']} px, "
             f"{result['eval_images']} validation images, {result['epochs']} epochs, "
             f"{result['seconds'] / 60:.1f} min)", "",
             f"Keras accuracy of the optimized model (float, fake-quantized for QAT): {result['keras_top1']:.2f}%", "",
             "| TFLite model | accuracy | vs float32 | size | gzip | gzip vs float32 | batch-1 latency | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.accuracy:.2f} | {r.accuracy - base.accuracy:+.2f} | {_mb(r.size_bytes)} | "
                     f"{_mb(r.gzip_bytes)} | {base.gzip_bytes / r.gzip_bytes:.2f}x | {r.latency_ms:.2f} ms | "
                     f"{r.note} |")
    return "\n".join(lines) + "\n"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
