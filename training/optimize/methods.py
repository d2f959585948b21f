"""The four tfmot methods on a `tf_keras` twin: QAT, pruning, weight clustering, prune-preserving QAT.

Each `apply_*` wraps the given model's own layers (its weights carry over) and returns the model to
fine-tune; `strip` gives back a plain model (same layer names) whose weights are deployable.
Which layers each method touches:
- QAT: every layer; tfmot's registry knows the standard ones, and the three it does not
  (SE `Multiply`, `Rescaling` preprocessing, ReXNet `PartialResidual`) get `OutputQuantizeConfig`:
  no weights to quantize, output quantized like an `Add`.
- pruning / clustering: the 1x1 and kxk `Conv2D`s and `Dense`s (nearly all parameters); never the
  3-channel stem conv or depthwise kernels (9 weights per channel, which pruning would gut).
  Pruning zeroes 1x1-conv and dense weights in blocks of `block` consecutive input channels: TFLite
  stores those kernels as [out, in], so a block is a run of zero bytes that gzip packs (random
  zeros at 75% compress 2.7x, blocks of 4 about 3.2x).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

from training.optimize.twin import CUSTOM_OBJECTS, PartialResidual

Q = tfmot.quantization.keras


class OutputQuantizeConfig(Q.QuantizeConfig):
    """No weights, 8-bit asymmetric output (moving-average range), as tfmot's `Add` has."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [Q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


OUTPUT_QUANTIZED = (tf_keras.layers.Multiply, tf_keras.layers.Rescaling, PartialResidual)
SCOPE = {**CUSTOM_OBJECTS, "OutputQuantizeConfig": OutputQuantizeConfig}


def _annotate(layer):
    if isinstance(layer, tf_keras.layers.InputLayer):
        return layer
    if isinstance(layer, OUTPUT_QUANTIZED):
        return Q.quantize_annotate_layer(layer, quantize_config=OutputQuantizeConfig())
    return Q.quantize_annotate_layer(layer)


def apply_qat(model: tf_keras.Model, preserve_sparsity: bool = False,
              calibration: Iterable[np.ndarray] = ()) -> tf_keras.Model:
    """Fake-quantized model (int8 weights per channel, int8 activations) that trains in float.

    BatchNorm statistics are frozen: QAT learns the int8 grid around the trained float function,
    and re-estimating statistics from a few fine-tuning batches only moves it away. Activation
    ranges start from `calibration` batches (`calibrate_ranges`), where post-training int8 starts.
    """
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.trainable = False
    scheme = None
    if preserve_sparsity:  # keep the zeros pruning made while QAT moves the other weights
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    with Q.quantize_scope(SCOPE):
        annotated = tf_keras.models.clone_model(model, clone_function=_annotate)
        qat = Q.quantize_apply(annotated, scheme) if scheme else Q.quantize_apply(annotated)
    calibrate_ranges(qat, calibration)
    return qat


def calibrate_ranges(qat: tf_keras.Model, batches: Iterable[np.ndarray]) -> int:
    """Set every activation range to the min/max the model's tensors reach over `batches` (with
    0 inside, as TFLite needs) and every weight range to its weights, as post-training int8
    calibrates; returns how many activation ranges were set.

    Why: tfmot starts each range at [-6, 6] and moves it by an exponential average with decay
    0.999, so after a short fine-tune (3 epochs of 22 steps on digits) the converted model still
    quantizes with ranges 94% the default: tensors beyond 6 clip and an SE gate in [0, 1] gets a
    twelfth of the int8 grid. The layers run in inference mode (no dropout, frozen BatchNorm)
    while tfmot's own range ops observe, switched to training for the pass.
    """
    names = ("LastValueQuantize", "MovingAvgQuantize", "AllValuesQuantize")
    originals = {name: getattr(quant_ops, name) for name in names}
    seen: set[int] = set()

    def weights(inputs, min_var, max_var, **kwargs):  # the range of the weights themselves
        return originals["LastValueQuantize"](inputs, min_var, max_var, **{**kwargs, "is_training": True})

    def activations(inputs, min_var, max_var, per_channel=False, ema_decay=None, **kwargs):
        if per_channel:  # none in the 8-bit schemes; left to the fine-tune
            return originals["MovingAvgQuantize"](inputs, min_var, max_var, per_channel=True, **kwargs)
        if id(min_var) not in seen:  # forget the [-6, 6] default, then min/max over every batch
            seen.add(id(min_var))
            min_var.assign(tf.zeros_like(min_var))
            max_var.assign(tf.zeros_like(max_var))
        return originals["AllValuesQuantize"](inputs, min_var, max_var, **{**kwargs, "is_training": True})

    patched = {"LastValueQuantize": weights, "MovingAvgQuantize": activations, "AllValuesQuantize": activations}
    for name in names:
        setattr(quant_ops, name, patched[name])
    try:
        for x in batches:
            qat(tf.convert_to_tensor(x), training=False)  # eager, so every range op is a patched one
    finally:
        for name in names:
            setattr(quant_ops, name, originals[name])
    return len(seen)


def compressible(layer) -> bool:
    """Conv2D (not the stem) and Dense: where the parameters are."""
    if isinstance(layer, tf_keras.layers.Dense):
        return True
    return isinstance(layer, tf_keras.layers.Conv2D) and not isinstance(layer, tf_keras.layers.DepthwiseConv2D) \
        and layer.name != "stem_conv"


class Pointwise(tf_keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """A 1x1 `Conv2D` holding its kernel as (in, out): tfmot prunes in blocks only 2-D kernels.

    It stands in for the conv only while pruning; `strip` puts the `Conv2D` back.
    """

    def __init__(self, conv_config: dict, **kwargs):
        super().__init__(name=conv_config["name"], **kwargs)
        self.conv_config = conv_config
        self.activation = tf_keras.activations.get(conv_config["activation"])

    @classmethod
    def of(cls, conv: tf_keras.layers.Conv2D) -> Pointwise:
        layer = cls(conv.get_config())
        layer.build(conv.kernel.shape[-2])
        layer.set_weights([w.numpy().reshape(v.shape) for w, v in zip(conv.weights, layer.weights)])
        return layer

    def build(self, input_shape):
        channels = input_shape if isinstance(input_shape, int) else input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(channels, self.conv_config["filters"]))
        self.bias = self.add_weight(name="bias", shape=(self.conv_config["filters"],), initializer="zeros") \
            if self.conv_config["use_bias"] else None
        self.built = True

    def call(self, x):
        y = tf.tensordot(x, self.kernel, 1)
        return self.activation(y if self.bias is None else tf.nn.bias_add(y, self.bias))

    def get_prunable_weights(self):
        return [self.kernel]

    def get_config(self):
        return {"conv_config": self.conv_config}

    def conv(self) -> tf_keras.layers.Conv2D:
        conv = tf_keras.layers.Conv2D.from_config(self.conv_config)
        conv.build((None, None, None, self.kernel.shape[0]))
        conv.set_weights([w.numpy().reshape(v.shape) for w, v in zip(self.weights, conv.weights)])
        return conv


def _pointwise(layer) -> bool:
    return (type(layer) is tf_keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.strides) == (1, 1) and layer.groups == 1)


def _block_of(layer, block: int) -> int:
    """Pruning block along input channels: 1x1 convs and dense layers only (kxk convs weight by weight)."""
    return block if isinstance(layer, tf_keras.layers.Dense) or _pointwise(layer) else 1


def magnitude_prune(kernel: np.ndarray, sparsity: float, block: int = 1) -> np.ndarray:
    """`kernel` with its smallest-magnitude `sparsity` zeroed, scoring blocks of `block` input
    channels by their mean |w| as tfmot's block pruning does (input channels are axis -2)."""
    score = np.abs(kernel.reshape(-1, *kernel.shape[-2:]))  # (taps, in, out)
    if block > 1:
        whole = score.shape[1] // block * block
        pooled = score[:, :whole].reshape(score.shape[0], -1, block, score.shape[2]).mean(axis=2)
        score = np.concatenate([np.repeat(pooled, block, axis=1), score[:, whole:]], axis=1)
    k = int(round(sparsity * score.size))
    if k == 0:
        return kernel
    threshold = np.partition(score.ravel(), k - 1)[k - 1]
    return np.where(score.reshape(kernel.shape) <= threshold, 0, kernel).astype(kernel.dtype)


LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)  # per-layer sparsities the scan tries


def allocate_sparsity(model: tf_keras.Model, images: np.ndarray, sparsity: float, block: int = 4,
                      progress: Callable[[list], Iterable] = iter) -> dict[str, float]:
    """Per-layer sparsities that reach `sparsity` over all compressible weights where removing
    them costs least (a one-shot sensitivity scan, as in Han et al. 2015 and Distiller).

    Each layer alone is magnitude-pruned to each of `LEVELS`; the cost is the KL divergence of
    the model's predictions on `images` from its own unpruned ones. Sparsities then minimise the
    summed cost for the weights removed (a Lagrangian search over a price per weight), the one
    layer at the margin taking a fraction so the total is exact. Why: layers differ by orders of
    magnitude. On digits, ReXNet 1.0x keeps 96-97% with its SE convs 95% pruned, but drops to
    35-45% with its expand or project convs 75% pruned; uniform 75% left 51% one-shot, this
    allocation 97%. `progress` wraps the list of layers scanned (e.g. in a tqdm bar).
    """
    if sparsity > LEVELS[-1]:
        raise ValueError(f"sparsity {sparsity} is above the scan's highest level {LEVELS[-1]}")
    predict = tf.function(lambda x: tf.nn.log_softmax(model(x, training=False)))
    reference = predict(images).numpy()
    costs, sizes = {}, {}
    for layer in progress([layer for layer in model.layers if compressible(layer)]):
        kernel = layer.kernel.numpy()
        sizes[layer.name], cost = kernel.size, [0.0]
        for level in LEVELS[1:]:
            layer.kernel.assign(magnitude_prune(kernel, level, _block_of(layer, block)))
            log_q = predict(images).numpy()
            cost.append(float((np.exp(reference) * (reference - log_q)).sum(axis=1).mean()))
        layer.kernel.assign(kernel)
        costs[layer.name] = cost
    needed = sparsity * sum(sizes.values())

    def pick(price: float) -> dict[str, float]:
        return {name: LEVELS[int(np.argmin([c - price * sizes[name] * s for c, s in zip(cost, LEVELS)]))]
                for name, cost in costs.items()}

    def removed(choice: dict[str, float]) -> float:
        return sum(sizes[name] * s for name, s in choice.items())

    low, high = 0.0, 1e-9
    while removed(pick(high)) < needed:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (low, mid) if removed(pick(mid)) >= needed else (mid, high)
    choice, above = pick(low), pick(high)
    for name in [n for n in choice if choice[n] != above[n]]:  # the margin: raise until exact
        step = sizes[name] * (above[name] - choice[name])
        gap = needed - removed(choice)
        if gap <= 0:
            break
        choice[name] = choice[name] + (above[name] - choice[name]) * min(1.0, gap / step)
    return choice


def apply_pruning(model: tf_keras.Model, sparsity: float | dict[str, float], steps: int,
                  block: int = 4) -> tuple[tf_keras.Model, list, int]:
    """Magnitude pruning ramped from 0 to each layer's final sparsity over the first half of the
    steps, then held (the network recovers in the second half). Returns the model, its callbacks
    and the step from which every mask is final.

    `sparsity` is one fraction for every compressible layer or a per-layer table
    (`allocate_sparsity`); layers absent from it stay dense. 1x1 convs and dense layers lose
    weights in blocks of `block` input channels (1 = any weight); kxk convs weight by weight.
    """
    sparsity_api = tfmot.sparsity.keras
    end = max(1, steps // 2)

    def wrap(layer):
        final = sparsity.get(layer.name, 0.0) if isinstance(sparsity, dict) else sparsity
        if not compressible(layer) or final <= 0:
            return layer
        schedule = sparsity_api.PolynomialDecay(initial_sparsity=0.0, final_sparsity=final, begin_step=0,
                                                end_step=end, frequency=max(1, steps // 50))
        blocks = (_block_of(layer, block), 1)
        if blocks[0] > 1 and _pointwise(layer):
            layer = Pointwise.of(layer)
        return sparsity_api.prune_low_magnitude(layer, pruning_schedule=schedule, block_size=blocks)

    pruned = tf_keras.models.clone_model(model, clone_function=wrap)
    return pruned, [sparsity_api.UpdatePruningStep()], end


def apply_clustering(model: tf_keras.Model, clusters: int) -> tf_keras.Model:
    """Each compressible kernel shares `clusters` values (k-means++ initialised), fine-tuned."""
    cluster = tfmot.clustering.keras
    init = cluster.CentroidInitialization.KMEANS_PLUS_PLUS

    def wrap(layer):
        if not compressible(layer):
            return layer
        return cluster.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=init)

    return tf_keras.models.clone_model(model, clone_function=wrap)


def recalibrate_batch_norm(model: tf_keras.Model, batches) -> None:
    """Set every BatchNorm's moving mean and variance to their average over `batches` (BN adaptation).

    Pruning and clustering shift each conv's output statistics faster than the moving averages
    follow: on ReXNet 1.0x, 50% pruning alone left 35% accuracy with the old statistics, 95% with
    re-estimated ones.
    """
    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    saved = [(bn.momentum, bn.trainable) for bn in norms]
    for bn in norms:
        bn.trainable = True  # a frozen Keras 2 BatchNorm ignores training=True
    for k, x in enumerate(batches):
        for bn in norms:
            bn.momentum = k / (k + 1)  # a running mean over the batches seen so far
        model(x, training=True)
    for bn, (momentum, trainable) in zip(norms, saved):
        bn.momentum, bn.trainable = momentum, trainable


def strip(model: tf_keras.Model) -> tf_keras.Model:
    """Remove pruning and clustering wrappers (QAT wrappers stay: the converter reads their ranges)."""
    model = tfmot.sparsity.keras.strip_pruning(model)
    if any(isinstance(layer, Pointwise) for layer in model.layers):
        model = tf_keras.models.clone_model(
            model, clone_function=lambda layer: layer.conv() if isinstance(layer, Pointwise) else layer)
    return tfmot.clustering.keras.strip_clustering(model)


def _kernels(model: tf_keras.Model) -> list:
    """The compressible kernels' values, read through QAT wrappers (whose `layer.kernel` is symbolic)."""
    kernels = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not compressible(inner):
            continue
        if inner is layer:
            kernels.append(layer.kernel.numpy())
        else:  # a QAT wrapper holds the variable under the inner layer's name
            kernels += [w.numpy() for w in layer.weights if w.name.split(":")[0] == f"{inner.name}/kernel"]
    return kernels


def sparsity_of(model: tf_keras.Model) -> float:
    """Fraction of exact zeros across the compressible kernels."""
    kernels = _kernels(model)
    return sum(int((k == 0).sum()) for k in kernels) / max(sum(k.size for k in kernels), 1)


def unique_values(model: tf_keras.Model) -> int:
    """The most distinct values in any compressible kernel (the cluster count after clustering)."""
    return max((len(set(k.ravel().tolist())) for k in _kernels(model)), default=0)
