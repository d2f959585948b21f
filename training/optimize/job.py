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
from keras_models.models import create_model, get_entry
from training.data import encoded_images
from training.evaluate import run_settings
from training.optimize import QAT_SAVED_MODEL, OptimizeError, OptimizeOptions
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


def run(opts: OptimizeOptions) -> dict:
    started = time.perf_counter()
    settings = run_settings(opts.weights, model=opts.model, data=opts.data, image_size=opts.image_size)
    source, pipeline, run_cfg = settings.source, settings.pipeline, settings.run
    if run_cfg is not None:  # fine-tune with the run's own augmentation
        pipeline = dataclasses.replace(pipeline, crop_scale=tuple(run_cfg.crop_scale), hflip=run_cfg.hflip)
    entry, size, classes = get_entry(settings.model), settings.image_size, source.num_classes
    build_options = {"input_shape": (size, size, 3), "num_classes": classes, "classifier_activation": None}
    model = create_model(settings.model, weights=opts.weights, **build_options)
    twin = build_twin(entry.make_spec(), **build_options)
    copy_weights(model, twin)
    _check_twin(model, twin, size)

    encoded, labels = encoded_images(source, "val", opts.eval_images or source.num_val)
    images = prepare(encoded, pipeline, labels)
    calib_encoded, _ = encoded_images(source, "train", opts.calibration_images)
    calibration = list(prepare(calib_encoded, pipeline).pixels)
    steps = opts.steps_per_epoch or max(1, source.num_train // opts.batch_size)
    train = pipeline.train_dataset(source, opts.batch_size)

    def one_hot(x, y):
        return x, tf.one_hot(y, classes)

    val = pipeline.eval_dataset(source, 128).map(one_hot)
    label_smoothing = run_cfg.label_smoothing if run_cfg and run_cfg.label_smoothing is not None else 0.1
    if opts.distill:  # targets: the float source model's probabilities on the same augmented images
        teacher = build_twin(entry.make_spec(), **build_options)  # its own variables: tfmot wrappers share layers
        copy_weights(model, teacher)
        train = train.map(lambda x, y: (x, tf.nn.softmax(teacher(x, training=False))))
        label_smoothing = 0.0

    def bn_batches():
        """One pass of augmented training images, as the statistics were gathered in training."""
        return (x for x, _ in train.take(steps))

    def batch_norm_statistics(net: tf_keras.Model) -> str:
        """Keep the fine-tuned BatchNorm statistics or re-estimate them, whichever validates better.

        Re-estimating is what rescues a short run (one-shot 50% pruning: 35% accuracy with stale
        statistics, 95% re-estimated); after a long one the fine-tuned statistics already follow
        the final weights, and the choice is the epoch selection's, on the same validation images.
        """
        before, weights = _keras_top1(net, images), net.get_weights()
        M.recalibrate_batch_norm(net, bn_batches())
        if _keras_top1(net, images) >= before:
            return "re-estimated"
        net.set_weights(weights)
        return "fine-tuned"

    def int8_top1(net: tf_keras.Model) -> float:
        """What QAT is for: the converted int8 model's accuracy."""
        with tempfile.TemporaryDirectory() as tmp:
            _write_qat_saved_model(net, size, Path(tmp) / "qat")
            path = lite.tflite(model, Path(tmp) / "epoch.tflite", "int8", calibration=calibration,
                               saved_model_dir=str(Path(tmp) / "qat"))
            return _tflite_top1(path, images)

    def fine_tune(net: tf_keras.Model, phase: str, callbacks=(), keep_best: _KeepBest | None = None) -> dict:
        print(f"{phase}: {opts.epochs} epochs x {steps} steps, lr {opts.lr} (cosine), batch {opts.batch_size}")
        schedule = tf_keras.optimizers.schedules.CosineDecay(opts.lr, opts.epochs * steps)
        sgd = tf_keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
        if keep_best is not None:  # the best epoch, as training keeps best.weights.h5
            callbacks = [*callbacks, keep_best]
        net.compile(optimizer=sgd,
                    loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing),
                    metrics=[tf_keras.metrics.CategoricalAccuracy(name="top1")])
        history = net.fit(train, epochs=opts.epochs, steps_per_epoch=steps, validation_data=val,
                          callbacks=list(callbacks), verbose=opts.verbose)
        return {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}

    out = Path(opts.out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        with lite.inference_saved_model(model) as converter_input:  # one converter input, two conversions
            rows = [_measure("float32 (source weights)",
                             lite.tflite(model, staging / "source_float32.tflite", "float32",
                                         labels=source.class_names, saved_model_dir=converter_input), images),
                    _measure("int8 post-training (source weights)",
                             lite.tflite(model, staging / "source_int8.tflite", "int8", labels=source.class_names,
                                         calibration=calibration, saved_model_dir=converter_input), images)]
        history, info, layer_sparsity = {}, {}, None
        optimized = twin
        if opts.method in ("prune", "prune+qat"):
            sparsity: float | dict[str, float] = opts.sparsity
            if opts.prune_allocation == "sensitivity":
                bar = lambda layers: tqdm(layers, desc="sensitivity scan", unit="layer", disable=not opts.verbose)
                sparsity = M.allocate_sparsity(optimized, np.stack(calibration[:SCAN_IMAGES]), opts.sparsity,
                                               opts.prune_block, bar)
                layer_sparsity = {name: round(s, 3) for name, s in sparsity.items()}
            pruned, callbacks, final_step = M.apply_pruning(optimized, sparsity, opts.epochs * steps,
                                                            opts.prune_block)
            # The best epoch once every mask is final (Keras validation accuracy of the pruned model).
            best = _KeepBest(lambda net, logs: 100 * logs["val_top1"], first_epoch=math.ceil(final_step / steps) - 1)
            history["prune"] = fine_tune(pruned, f"pruning to {opts.sparsity:.0%} sparsity", callbacks, best)
            optimized = M.strip(pruned)
            info["batch_norm"] = batch_norm_statistics(optimized)
            info["sparsity"] = round(M.sparsity_of(optimized), 4)
        if opts.method == "cluster":
            clustered = M.apply_clustering(optimized, opts.clusters)
            history["cluster"] = fine_tune(clustered, f"clustering to {opts.clusters} values per kernel")
            optimized = M.strip(clustered)
            info["batch_norm"] = batch_norm_statistics(optimized)
            info["unique_values_per_kernel"] = M.unique_values(optimized)
        if opts.method in ("qat", "prune+qat"):
            batches = [np.stack(calibration[k:k + 32]) for k in range(0, len(calibration), 32)]
            qat = M.apply_qat(optimized, preserve_sparsity=opts.method == "prune+qat", calibration=batches)
            # The epoch whose converted int8 TFLite validates best (fake quantization differs by an image or two).
            best = _KeepBest(lambda net, logs: int8_top1(net), log_as="val_int8_top1")
            history["qat"] = fine_tune(qat, "quantization-aware training", keep_best=best)
            optimized = qat
            if opts.method == "prune+qat":
                info["sparsity"] = round(M.sparsity_of(qat), 4)

        copy_weights(optimized, model)  # the float weights, for eval/export like any run
        model.save_weights(staging / "best.weights.h5")
        keras_top1 = _keras_top1(optimized, images)
        tag = opts.method.replace("+", "_")
        path = staging / f"{settings.model}_{tag}.tflite"
        note = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info.items())
        if opts.method in ("qat", "prune+qat"):
            _write_qat_saved_model(optimized, size, staging / QAT_SAVED_MODEL)
            lite.tflite(model, path, "int8", labels=source.class_names, calibration=calibration,
                        name=settings.model, saved_model_dir=str(staging / QAT_SAVED_MODEL))
            rows.append(_measure(f"{opts.method} (int8)", path, images, note))
        else:  # float32, and the compressed weights also through post-training int8
            with lite.inference_saved_model(model) as converter_input:
                lite.tflite(model, path, "float32", labels=source.class_names, name=settings.model,
                            saved_model_dir=converter_input)
                int8 = lite.tflite(model, staging / f"{settings.model}_{tag}_int8.tflite", "int8",
                                   labels=source.class_names, calibration=calibration, name=settings.model,
                                   saved_model_dir=converter_input)
            rows += [_measure(f"{opts.method} (float32)", path, images, note),
                     _measure(f"{opts.method} + int8 post-training", int8, images, note)]

        _write_run_files(staging, opts, settings, source.class_names)
        result = {"model": settings.model, "method": opts.method, "weights": str(opts.weights),
                  "data": source.name, "image_size": size, "epochs": opts.epochs, "lr": opts.lr,
                  "batch_size": opts.batch_size, "distill": opts.distill,
                  "sparsity": opts.sparsity if "prune" in opts.method else None,
                  "prune_block": opts.prune_block if "prune" in opts.method else None,
                  "prune_allocation": opts.prune_allocation if "prune" in opts.method else None,
                  "clusters": opts.clusters if opts.method == "cluster" else None, "eval_images": len(images.pixels),
                  "keras_top1": keras_top1, **info,
                  "layer_sparsity": layer_sparsity, "history": history,
                  "rows": [dataclasses.asdict(r) for r in rows], "seconds": round(time.perf_counter() - started, 1)}
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


class _KeepBest(tf_keras.callbacks.Callback):
    """Score every epoch's model from `first_epoch` on (0-based) and restore the best when training
    ends; a new score is logged into the history as `log_as`."""

    def __init__(self, score: Callable[[tf_keras.Model, dict], float], first_epoch: int = 0,
                 log_as: str | None = None):
        super().__init__()
        self.score, self.first_epoch, self.log_as, self.best, self.weights = score, first_epoch, log_as, -1.0, None

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        if epoch < self.first_epoch:
            return
        value = self.score(self.model, logs)
        if self.log_as:
            logs[self.log_as] = value
        if value > self.best:
            self.best, self.weights = value, self.model.get_weights()
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
