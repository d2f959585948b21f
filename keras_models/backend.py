"""What differs by Keras backend and device: which backend and accelerator, the XLA policy,
precision names, and TensorFlow's fused BatchNorm kernel for the training hot path.

Model code stays pure Keras 3 and asks here; on JAX (where the whole step is XLA-compiled
anyway) every answer falls back to plain `keras.ops`. Importable without starting Keras.
"""

from __future__ import annotations

from collections.abc import Callable

JIT_SETTINGS = ("auto", "on", "off")  # importable without starting Keras (the CLI's option tables)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies training and benchmarks take


def backend() -> str:
    import keras

    return keras.backend.backend()


class BackendError(RuntimeError):
    """A command that needs another Keras backend than the one running (one line)."""


def require_tensorflow(what: str) -> None:
    """Fail at once, not minutes in, when `what` (training, export...) meets a non-TensorFlow backend."""
    if backend() != "tensorflow":
        raise BackendError(f"{what} needs the TensorFlow backend, but KERAS_BACKEND={backend()}: run it with "
                           "KERAS_BACKEND=tensorflow (the models themselves build and run on JAX too)")


def accelerator_present() -> bool:
    """A GPU or TPU visible to the backend (XLA pays there; on CPU it is 5-18x slower here)."""
    if backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    if backend() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return False


def use_jit(setting: str) -> bool:
    """`auto`: XLA on GPU/TPU only. XLA-CPU depthwise convolutions measured 5-18x slower here
    (and `keras-models benchmark --jit-compile on` re-measures it), so CPU never defaults to it."""
    if setting not in JIT_SETTINGS:
        raise ValueError(f"jit_compile must be one of {', '.join(JIT_SETTINGS)}, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    return accelerator_present()


def compiled(fn: Callable, jit: bool) -> Callable:
    """`fn` as one XLA cluster on TensorFlow when `jit` (JAX jits the whole step already)."""
    if not jit or backend() != "tensorflow":
        return fn
    import tensorflow as tf

    return tf.function(fn, jit_compile=True, reduce_retracing=True)


def fused_batch_norm_available(x, axis: int) -> bool:
    """TF's FusedBatchNormV3 covers 4-D channels-last float batches (one op forward, one backward)."""
    return backend() == "tensorflow" and len(x.shape) == 4 and axis in (-1, 3)


def fused_batch_norm(x, gamma, beta, epsilon: float):
    """Training-mode batch norm in one kernel: (y, batch mean, *biased* batch variance) like Keras.

    Calls the raw op: `tf.nn.fused_batch_norm` would raise epsilon to 1.001e-5 (ReXNet uses 1e-5).
    """
    import tensorflow as tf

    empty = tf.constant([], tf.float32)
    y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    n = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    return y, mean, variance * ((n - 1.0) / n)  # the kernel returns the Bessel-corrected variance
