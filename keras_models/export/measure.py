"""Measuring an export against its Keras model: the evaluation images, agreement, latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_models.preprocessing import EvalTransform, decode_image


@dataclass
class Images:
    """Evaluation images three ways: as sent to a server, as the models see them, and their labels."""

    encoded: list[bytes]  # JPEG/PNG bytes, what clients send to `serving_default`
    pixels: np.ndarray  # N x S x S x 3 float32 0-255 after the evaluation transform
    labels: np.ndarray | None  # int class ids, None when there is no labelled set


def prepare(encoded: Sequence[bytes], transform: EvalTransform, labels: np.ndarray | None = None) -> Images:
    """Decode and transform exactly as evaluation does; undecodable files are dropped."""
    keep, pixels = [], []
    for i, data in enumerate(encoded):
        try:
            image = decode_image(data)
        except tf.errors.InvalidArgumentError:
            continue
        keep.append(i)
        pixels.append(transform.eval_image(image).numpy())
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


LOG_FLOOR = 1e-7  # probabilities below this read as this: a float32 softmax tail is only noise there


def logit_error(probs: np.ndarray, reference: np.ndarray) -> float:
    """How far an export's outputs are from the Keras model's, as logits, relative to the model's own
    logit scale: log-probabilities (logits up to a shift per image) with each image's shift removed,
    divided by the reference's largest logit range. Float32 rounding through a deep net (BatchNorm
    folded into convolutions, another kernel order) reads ~1e-6..1e-4; another graph reads ~1e-2..1."""
    export, keras_ = np.log(np.maximum(probs, LOG_FLOOR)), np.log(np.maximum(reference, LOG_FLOOR))
    delta = export - keras_
    delta -= np.median(delta, axis=1, keepdims=True)
    scale = max(float((keras_.max(axis=1) - keras_.min(axis=1)).max()), 1.0)
    return float(np.abs(delta).max() / scale)


def batched(fn: Callable[[np.ndarray], np.ndarray], items, size: int = 64) -> np.ndarray:
    """`fn` over `items` in chunks of `size`, outputs concatenated."""
    return np.concatenate([fn(items[i:i + size]) for i in range(0, len(items), size)])
