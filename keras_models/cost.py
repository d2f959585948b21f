"""Parameter and multiply-accumulate counts: from a spec's block table (no model built) or read
off a built model (static input shape); tests check that the two agree for every block kind."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

from keras_models.layers import BlockSpec
from keras_models.spec import NetSpec


@dataclass
class Cost:
    """What `spec.build(net, ...)` will hold: trainable weights, BatchNorm's moving statistics, and
    conv/dense multiply-accumulates (the unit papers call FLOPs)."""

    trainable: int = 0
    stats: int = 0
    macs: int = 0

    @property
    def params(self) -> int:
        """Every weight (keras.applications' `count_params`)."""
        return self.trainable + self.stats

    def conv(self, pixels: int, kernel: int, cin: int, cout: int, bias: bool = False) -> None:
        weights = kernel * kernel * cin * cout
        self.trainable += weights + (cout if bias else 0)
        self.macs += pixels * weights

    def depthwise(self, pixels: int, kernel: int, channels: int) -> None:
        self.trainable += kernel * kernel * channels
        self.macs += pixels * kernel * kernel * channels

    def batch_norm(self, channels: int) -> None:
        self.trainable += 2 * channels  # gamma, beta
        self.stats += 2 * channels  # moving mean, moving variance


def spec_cost(net: NetSpec, size: int | None = None, num_classes: int = 1000, include_top: bool = True) -> Cost:
    """The cost of `spec.build(net, input_shape=(size, size, 3), ...)` from the block table alone:
    `keras-models info` and `model_info` need no model (EfficientNetV2-L took 9 s to build)."""
    side = math.ceil((size or net.default_size) / 2)
    cost = Cost()
    cost.conv(side * side, 3, 3, net.stem_ch)
    cost.batch_norm(net.stem_ch)
    for block in net.blocks:
        side = _block_cost(cost, block, side)
    last = net.blocks[-1].out_ch if net.blocks else net.stem_ch
    cost.conv(side * side, 1, last, net.head_ch)
    cost.batch_norm(net.head_ch)
    if include_top:
        features = net.head_ch
        if net.head_hidden:
            cost.conv(1, 1, features, net.head_hidden, bias=True)
            cost.batch_norm(net.head_hidden)
            features = net.head_hidden
        cost.conv(1, 1, features, num_classes, bias=True)
    return cost


def _block_cost(cost: Cost, block: BlockSpec, side: int) -> int:
    """Add one block as `layers.inverted_residual` renders it; returns the output side (SAME and
    symmetric padding both give ceil(side / stride))."""
    out_side = math.ceil(side / block.stride)
    if block.fused and (block.exp_ch != block.in_ch or block.edge):
        cost.conv(out_side ** 2, block.kernel, block.in_ch, block.exp_ch)
    elif block.fused:  # one k x k conv
        cost.conv(out_side ** 2, block.kernel, block.in_ch, block.out_ch)
        cost.batch_norm(block.out_ch)
        return out_side
    else:
        if block.exp_ch != block.in_ch:
            cost.conv(side * side, 1, block.in_ch, block.exp_ch)
            cost.batch_norm(block.exp_ch)
        cost.depthwise(out_side ** 2, block.kernel, block.exp_ch)
    cost.batch_norm(block.exp_ch)
    if block.se_ch:  # 1x1 convs on the pooled vector
        cost.conv(1, 1, block.exp_ch, block.se_ch, bias=True)
        if block.se_bn:
            cost.batch_norm(block.se_ch)
        cost.conv(1, 1, block.se_ch, block.exp_ch, bias=True)
    cost.conv(out_side ** 2, 1, block.exp_ch, block.out_ch)
    cost.batch_norm(block.out_ch)
    return out_side


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
