"""The four tfmot methods on a `tf_keras` twin: QAT, pruning, weight clustering, prune-preserving QAT.

Each `apply_*` wraps the given model's own layers (its weights carry over) and returns the model to
fine-tune; `strip` gives back a plain model (same layer names) whose weights are deployable.
Which layers each method touches:
- QAT: every layer; tfmot's registry knows the standard ones, and the three it does not
  (SE `Multiply`, `Rescaling` preprocessing, ReXNet `PartialResidual`) get `OutputQuantizeConfig`:
  no weights to quantize, output quantized like an `Add`.
- pruning / clustering: the 1x1 and kxk `Conv2D`s and `Dense`s (nearly all parameters); never the
  3-channel stem conv or depthwise kernels (9 weights per channel, which pruning would gut).
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot
import tf_keras

from training.optimize.twin import CUSTOM_OBJECTS, PartialResidual

Q = tfmot.quantization.keras
METHODS = ("qat", "prune", "cluster", "prune+qat")


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


def apply_qat(model: tf_keras.Model, preserve_sparsity: bool = False) -> tf_keras.Model:
    """Fake-quantized model (int8 weights per channel, int8 activations) that trains in float.

    BatchNorm statistics are frozen: QAT learns the int8 grid around the trained float function,
    and re-estimating statistics from a few fine-tuning batches only moves it away.
    """
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.trainable = False
    scheme = None
    if preserve_sparsity:  # keep the zeros pruning made while QAT moves the other weights
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    with Q.quantize_scope(SCOPE):
        annotated = tf_keras.models.clone_model(model, clone_function=_annotate)
        return Q.quantize_apply(annotated, scheme) if scheme else Q.quantize_apply(annotated)


def _compressible(layer) -> bool:
    """Conv2D (not the stem) and Dense: where the parameters are."""
    if isinstance(layer, tf_keras.layers.Dense):
        return True
    return isinstance(layer, tf_keras.layers.Conv2D) and not isinstance(layer, tf_keras.layers.DepthwiseConv2D) \
        and layer.name != "stem_conv"


def apply_pruning(model: tf_keras.Model, sparsity: float, steps: int) -> tuple[tf_keras.Model, list]:
    """Magnitude pruning ramped from 0 to `sparsity` over the first 2/3 of the steps, then held."""
    sparsity_api = tfmot.sparsity.keras
    schedule = sparsity_api.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                            end_step=max(1, int(steps * 2 / 3)), frequency=max(1, steps // 50))

    def wrap(layer):
        return sparsity_api.prune_low_magnitude(layer, pruning_schedule=schedule) if _compressible(layer) else layer

    pruned = tf_keras.models.clone_model(model, clone_function=wrap)
    return pruned, [sparsity_api.UpdatePruningStep()]


def apply_clustering(model: tf_keras.Model, clusters: int) -> tf_keras.Model:
    """Each compressible kernel shares `clusters` values (k-means++ initialised), fine-tuned."""
    cluster = tfmot.clustering.keras
    init = cluster.CentroidInitialization.KMEANS_PLUS_PLUS

    def wrap(layer):
        if not _compressible(layer):
            return layer
        return cluster.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=init)

    return tf_keras.models.clone_model(model, clone_function=wrap)


def strip(model: tf_keras.Model) -> tf_keras.Model:
    """Remove pruning and clustering wrappers (QAT wrappers stay: the converter reads their ranges)."""
    model = tfmot.sparsity.keras.strip_pruning(model)
    return tfmot.clustering.keras.strip_clustering(model)


def _kernels(model: tf_keras.Model) -> list:
    """The compressible kernels' values, read through QAT wrappers (whose `layer.kernel` is symbolic)."""
    kernels = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not _compressible(inner):
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
