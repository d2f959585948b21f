"""A network as data (`NetSpec`: stem, block table, head) and the one builder that renders it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import keras
from keras import layers

from keras_models.layers import (
    DENSE_INIT,
    BlockSpec,
    NetStyle,
    batch_norm,
    conv_bn_act,
    current_api,
    inverted_residual,
)

FEATURE_STRIDES = (2, 4, 8, 16, 32)
# The layers `build` names after the last block: the classifier (what `include_top` adds, and what a
# frozen-backbone run trains) and the whole head (absent from a `features_only` extractor).
CLASSIFIER_LAYERS = ("avg_pool", "head_hidden", "head_hidden_bn", "head_hidden_activation", "top_dropout",
                     "predictions")
HEAD_LAYERS = ("top_conv", "top_bn", "top_activation", *CLASSIFIER_LAYERS)


@dataclass(frozen=True)
class NetSpec:
    name: str
    stem_ch: int
    blocks: tuple[BlockSpec, ...]
    head_ch: int
    act: str = "swish"  # stem and head activation
    head_hidden: int = 0  # ReXNet-lite: Dense(1024) + BN + act between pooling and classifier
    head_hidden_act: str = "relu6"
    dropout: float = 0.2
    style: NetStyle = field(default_factory=NetStyle)
    default_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # in [0, 1] pixel units
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    family: str = "efficientnet"  # whose checkpoint layouts apply (weights.source_mapping): rexnet | efficientnet


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round to a multiple of `divisor` (TF/timm rule): never below `round_limit` of v."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def stage_letter(index: int) -> str:
    """keras.applications block letters: a..z, then aa, ab, ... (V2-L has 25 repeats)."""
    return chr(97 + index) if index < 26 else chr(96 + index // 26) + chr(97 + index % 26)


def preprocessing_layer(net: NetSpec) -> layers.Layer:
    """[0, 255] RGB -> normalised input, with constants (no weights, never the variance bug)."""
    K = current_api().module
    scale = [1.0 / (255.0 * s) for s in net.std]
    offset = [-m / s for m, s in zip(net.mean, net.std)]
    return K.layers.Rescaling(scale=scale, offset=offset, name="preprocessing")


def build(
    net: NetSpec,
    *,
    include_top: bool = True,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    num_classes: int = 1000,
    classifier_activation: str | None = "softmax",
    include_preprocessing: bool = True,
    features_only: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Render a NetSpec into a functional Keras model (keras.applications-compatible options).

    Renders with Keras 3 unless inside `keras_models.layers.keras_api(...)` (tfmot's tf_keras twin).
    """
    K = current_api().module
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if features_only and pooling is not None:
        raise ValueError(f"features_only=True returns the feature maps of every stride, unpooled: drop "
                         f"pooling={pooling!r} (or use include_top=False with pooling for one pooled vector)")
    if input_shape is None:
        input_shape = (net.default_size, net.default_size, 3)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    for side in input_shape[:2]:
        if side is not None and side < 32:
            raise ValueError(f"input_shape sides must be >= 32, got {input_shape}")
    if input_tensor is None:
        inputs = K.layers.Input(shape=input_shape, name="input_layer")
    elif K.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = K.layers.Input(tensor=input_tensor, shape=input_shape, name="input_layer")

    x = inputs
    if include_preprocessing:
        x = preprocessing_layer(net)(x)
    x = conv_bn_act(x, net.stem_ch, 3, 2, net.act, ("stem_conv", "stem_bn", "stem_activation"), net.style)
    for spec in net.blocks:
        x = inverted_residual(x, spec, net.style)
    name = name or net.name

    if features_only:
        trunk = K.Model(_source_inputs(inputs, input_tensor), x, name=name)
        return feature_extractor(trunk)
    options = {"include_top": include_top, "input_shape": tuple(inputs.shape[1:]), "pooling": pooling,
               "num_classes": num_classes, "classifier_activation": classifier_activation,
               "include_preprocessing": include_preprocessing, "name": name}

    x = conv_bn_act(x, net.head_ch, 1, 1, net.act, ("top_conv", "top_bn", "top_activation"), net.style)
    if include_top:
        x = K.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if net.head_hidden:
            x = K.layers.Dense(net.head_hidden, kernel_initializer=DENSE_INIT, name="head_hidden")(x)
            x = batch_norm(x, "head_hidden_bn", net.style)
            x = K.layers.Activation(net.head_hidden_act, name="head_hidden_activation")(x)
        if net.dropout > 0:
            x = K.layers.Dropout(net.dropout, name="top_dropout")(x)
        x = K.layers.Dense(
            num_classes, activation=classifier_activation,
            kernel_initializer=DENSE_INIT, bias_initializer="zeros", name="predictions",
            # Under a mixed policy the logits (and softmax) stay float32, as the Keras guide advises.
            dtype="float32" if _mixed_policy(K) else None,
        )(x)
    elif pooling == "avg":
        x = K.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = K.layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = K.Model(_source_inputs(inputs, input_tensor), x, name=name)
    # What `keras_models.inference_model` re-renders (untracked: not a weight, not saved).
    object.__setattr__(model, SPEC_RECORD, (net, options))
    return model


SPEC_RECORD = "_keras_models_build"


def rendered_spec(model: keras.Model) -> tuple[NetSpec, dict] | None:
    """(spec, build options) a model was rendered from by `build`; None for any other model
    (one loaded from a `.keras` file, a `features_only` extractor, a model of another library)."""
    return getattr(model, SPEC_RECORD, None)


def _mixed_policy(K) -> bool:
    policy = K.config.dtype_policy() if hasattr(K, "config") else K.mixed_precision.global_policy()
    return policy.name.startswith("mixed")


def _source_inputs(inputs, input_tensor):
    """Like keras.applications: a user's input tensor may have predecessors of its own."""
    K = current_api().module
    if input_tensor is not None and K.backend.is_keras_tensor(input_tensor):
        return K.utils.get_source_inputs(input_tensor)
    return inputs


_BLOCK_RE = re.compile(r"^(block\d+[a-z]+_)")


def feature_taps(model: keras.Model) -> list[dict]:
    """Last block of each resolution (timm convention): [{name, stride, channels, layer}].

    Works on any model whose blocks are named `block{stage}{letter}_...` (ours and
    keras.applications EfficientNets): a block's output is its last layer, and the stride
    is the product of conv strides met so far in topological order.
    """
    stride = 1
    last: dict[int, tuple[str, int]] = {}
    block_end: dict[str, keras.layers.Layer] = {}
    block_stride: dict[str, int] = {}
    for layer in model.layers:
        strides = getattr(layer, "strides", None)
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and strides:
            stride *= strides[0]
        m = _BLOCK_RE.match(layer.name)
        if m:
            block_end[m.group(1)] = layer
            block_stride[m.group(1)] = stride
    for prefix, layer in block_end.items():
        last[block_stride[prefix]] = (layer.name, layer.output.shape[-1])
    taps = []
    for s in FEATURE_STRIDES:
        if s in last:
            layer_name, channels = last[s]
            taps.append({"name": f"stride_{s}", "stride": s, "channels": int(channels), "layer": layer_name})
    if not taps:
        raise ValueError(f"model {model.name!r} has no 'block*' layers to take features from")
    return taps


def feature_extractor(model: keras.Model, layer_names: list[str] | None = None) -> keras.Model:
    """A model whose outputs are a dict `stride_{2..32}` -> feature map (see `feature_taps`).

    `layer_names` overrides the taps with explicit layers (outputs keyed by layer name).
    The result carries `feature_info` (name, stride, channels, layer) like timm's.
    """
    if layer_names:
        taps = [{"name": n, "stride": None, "channels": int(model.get_layer(n).output.shape[-1]), "layer": n}
                for n in layer_names]
    else:
        taps = feature_taps(model)
    outputs = {t["name"]: model.get_layer(t["layer"]).output for t in taps}
    features = keras.Model(model.inputs, outputs, name=model.name + "_features")
    features.feature_info = taps
    return features


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))
