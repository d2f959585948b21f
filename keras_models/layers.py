"""Shared building blocks: conv-BN-act, squeeze-excite, partial residual, stochastic depth.

Every family renders its blocks through `inverted_residual`, so padding, epsilon and naming
rules live here once. Pure Keras 3 (`keras.layers`, `keras.ops`): builds on TF and JAX.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType

import keras
from keras import layers, ops

from keras_models import backend

# keras.applications initialisers (EfficientNet paper / TF reference).
# Configs, not instances (as keras.applications does): Keras 3 fixes an unseeded initializer
# instance's seed when it is created, so one shared instance would give every layer of a shape
# the very same starting weights.
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}
DENSE_INIT = {"class_name": "VarianceScaling",
              "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}}


@dataclass(frozen=True)
class NetStyle:
    """Numerics that must match the weights' origin (PyTorch-born vs TF-born)."""

    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.99
    # "same": TF SAME (right/bottom-heavy on even inputs); "symmetric": PyTorch k//2 on each side.
    padding: str = "same"
    dw_name: str = "dwconv"  # keras.applications V2 calls the depthwise conv "dwconv2"

    def describe(self) -> str:
        """What the weights must have been trained with, e.g. for `keras-models convert` and `info`."""
        padding = "TF SAME padding" if self.padding == "same" else "PyTorch symmetric padding"
        return f"{padding}, BatchNorm eps {self.bn_epsilon:.0e}".replace("e-0", "e-")


# Weights trained in PyTorch (timm's native models, ReXNet): symmetric k//2 padding, eps 1e-5,
# PyTorch's momentum 0.1 (Keras 0.9).
PYTORCH_STYLE = NetStyle(bn_epsilon=1e-5, bn_momentum=0.9, padding="symmetric")


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual (MBConv / ReXNet linear bottleneck / fused MBConv) block."""

    name: str  # layer-name prefix, e.g. "block2a_"
    stage: int  # 0-based stage index
    index: int  # 0-based repeat index inside the stage
    in_ch: int
    out_ch: int
    exp_ch: int  # width after expansion; == in_ch means no expansion conv
    kernel: int = 3
    stride: int = 1
    se_ch: int = 0  # SE hidden width, 0 = no SE
    act: str = "swish"  # after expansion
    dw_act: str = "swish"  # after depthwise (ReXNet: relu6, applied after SE)
    se_act: str = "swish"
    se_bn: bool = False  # ReXNet puts a BatchNorm inside SE
    act_after_se: bool = False  # ReXNet: dw -> BN -> SE -> act; EfficientNet: dw -> BN -> act -> SE
    fused: bool = False  # EfficientNetV2 fused-MBConv: the expansion conv is k x k and strided
    edge: bool = False  # fused with its k x k expansion conv even at ratio 1 (timm's EdgeResidual `er_..._e1`)
    residual: str = "none"  # "none" | "add" | "partial" (ReXNet: add into the first in_ch channels)
    drop_rate: float = 0.0  # stochastic depth on the residual branch


@keras.saving.register_keras_serializable(package="keras_models")
class PartialResidual(layers.Layer):
    """ReXNet shortcut: `out[..., :c] += shortcut`, other channels pass through (no parameters).

    Written as `x + zero-padded shortcut` (exactly equal in float): one PAD and one ADD, which
    int8 TFLite runs at a single scale, where slice + add + concat needs requantizing.
    """

    def call(self, inputs):
        shortcut, x = inputs
        return x + ops.pad(shortcut, [[0, 0]] * 3 + [[0, x.shape[-1] - shortcut.shape[-1]]])

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]


@keras.saving.register_keras_serializable(package="keras_models")
class BatchNormalization(layers.BatchNormalization):
    """Keras BatchNormalization whose training step runs TF's fused kernel where it applies.

    Same variables, same moving-average updates (biased batch variance) and the same outputs as
    Keras' own layer; forward and backward are one op each instead of moments + normalize (a 1.3x
    faster EfficientNet-B0 train step on 2 CPU cores). The class keeps Keras' name on purpose:
    `.weights.h5` files key layers by class name, so files from either class load into the other.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (training and self.trainable and mask is None and not self.renorm and not self.synchronized
                   and self.scale and self.center and backend.fused_batch_norm_available(inputs, self.axis))
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, "float32")
        y, mean, variance = backend.fused_batch_norm(
            x, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"), self.epsilon)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(y, self.compute_dtype)


@dataclass(frozen=True)
class KerasAPI:
    """The Keras the builders render with: Keras 3 here; `tf_keras` for tensorflow-model-optimization.

    tfmot accepts only Keras 2 (`tf_keras`) models, so its twin of a network is rendered from the
    very same spec by this same code, with `module` swapped; `partial_residual` is the one custom layer.
    """

    module: ModuleType
    partial_residual: type
    batch_norm: type


_KERAS3 = KerasAPI(keras, PartialResidual, BatchNormalization)
_API: ContextVar[KerasAPI] = ContextVar("keras_api", default=_KERAS3)


@dataclass(frozen=True)
class Render:
    """How the builders render a spec: the training graph (default) or the inference graph.

    `inference`: every BatchNorm is folded into the conv/dense before it (which gains a bias),
    and each depthwise conv + BN + activation + SE sequence becomes one `DepthwiseSE` unit,
    whose computation is XLA-compiled when `jit` (see `backend.use_jit`).
    """

    inference: bool = False
    jit: bool = False


_RENDER: ContextVar[Render] = ContextVar("render", default=Render())  # noqa: B039 (frozen)


@contextmanager
def _setting(var: ContextVar, value) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def rendering(render: Render):
    """Render specs this way inside the block (`keras_models.inference_model` uses it)."""
    return _setting(_RENDER, render)


def keras_api(api: KerasAPI):
    """Build models with another Keras-compatible API inside this block."""
    return _setting(_API, api)


def current_api() -> KerasAPI:
    return _API.get()


def _layers() -> ModuleType:
    return _API.get().module.layers


def _pad_conv(x, conv, kernel: int, stride: int, style: NetStyle, name: str):
    """Apply `conv` with the style's padding: symmetric stride-2 needs an explicit ZeroPadding2D."""
    if style.padding == "symmetric" and stride > 1:
        x = _layers().ZeroPadding2D(kernel // 2, name=name + "_pad")(x)
    return conv(x)


def conv_bn_act(
    x,
    filters: int,
    kernel: int,
    stride: int,
    act: str | None,
    names: tuple[str, str, str],
    style: NetStyle,
    depthwise: bool = False,
):
    """Conv (no bias) -> BatchNorm -> activation, named (conv, bn, act) like keras.applications."""
    conv_name, bn_name, act_name = names
    pad = "valid" if style.padding == "symmetric" and stride > 1 else "same"
    bias = _RENDER.get().inference  # the folded BatchNorm's shift
    if depthwise:
        conv = _layers().DepthwiseConv2D(
            kernel, stride, padding=pad, use_bias=bias,
            depthwise_initializer=CONV_INIT, name=conv_name,
        )
    else:
        conv = _layers().Conv2D(
            filters, kernel, stride, padding=pad, use_bias=bias,
            kernel_initializer=CONV_INIT, name=conv_name,
        )
    x = _pad_conv(x, conv, kernel, stride, style, conv_name)
    x = batch_norm(x, bn_name, style)
    if act:
        x = _layers().Activation(act, name=act_name)(x)
    return x


def batch_norm(x, name: str, style: NetStyle):
    """BatchNorm after a conv/dense; the inference graph has it folded into that layer instead."""
    if _RENDER.get().inference:
        return x
    return _API.get().batch_norm(axis=-1, momentum=style.bn_momentum, epsilon=style.bn_epsilon, name=name)(x)


def squeeze_excite(x, spec: BlockSpec, style: NetStyle):
    """Global pool -> 1x1 reduce (bias) [-> BN] -> act -> 1x1 expand (bias) -> sigmoid -> scale."""
    p, channels = spec.name, x.shape[-1]
    se = _layers().GlobalAveragePooling2D(name=p + "se_squeeze")(x)
    se = _layers().Reshape((1, 1, channels), name=p + "se_reshape")(se)
    reduce_act = None if spec.se_bn else spec.se_act
    se = _layers().Conv2D(
        spec.se_ch, 1, padding="same", activation=reduce_act,
        kernel_initializer=CONV_INIT, name=p + "se_reduce",
    )(se)
    if spec.se_bn:
        se = batch_norm(se, p + "se_bn", style)
        se = _layers().Activation(spec.se_act, name=p + "se_activation")(se)
    se = _layers().Conv2D(
        channels, 1, padding="same", activation="sigmoid",
        kernel_initializer=CONV_INIT, name=p + "se_expand",
    )(se)
    return _layers().multiply([x, se], name=p + "se_excite")


def stochastic_depth(x, rate: float, name: str):
    """Drop the whole residual branch per sample (keras.applications' `drop` layer)."""
    if rate > 0:
        x = _layers().Dropout(rate, noise_shape=(None, 1, 1, 1), name=name)(x)
    return x


def inverted_residual(inputs, spec: BlockSpec, style: NetStyle):
    """Render one block from its spec (names follow keras.applications EfficientNet)."""
    p, x = spec.name, inputs
    if spec.fused:
        if spec.exp_ch != spec.in_ch or spec.edge:  # k x k expansion, then 1x1 projection
            x = conv_bn_act(
                x, spec.exp_ch, spec.kernel, spec.stride, spec.act,
                (p + "expand_conv", p + "expand_bn", p + "expand_activation"), style,
            )
            if spec.se_ch:
                x = squeeze_excite(x, spec, style)
            x = conv_bn_act(x, spec.out_ch, 1, 1, None, (p + "project_conv", p + "project_bn", ""), style)
        else:  # a single k x k conv with activation
            x = conv_bn_act(
                x, spec.out_ch, spec.kernel, spec.stride, spec.act,
                (p + "project_conv", p + "project_bn", p + "project_activation"), style,
            )
    else:
        if spec.exp_ch != spec.in_ch:
            x = conv_bn_act(
                x, spec.exp_ch, 1, 1, spec.act,
                (p + "expand_conv", p + "expand_bn", p + "expand_activation"), style,
            )
        if _RENDER.get().inference:
            x = DepthwiseSE.from_spec(spec, style, jit=_RENDER.get().jit)(x)
        else:
            dw_act = None if spec.act_after_se else spec.dw_act
            x = conv_bn_act(
                x, 0, spec.kernel, spec.stride, dw_act,
                (p + style.dw_name, p + "bn", p + "activation"), style, depthwise=True,
            )
            if spec.se_ch:
                x = squeeze_excite(x, spec, style)
            if spec.act_after_se:
                x = _layers().Activation(spec.dw_act, name=p + "activation")(x)
        x = conv_bn_act(x, spec.out_ch, 1, 1, None, (p + "project_conv", p + "project_bn", ""), style)

    if spec.residual == "add":
        x = stochastic_depth(x, spec.drop_rate, p + "drop")
        x = _layers().add([x, inputs], name=p + "add")
    elif spec.residual == "partial":
        x = stochastic_depth(x, spec.drop_rate, p + "drop")
        x = _API.get().partial_residual(name=p + "add")([inputs, x])
    return x


@keras.saving.register_keras_serializable(package="keras_models")
class DepthwiseSE(layers.Layer):
    """The inference hot path of a block as one unit: depthwise conv (BN folded into its bias)
    -> activation -> squeeze-excite (its BN folded too, 1x1 convs as matmuls) [-> activation].

    Equal to the layers it replaces (tests check every family); `jit` compiles the unit as one
    XLA cluster, which pays on GPU, not on CPU. Weights come from a training-graph model through
    `keras_models.inference_model`, which names the source layers in `sources`.
    """

    def __init__(self, kernel: int, stride: int, padding: str, act: str, se_ch: int = 0,
                 se_act: str = "swish", act_after_se: bool = False, jit: bool = False,
                 sources: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.act, self.se_ch, self.se_act, self.act_after_se, self.jit = act, se_ch, se_act, act_after_se, jit
        self.sources = dict(sources or {})
        self._compute = backend.compiled(self._unit, jit)

    @classmethod
    def from_spec(cls, spec: BlockSpec, style: NetStyle, jit: bool = False) -> DepthwiseSE:
        p = spec.name
        sources = {"dw": p + style.dw_name}  # with their BatchNorms folded in (`inference.folded_weights`)
        if spec.se_ch:
            sources.update(se_reduce=p + "se_reduce", se_expand=p + "se_expand")
        return cls(spec.kernel, spec.stride, style.padding, spec.dw_act, spec.se_ch, spec.se_act,
                   spec.act_after_se, jit, sources, name=p + "dwse")

    def build(self, input_shape):
        c = input_shape[-1]
        self.dw_kernel = self.add_weight(shape=(self.kernel, self.kernel, c, 1), name="depthwise_kernel")
        self.dw_bias = self.add_weight(shape=(c,), initializer="zeros", name="bias")
        if self.se_ch:
            self.se_reduce_kernel = self.add_weight(shape=(c, self.se_ch), name="se_reduce_kernel")
            self.se_reduce_bias = self.add_weight(shape=(self.se_ch,), initializer="zeros", name="se_reduce_bias")
            self.se_expand_kernel = self.add_weight(shape=(self.se_ch, c), name="se_expand_kernel")
            self.se_expand_bias = self.add_weight(shape=(c,), initializer="zeros", name="se_expand_bias")

    def _unit(self, x):
        act = keras.activations.get(self.act)
        pad = "same"
        if self.padding == "symmetric" and self.stride > 1:
            k = self.kernel // 2
            x, pad = ops.pad(x, [[0, 0], [k, k], [k, k], [0, 0]]), "valid"
        x = ops.depthwise_conv(x, self.dw_kernel, self.stride, pad) + self.dw_bias
        if not self.act_after_se:
            x = act(x)
        if self.se_ch:
            s = ops.mean(x, axis=(1, 2))
            s = keras.activations.get(self.se_act)(ops.matmul(s, self.se_reduce_kernel) + self.se_reduce_bias)
            s = ops.sigmoid(ops.matmul(s, self.se_expand_kernel) + self.se_expand_bias)
            x = x * s[:, None, None, :]
        if self.act_after_se:
            x = act(x)
        return x

    def call(self, x):
        return self._compute(x)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        if self.stride > 1:
            h = None if h is None else -(-h // self.stride)
            w = None if w is None else -(-w // self.stride)
        return (n, h, w, c)

    def get_config(self):
        return {**super().get_config(), "kernel": self.kernel, "stride": self.stride, "padding": self.padding,
                "act": self.act, "se_ch": self.se_ch, "se_act": self.se_act, "act_after_se": self.act_after_se,
                "jit": self.jit, "sources": self.sources}
