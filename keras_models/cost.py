"""Parameter and multiply-accumulate counts read off a built model (static input shape)."""

from __future__ import annotations

import math

import keras
from keras import layers


def count_params(model: keras.Model, trainable_only: bool = False) -> int:
    """All weights (keras.applications convention) or trainable only (timm/paper convention)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(math.prod(w.shape) for w in weights))


def count_macs(model: keras.Model) -> int:
    """Conv and dense multiply-accumulates, the unit papers call FLOPs (ReXNet 1.0x: 0.40 G)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            out = layer.output.shape
            if out[1] is None or out[2] is None:
                raise ValueError("count_macs needs a model built with a static input_shape")
            kh, kw = layer.kernel_size
            if isinstance(layer, layers.DepthwiseConv2D):
                per_pixel = kh * kw * out[-1]
            else:
                cin = layer.input.shape[-1]
                per_pixel = kh * kw * cin * out[-1] // layer.groups
            total += out[1] * out[2] * per_pixel
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)
