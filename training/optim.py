"""Learning-rate schedule, optimiser factory and weight EMA for the custom training loop."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from training.config import TrainConfig

NO_DECAY = ["gamma", "beta", "bias"]  # BatchNorm scale/offset and biases never decay


@keras.saving.register_keras_serializable(package="training")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, cosine to `min_lr` at `total_steps`; after `scale_from` (the
    step a frozen backbone is released) the LR is multiplied by `scale`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0,
                 scale_from: int | None = None, scale: float = 1.0):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.min_lr, self.scale_from, self.scale = float(min_lr), scale_from, float(scale)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0, 1)
        cosine = self.min_lr + 0.5 * (self.peak - self.min_lr) * (1.0 + tf.cos(math.pi * progress))
        lr = tf.where(step < self.warmup_steps, warm, cosine)
        if self.scale_from is not None:
            lr = tf.where(step >= self.scale_from, lr * self.scale, lr)
        return lr

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr": self.min_lr, "scale_from": self.scale_from, "scale": self.scale}


def make_optimizer(cfg: TrainConfig, schedule) -> keras.optimizers.Optimizer:
    """The recipe's optimiser, decoupled weight decay minus BN/bias, loss scaling for float16."""
    common = {"weight_decay": cfg.weight_decay or None, "global_clipnorm": cfg.grad_clip or None}
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=cfg.momentum, nesterov=True, **common)
    elif cfg.optimizer == "rmsprop":  # TF/Model Garden EfficientNet settings
        opt = keras.optimizers.RMSprop(schedule, rho=0.9, momentum=cfg.momentum, epsilon=1e-3, **common)
    else:
        opt = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, global_clipnorm=cfg.grad_clip or None)
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    if cfg.precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class ModelEMA(tf.Module):
    """Exponential moving average of every model weight, BatchNorm statistics included (timm's
    ModelEmaV3), with the TF-style warm-up `min(decay, (1 + n) / (10 + n))` so short runs work.

    Create it inside `strategy.scope()`; `update` and `swap` run in cross-replica context.
    """

    def __init__(self, model: keras.Model, decay: float):
        super().__init__(name="ema")
        self.decay = decay
        self._weights = lambda: model.weights  # not tracked: the checkpoint holds the model already
        self.shadow = [tf.Variable(w.value, trainable=False, name=w.path.replace("/", "_"))
                       for w in model.weights]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")

    def update(self) -> None:
        n = tf.cast(self.updates.assign_add(1), tf.float32)
        d = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for s, w in zip(self.shadow, self._weights()):
            s.assign(d * s + (1.0 - d) * tf.cast(w.value, s.dtype))

    def swap(self) -> None:
        """Exchange model and EMA weights (call twice to undo)."""
        for s, w in zip(self.shadow, self._weights()):
            current = tf.identity(w.value)
            w.assign(s.value())
            s.assign(current)
