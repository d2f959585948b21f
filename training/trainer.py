"""One training loop for every strategy: `strategy.run` inside a `tf.function`.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the loop is
our own and identical on one CPU, mirrored GPUs and a multi-worker cluster. Everything needed
to continue (model, optimizer slots, EMA, step, best metric) goes into a `tf.train.Checkpoint`
every `checkpoint_every` steps and at each epoch end; rerunning the same command resumes at
the exact step, skipping the data already seen.
"""

from __future__ import annotations

import csv
import math
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_models.backend import require_tensorflow, use_jit
from keras_models.factory import create_model
from keras_models.files import atomic_output, ensure_space, weights_bytes
from keras_models.models import get_entry
from keras_models.preprocessing import IMAGE_FORMATS
from keras_models.spec import CLASSIFIER_LAYERS
from training import data as data_lib
from training import data_service
from training.checkpoints import clean_leftovers, resume_point
from training.config import ConfigError, TrainConfig
from training.distribute import is_chief, make_strategy
from training.optim import ModelEMA, WarmupCosine, make_optimizer
from training.run_lock import hold_run_lock

# Changing these under an existing run would silently train something else: refuse instead.
RUN_IDENTITY = ("model", "data", "val_split", "seed", "num_classes", "image_size", "batch_size")  # the split too
METRIC_FIELDS = ("epoch", "step", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5",
                 "images_per_sec", "epoch_seconds", "train_bad_files", "val_bad_files", "val_images", "images_seen",
                 "bad_files_seen")



def speed_text(images_per_sec: float | None) -> str:
    """"1234 img/s", or what stands for none: an epoch of one step times nothing (its step traces)."""
    if images_per_sec is None or images_per_sec != images_per_sec:
        return "- img/s (no step timed: the first step of a run traces the graph)"
    return f"{images_per_sec:.0f} img/s"

class TrainingError(RuntimeError):
    """A run that stopped for a reason the user must act on (divergence, wrong --out)."""


class Interrupted(TrainingError):
    """Stopped by Ctrl-C (exit 130) or SIGTERM (exit 143) after writing a checkpoint."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Stopped(KeyboardInterrupt):
    """A stop signal, raised between training steps: Ctrl-C (exit 130) or SIGTERM (exit 143), what
    Slurm, Kubernetes and spot instances send before they kill."""

    def __init__(self, signum: int):
        super().__init__()
        self.exit_code = 128 + signum
        self.reason = "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted"


class StopRequest:
    """SIGINT/SIGTERM set a flag that the loop checks after each step, so a stop always lands on a
    whole step (a handler that raised could fire anywhere, inside TensorFlow's callbacks too, where it
    was lost). A second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Stopped(signum)
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Stopped(self.signum)


@dataclass
class RunState:
    step: int = 0  # global optimizer steps completed
    best_top1: float = -1.0
    rows: list[dict] = field(default_factory=list)


def fit(config: TrainConfig, *, verbose: bool = True) -> dict:
    """Train per `config`; returns the summary (top-1, top-5, images/s, seconds, out)."""
    return Trainer(config, verbose=verbose).run()


def set_precision(precision: str) -> None:
    keras.mixed_precision.set_global_policy(precision)


def with_sync_bn(model: keras.Model) -> keras.Model:
    """The same model with cross-replica (synchronized) BatchNorm, weights kept."""
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    synced = keras.models.clone_model(model, clone_function=clone)
    synced.set_weights(model.get_weights())
    return synced


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Frozen layers run BatchNorm in inference mode (Keras 3: trainable=False implies it)."""
    for layer in model.layers:
        if layer.name not in CLASSIFIER_LAYERS:
            layer.trainable = trainable


class Trainer:
    def __init__(self, config: TrainConfig, verbose: bool = True):
        require_tensorflow("training (tf.distribute, tf.data, checkpoints)")
        self.requested = config.validate()
        self.verbose = verbose

    # --- set-up -------------------------------------------------------------------------
    def _setup(self) -> None:
        # First: collectives must exist before any op.
        self.strategy = make_strategy(self.requested.strategy, self.requested.worker_timeout)
        set_precision(self.requested.precision)
        keras.utils.set_random_seed(self.requested.seed)
        self.chief = is_chief(self.strategy)
        self._resolve()
        self._lock = hold_run_lock(self.out) if self.chief else None  # held until the process ends
        data_root = Path(self.requested.data[len("folder:"):]).expanduser() if self.requested.data.startswith(
            "folder:") else None
        if data_root is not None and data_root.resolve() in self.out.resolve().parents:
            self._log(f"warning: --out {self.out} is inside the data folder {data_root}: later scans leave a run's "
                      "folder out, but keep runs outside the data")
        self._check_same_run()
        ckpt_dir = self.out / "checkpoints"
        if self.chief and clean_leftovers(ckpt_dir):
            self._log(f"note: removed what an interrupted checkpoint save left in {ckpt_dir}")
        latest = resume_point(ckpt_dir, self._log, chief=self.chief)
        resuming = latest is not None
        with self.strategy.scope():
            self._build_model(resuming)
            self._build_optimizer()
        self._make_checkpoint()
        self.state = RunState()
        if resuming:
            self._restore(latest)
        self._log(self._banner(resuming))
        self._start_outputs()

    def _resolve(self) -> None:
        """The data, the resolved config, steps, pipeline and XLA choice."""
        cfg = self.requested
        self.entry = get_entry(cfg.model)
        self.source = data_lib.load(cfg.data, val_split=cfg.val_split, seed=cfg.seed, data_dir=cfg.data_dir,
                                    manual_dir=cfg.manual_dir)
        self.cfg = cfg = cfg.resolve(self.entry.family, self.source.defaults, self.source.num_classes,
                                     self.entry.make_spec().default_size, self.entry.crop_pct)
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise ConfigError(f"batch_size {cfg.batch_size} is the global batch and must divide evenly over "
                              f"{replicas} replicas")
        self.steps_per_epoch = cfg.steps_per_epoch or self.source.num_train // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"{self.source.num_train} training images make no full batch of {cfg.batch_size}; "
                              f"lower --batch-size")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.out = Path(cfg.out)
        self.pipeline = data_lib.Pipeline(
            image_size=cfg.image_size, crop_pct=cfg.crop_pct, interpolation=self.entry.interpolation,
            crop_scale=cfg.crop_scale, hflip=cfg.hflip, randaugment=cfg.randaugment,
            randaugment_mstd=cfg.randaugment_mstd, mixup=cfg.mixup,
            cutmix=cfg.cutmix, seed=cfg.seed)
        self.jit = use_jit(cfg.jit_compile)
        if self.jit and cfg.sync_bn:  # synchronized BN all-reduces inside the forward pass
            self.jit = False
            self._log("note: --sync-bn all-reduces inside the forward pass; XLA is off for this run")

    def _build_model(self, resuming: bool) -> None:
        """The training model (logits out) and `inference` (the same layers, probabilities out)."""
        cfg = self.cfg
        keras.utils.set_random_seed(cfg.seed)  # right before the weights exist: same init everywhere
        options = {k: getattr(cfg, k) for k in ("dropout_rate", "drop_path_rate") if getattr(cfg, k) is not None}
        self.model = create_model(
            cfg.model, weights=None if resuming else cfg.weights, num_classes=cfg.num_classes,
            input_shape=(cfg.image_size, cfg.image_size, 3), classifier_activation=None, **options)
        if not resuming and not (cfg.weights and cfg.num_classes == 1000):  # the head is new
            # keras' fan-out init gives a 10-class head logits of std ~6 at the start; scaled
            # down, a digits run reaches 95% in 8 epochs instead of 89% (README, "Recipe").
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(kernel * cfg.head_init_scale)
        if cfg.sync_bn:
            self.model = with_sync_bn(self.model)
        # last.keras: the same layers and weights with probabilities out, as Keras users expect.
        probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")
        self.inference = keras.Model(self.model.inputs, probabilities(self.model.outputs[0]), name=self.model.name)

    def _build_optimizer(self) -> None:
        """LR schedule, optimizer (slots for every weight, frozen or not), EMA, step and best counters."""
        cfg, steps = self.cfg, self.steps_per_epoch
        unfreeze_step = cfg.freeze_epochs * steps if cfg.freeze_epochs is not None else None
        self.schedule = WarmupCosine(cfg.lr, self.total_steps, round(cfg.warmup_epochs * steps), cfg.min_lr,
                                     unfreeze_step, cfg.unfreeze_lr_scale)
        self.optimizer = make_optimizer(cfg, self.schedule)
        self.optimizer.build(self.model.trainable_variables)
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # images trained on and unreadable files met so far, checkpointed with the step (exact on resume)
        self.seen_var = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="seen")
        self.best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_top1")

    def _make_checkpoint(self) -> None:
        items = {"model": self.model, "optimizer": self.optimizer, "step": self.step_var, "best": self.best_var,
                 "seen": self.seen_var}
        if self.ema is not None:
            items["ema"] = self.ema
        self.checkpoint = tf.train.Checkpoint(**items)
        # Every worker saves (variables sync collectively); only the chief keeps what it writes.
        self._scratch = None if self.chief else tempfile.mkdtemp(prefix="keras-models-worker-")
        self.manager = tf.train.CheckpointManager(self.checkpoint, self._scratch or str(self.out / "checkpoints"),
                                                  max_to_keep=2)

    def _restore(self, latest: str) -> None:
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.state.step = int(self.step_var.numpy())
        self.state.best_top1 = float(self.best_var.numpy())
        self.state.rows = self._read_metrics()

    def _start_outputs(self) -> None:
        """config.yaml, labels.txt and the TensorBoard writer (the chief's only)."""
        if self.chief:
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_text("config.yaml", self.cfg.to_yaml())
            self._write_text("labels.txt", "\n".join(self.source.class_names) + "\n")
            self.writer = tf.summary.create_file_writer(str(self.out / "logs"))
        else:
            self.writer = tf.summary.create_noop_writer()

    def _check_same_run(self) -> None:
        """An existing run in --out must be the same run (resume), never silently another.

        Identity is read from config.yaml; a folder holding a run's files without a readable
        config.yaml cannot be identified, so it is refused rather than trained over.
        """
        saved = self.out / "config.yaml"
        run_files = [n for n in ("best.weights.h5", "last.keras", "checkpoints", "metrics.csv")
                     if (self.out / n).exists()]
        if not saved.is_file():
            if run_files:
                raise ConfigError(f"{self.out} holds another run's {run_files[0]} but no config.yaml to tell which "
                                  f"run it is; pass another --out (or delete {self.out})")
            return
        try:
            previous = TrainConfig.from_yaml(saved)
        except ConfigError as e:
            raise ConfigError(f"{self.out} holds a run whose config.yaml is unreadable ({e}); pass another --out "
                              f"(or delete {self.out})") from None
        for key in RUN_IDENTITY:
            if getattr(previous, key) != getattr(self.cfg, key):
                raise ConfigError(f"{self.out} holds a run with {key}={getattr(previous, key)!r}, not "
                                  f"{getattr(self.cfg, key)!r}; pass another --out (or delete {self.out})")

    def _banner(self, resuming: bool) -> str:
        cfg, s = self.cfg, self.strategy
        where = f"resuming at step {self.state.step}/{self.total_steps}" if resuming else "starting"
        return (f"{where}: {cfg.model} on {self.source.name} ({self.source.num_train} train / "
                f"{self.source.num_val} val, {cfg.num_classes} classes) at {cfg.image_size}px, "
                f"{type(s).__name__} x{s.num_replicas_in_sync}, global batch {cfg.batch_size}, "
                f"{cfg.optimizer} lr {cfg.lr:.4g}, {cfg.precision}, XLA {'on' if self.jit else 'off'} -> {self.out}")

    # --- compiled steps -----------------------------------------------------------------
    def _make_train_step(self):
        model, optimizer, cfg = self.model, self.optimizer, self.cfg
        global_batch, strategy, ema = cfg.batch_size, self.strategy, self.ema

        def gradients(images, labels, status):
            good = tf.cast(status == data_lib.GOOD, tf.float32)  # an unreadable file weighs nothing
            images = tf.cast(images, tf.float32)  # uint8 from the input pipeline
            with tf.GradientTape() as tape:
                logits = tf.cast(model(images, training=True), tf.float32)
                per_example = keras.losses.categorical_crossentropy(
                    labels, logits, from_logits=True, label_smoothing=cfg.label_smoothing)
                loss = tf.nn.compute_average_loss(per_example * good, global_batch_size=global_batch)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            hits = tf.cast(tf.argmax(logits, -1) == tf.argmax(labels, -1), tf.float32)
            counts = tf.stack([tf.reduce_sum(hits * good), tf.reduce_sum(good), tf.reduce_sum(1 - good)])
            return loss, counts, grads

        if self.jit:  # XLA compiles the replica-local forward/backward; the all-reduce stays outside
            gradients = tf.function(gradients, jit_compile=True)

        def replica_step(images, labels, status, positions=None):
            loss, counts, grads = gradients(images, labels, status)
            optimizer.apply(grads, model.trainable_variables)  # all-reduces across replicas
            return loss, counts, positions

        @tf.function
        def train_step(iterator):
            """(loss, [correct, images, unreadable files]) summed over every replica and worker, and
            the stream positions of the global batch when a data service computed it (else None)."""
            loss, counts, positions = strategy.run(replica_step, args=next(iterator))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            counts = strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)
            if positions is not None:
                positions = strategy.gather(positions, axis=0)
            if ema is not None:
                ema.update()
            self.step_var.assign_add(1)
            self.seen_var.assign_add(tf.cast(counts[1:], tf.int64))
            return loss, counts, positions

        return train_step

    # --- the loop -----------------------------------------------------------------------
    def run(self) -> dict:
        started = time.perf_counter()
        self._setup()
        cfg, st = self.cfg, self.state
        if st.step >= self.total_steps:
            self._log(f"{self.out}: all {cfg.epochs} epochs are done; nothing to train")
            return self._summary(time.perf_counter() - started, images_per_sec=None)
        start_epoch = st.step // self.steps_per_epoch
        frozen = cfg.freeze_backbone and (cfg.freeze_epochs is None or start_epoch < cfg.freeze_epochs)
        set_backbone_trainable(self.model, not frozen)
        train_step = self._make_train_step()
        self.average_bn = batch_norm_averager(self.strategy, self.model)
        evaluation = DistributedEval(self.strategy, self.model, self.pipeline, self.source,
                                     max(cfg.batch_size, 64), cfg.label_smoothing)

        def dataset_fn(ctx):
            per_replica = ctx.get_per_replica_batch_size(cfg.batch_size)
            if cfg.data_service:  # every pipeline reads the one job: positions are global
                start, end = st.step * cfg.batch_size, (self.total_steps + self.steps_per_epoch) * cfg.batch_size
                job = data_service.job_name(str(self.out), start)
                return data_service.service_dataset(self.pipeline, self.source, per_replica, url=cfg.data_service,
                                                    job=job, start=start, end=end)
            per_pipeline = cfg.batch_size // ctx.num_input_pipelines  # elements each pipeline feeds per step
            return self.pipeline.train_dataset(self.source, per_replica, input_context=ctx,
                                               skip_elements=st.step * per_pipeline)

        self.arrivals = data_service.Arrivals(st.step * cfg.batch_size)
        if cfg.data_service:
            data_service.wait_for(cfg.data_service, cfg.worker_timeout)
            self._log(f"training input: the tf.data service at {cfg.data_service} (dynamic sharding)")

        iterator = iter(self.strategy.distribute_datasets_from_function(dataset_fn))
        speeds = []
        with StopRequest() as self.stop:  # Ctrl-C and SIGTERM stop between steps, checkpointed
            try:
                for epoch in range(start_epoch, cfg.epochs):
                    if frozen and cfg.freeze_epochs is not None and epoch >= cfg.freeze_epochs:
                        frozen = False
                        set_backbone_trainable(self.model, True)
                        train_step = self._make_train_step()  # retrace with the released weights
                        self._log(f"epoch {epoch + 1}: backbone unfrozen, LR x{cfg.unfreeze_lr_scale}")
                    row, speed = self._train_epoch(epoch, train_step, iterator)
                    speeds.append(speed)
                    row.update(self._evaluate_for_epoch(evaluation))
                    self._end_epoch(row)
                    self.stop.check()
            except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM (`StopRequest`), or Ctrl-C before it was set
                self.state.step = int(self.step_var.numpy())  # a step the signal cut short of its bookkeeping
                self._save_checkpoint()
                code = getattr(stop, "exit_code", 130)
                raise Interrupted(f"{getattr(stop, 'reason', 'interrupted')} at step {int(self.step_var.numpy())}: "
                                  f"checkpoint written; rerun the same command to resume", code) from None
            finally:
                if self._scratch:
                    shutil.rmtree(self._scratch, ignore_errors=True)
        measured = [v for v in speeds[1:] or speeds if v == v]  # the first epoch pays for tracing; NaN: untimed
        return self._summary(time.perf_counter() - started,
                             images_per_sec=float(np.median(measured)) if measured else None)

    def _train_epoch(self, epoch: int, train_step, iterator) -> tuple[dict, float]:
        cfg, st = self.cfg, self.state
        first = st.step - epoch * self.steps_per_epoch
        bar = _progress(self.steps_per_epoch, first, f"epoch {epoch + 1}/{cfg.epochs}", self.chief and self.verbose)
        loss_sum = correct_sum = images_sum = seen = 0.0
        timed_images, timed_seconds = 0, 0.0
        try:  # the bar ends its line whatever stops the epoch, so an error message starts its own
            for i in range(first, self.steps_per_epoch):
                t0 = time.perf_counter()
                loss, counts, positions = train_step(iterator)
                if positions is not None:
                    self.arrivals.add(positions.numpy())
                loss = float(loss)
                correct, images = (float(c) for c in counts.numpy()[:2])
                if not math.isfinite(loss):
                    kept = self.manager.latest_checkpoint or "none yet"
                    raise TrainingError(f"loss became {loss} at step {st.step + 1} (epoch {epoch + 1}); stopped. "
                                        f"Last good checkpoint: {kept}. Lower --lr, or use --precision float32")
                dt = time.perf_counter() - t0
                st.step += 1
                if i > first:  # the first step of a (re)start includes tracing
                    timed_images += cfg.batch_size
                    timed_seconds += dt
                loss_sum += loss
                correct_sum += correct
                images_sum += images
                seen += 1
                if bar is not None:
                    bar.update(1)
                    if i % 5 == 0 or i == self.steps_per_epoch - 1:
                        top1 = 100 * correct_sum / max(images_sum, 1)
                        bar.set_postfix({
                            "loss": f"{loss_sum / seen:.3f}", "top1": f"{top1:.1f}", "lr": f"{self._lr():.3g}",
                            "img/s": f"{timed_images / max(timed_seconds, 1e-9):.0f}", "step_ms": f"{1000 * dt:.0f}"})
                if st.step % cfg.checkpoint_every == 0:
                    self._save_checkpoint()
                self.stop.check()
        finally:
            if bar is not None:
                bar.close()
        speed = timed_images / timed_seconds if timed_seconds else float("nan")
        with self.writer.as_default(step=st.step):
            tf.summary.scalar("train/loss", loss_sum / max(seen, 1))
            tf.summary.scalar("train/lr", self._lr())
        images_seen, bad_seen = (int(v) for v in self.seen_var.numpy())
        if seen and not images_sum:  # every image of the epoch was a blank standing in for a bad file
            raise TrainingError(f"not one training image of epoch {epoch + 1} could be decoded ({bad_seen} unreadable "
                                f"so far): the data is damaged or not {IMAGE_FORMATS} images")
        before = next((r for r in reversed(st.rows) if int(r["epoch"]) < epoch + 1), {})
        row = {"epoch": epoch + 1, "step": st.step, "lr": self._lr(), "train_loss": loss_sum / max(seen, 1),
               "train_top1": 100 * correct_sum / max(images_sum, 1), "images_per_sec": speed,
               "epoch_seconds": timed_seconds, "images_seen": images_seen, "bad_files_seen": bad_seen,
               "train_bad_files": bad_seen - int(before.get("bad_files_seen") or 0)}
        return row, speed

    def _lr(self) -> float:
        return float(self.schedule(max(self.state.step - 1, 0)))

    def _evaluate_for_epoch(self, evaluation: DistributedEval) -> dict:
        """Validation on the EMA weights when EMA is on (timm: the EMA metric picks the best); every
        replica and worker scores its shard and the counts are summed (one pass, not one per worker).
        BatchNorm statistics are averaged over replicas first (timm's `--dist-bn reduce`), so every
        shard is scored by the very weights the chief saves."""
        self.average_bn()
        if self.ema is not None:
            self.ema.swap()
            self.average_bn()
        try:
            metrics = evaluation()
            if self.chief and metrics["val_top1"] > self.state.best_top1:
                self.state.best_top1 = metrics["val_top1"]
                ensure_space(self.out, weights_bytes(self.model), "best.weights.h5")
                with atomic_output(self.out / "best.weights.h5", suffix=".weights.h5") as tmp:
                    self.model.save_weights(tmp)
            if self.chief:
                ensure_space(self.out, weights_bytes(self.inference), "last.keras")
                with atomic_output(self.out / "last.keras", suffix=".keras") as tmp:
                    self.inference.save(tmp)
        finally:
            if self.ema is not None:
                self.ema.swap()
        return metrics

    def _end_epoch(self, row: dict) -> None:
        lost = self.arrivals.settle()
        if lost:
            self._log(f"warning: {lost} images of the stream never arrived from the data service (a worker lost "
                      f"with its work, {len(self.arrivals.lost)} so far); the epoch ran its full steps on the others")
        st = self.state
        st.rows = [r for r in st.rows if int(r["epoch"]) < row["epoch"]] + [row]
        self._save_checkpoint()
        if self.chief:
            with atomic_output(self.out / "metrics.csv", suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
                w.writeheader()
                w.writerows({k: r.get(k, "") for k in METRIC_FIELDS} for r in st.rows)
            plot_curves(st.rows, self.out / "curves.png")
            with self.writer.as_default(step=st.step):
                for key in ("val_loss", "val_top1", "val_top5"):
                    tf.summary.scalar(key.replace("_", "/", 1), row[key])
            self.writer.flush()
        bad = row["train_bad_files"] + row["val_bad_files"]
        unreadable = f"  {row['train_bad_files']} + {row['val_bad_files']} unreadable files skipped" if bad else ""
        self._log(f"epoch {row['epoch']}/{self.cfg.epochs}  loss {row['train_loss']:.4f}  "
                  f"train top-1 {row['train_top1']:.1f}%  val loss {row['val_loss']:.4f}  "
                  f"val top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%  "
                  f"lr {row['lr']:.3g}  {speed_text(row['images_per_sec'])}{unreadable}")

    def _save_checkpoint(self) -> None:
        if not all_finite(self.model.weights):
            self._log("warning: weights are not finite; checkpoint not written")
            return
        self.best_var.assign(self.state.best_top1)
        try:
            self.manager.save(checkpoint_number=self.state.step)
        except tf.errors.OpError:  # e.g. a full disk: what the save began (`*_temp`) goes, the older ones stay
            clean_leftovers(Path(self.manager.directory))
            raise

    # --- outputs ------------------------------------------------------------------------
    def _read_metrics(self) -> list[dict]:
        path = self.out / "metrics.csv"
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return [{k: (float(v) if v not in ("", None) else "") for k, v in r.items()} for r in csv.DictReader(f)]

    def _write_text(self, name: str, text: str) -> None:
        with atomic_output(self.out / name) as tmp:
            Path(tmp).write_text(text)

    def _log(self, message: str) -> None:
        if self.chief and self.verbose:
            print(message, flush=True)

    def _summary(self, seconds: float, images_per_sec: float | None) -> dict:
        last = self.state.rows[-1] if self.state.rows else {}
        summary = {
            "model": self.cfg.model, "data": self.source.name, "out": str(self.out),
            "top1": last.get("val_top1"), "top5": last.get("val_top5"),
            "best_top1": self.state.best_top1, "images_per_sec": images_per_sec, "seconds": seconds,
            "steps": self.state.step, "images_seen": int(self.seen_var.numpy()[0]),
            "bad_files_seen": int(self.seen_var.numpy()[1]), "val_bad_files": last.get("val_bad_files", 0),
        }
        if last:
            speed = speed_text(images_per_sec)
            bad = summary["bad_files_seen"]
            val_bad = int(last.get("val_bad_files") or 0)
            skipped = (f", {bad} unreadable images met in training and {val_bad} in validation, left out "
                       "(metrics.csv: train_bad_files, val_bad_files)") if bad or val_bad else ""
            self._log(f"done: {self.cfg.model} on {self.source.name}: val top-1 {last['val_top1']:.2f}% "
                      f"(best {self.state.best_top1:.2f}%), top-5 {last['val_top5']:.2f}%, train {speed}, "
                      f"{summary['images_seen']:,} images in {summary['steps']} steps{skipped}, "
                      f"{seconds / 60:.1f} min -> {self.out}/best.weights.h5")
        return summary


def all_finite(weights) -> bool:
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.cast(w.value, tf.float32))) for w in weights]))


def batch_norm_averager(strategy, model: keras.Model):
    """A function that sets every BatchNorm moving statistic to its mean over all replicas and
    workers (each keeps its own from its local batches otherwise); a no-op on one replica."""
    moving = [w for w in model.non_trainable_weights if w.path.endswith(("/moving_mean", "/moving_variance"))]
    if strategy.num_replicas_in_sync == 1 or not moving:
        return lambda: None

    @tf.function
    def average():
        local = strategy.run(lambda: [tf.identity(w.value) for w in moving])
        for w, value in zip(moving, local):
            w.value.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))

    return average


class DistributedEval:
    """One pass over the validation split under a strategy: each replica of each worker scores its
    padded shard (`Pipeline.eval_dataset`), and [images, top-1, top-5, loss, unreadable] are summed
    across all of them, so the counts equal one single-process pass exactly."""

    def __init__(self, strategy, model: keras.Model, pipeline, source, batch_size: int,
                 label_smoothing: float = 0.0):
        replicas = strategy.num_replicas_in_sync
        self.global_batch = math.ceil(batch_size / replicas) * replicas
        self.strategy, self.pipelines = strategy, 1

        def dataset_fn(ctx):
            self.pipelines = ctx.num_input_pipelines
            return pipeline.eval_dataset(source, ctx.get_per_replica_batch_size(self.global_batch), input_context=ctx,
                                         replicas_per_pipeline=replicas // ctx.num_input_pipelines)

        self.dataset = strategy.distribute_datasets_from_function(dataset_fn)
        self.steps = data_lib.eval_steps(source.num_val, self.pipelines, self.global_batch // self.pipelines)
        classes = source.num_classes

        def replica(images, labels, status):
            logits = tf.cast(model(images, training=False), tf.float32)
            good = tf.cast(status == data_lib.GOOD, tf.float32)
            top = tf.math.top_k(logits, min(5, classes)).indices
            labels = tf.cast(labels, top.dtype)
            top1 = tf.cast(top[:, 0] == labels, tf.float32)
            top5 = tf.cast(tf.reduce_any(top == labels[:, None], axis=-1), tf.float32)
            loss = keras.losses.categorical_crossentropy(tf.one_hot(labels, classes), logits, from_logits=True,
                                                         label_smoothing=label_smoothing)
            bad = tf.cast(status == data_lib.BAD, tf.float32)
            return tf.stack([tf.reduce_sum(v * good) for v in (tf.ones_like(good), top1, top5, loss)]
                            + [tf.reduce_sum(bad)])

        @tf.function
        def step(iterator):
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica, args=next(iterator)), axis=None)

        self.step = step

    def __call__(self) -> dict:
        iterator = iter(self.dataset)
        totals = np.zeros(5)
        for _ in range(self.steps):
            totals += self.step(iterator).numpy()
        n, top1, top5, loss, bad = totals
        if not n:
            raise TrainingError("the validation split is empty (or every image in it failed to decode)")
        return {"val_loss": loss / n, "val_top1": 100 * top1 / n, "val_top5": 100 * top5 / n,
                "val_images": int(n), "val_bad_files": int(bad)}


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True,
                file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss, top-1 and LR per epoch, for people who would rather look than read CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    axes[0].plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [r["train_top1"] for r in rows], "o-", label="train")
    axes[1].plot(epochs, [r["val_top1"] for r in rows], "o-", label="val top-1")
    axes[1].plot(epochs, [r["val_top5"] for r in rows], "o--", label="val top-5")
    axes[1].set_title("accuracy (%)")
    axes[2].plot(epochs, [r["lr"] for r in rows], "o-")
    axes[2].set_title("learning rate (epoch end)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)

