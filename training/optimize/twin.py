"""The `tf_keras` twin of a network, for tensorflow-model-optimization (which accepts Keras 2 only).

The twin is rendered from the same `NetSpec` by the same builder as the Keras 3 model (only the
Keras module is swapped, see `keras_models.layers.keras_api`), so layer names match one to one
and weights move across by name in both directions. Importing this module imports tfmot, which
switches `tf.keras` to Keras 2 for the whole process: only the optimize child process does.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from keras_models.layers import KerasAPI, keras_api
from keras_models.spec import NetSpec, build


@tf_keras.utils.register_keras_serializable(package="keras_models")
class PartialResidual(tf_keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer,
                      tfmot.clustering.keras.ClusterableLayer):
    """ReXNet shortcut `out[..., :c] += shortcut` (see keras_models.layers.PartialResidual): no weights."""

    def call(self, inputs):
        shortcut, x = inputs
        return x + tf.pad(shortcut, [[0, 0]] * 3 + [[0, x.shape[-1] - shortcut.shape[-1]]])

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]

    def get_prunable_weights(self):
        return []

    def get_clusterable_weights(self):
        return []


TF_KERAS = KerasAPI(tf_keras, PartialResidual, tf_keras.layers.BatchNormalization)
CUSTOM_OBJECTS = {"PartialResidual": PartialResidual}


def build_twin(net: NetSpec, **build_options) -> tf_keras.Model:
    with keras_api(TF_KERAS):
        return build(net, **build_options)


def copy_weights(src, dst) -> None:
    """Copy every weighted layer of `src` into the layer of the same name in `dst` (Keras 3 or tf_keras).

    Variables are matched by name (`kernel`, `moving_mean`, ...). A tfmot `QuantizeWrapper`
    (`quant_stem_conv`) holds the original layer's variables under the original layer name
    (`stem_conv/kernel`) beside its quantizer ranges, which stay behind. Pruning and clustering
    wrappers must be stripped first (stripped clustered layers name their variables bare: `kernel:0`).
    A layer whose variables cannot all be found is an error, never a silent skip.
    """
    for layer in src.layers:
        if type(layer).__name__ == "QuantizeLayer":  # the input's range only
            continue
        inner = getattr(layer, "layer", layer)
        target = dst.get_layer(inner.name)
        if not target.weights:
            continue
        own = layer.weights if inner is layer else [w for w in layer.weights if _path(w).startswith(inner.name + "/")]
        by_name = {_short(_path(w)): w for w in own}
        missing = [_short(_path(w)) for w in target.weights if _short(_path(w)) not in by_name]
        if missing:
            raise ValueError(f"copying weights into {inner.name!r}: {layer.name!r} has no {', '.join(missing)}")
        target.set_weights([np.asarray(by_name[_short(_path(w))]) for w in target.weights])


def _path(w) -> str:
    """`layer/variable`: Keras 3 variables have `.path` (`.name` is the short name), tf_keras ones `.name`."""
    return getattr(w, "path", None) or w.name


def _short(path: str) -> str:
    """`block1a_bn/moving_mean:0` -> `moving_mean`; Keras 2's `depthwise_kernel` is Keras 3's `kernel`."""
    name = path.split("/")[-1].split(":")[0]
    return "kernel" if name == "depthwise_kernel" else name
