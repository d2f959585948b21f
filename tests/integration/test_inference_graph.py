"""The hot path: the fused BatchNorm kernel and the inference graph equal the plain Keras graph."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import randomize
from keras import layers

import keras_models as km
from keras_models.layers import BatchNormalization, DepthwiseSE

# One model per block type: SE-with-BN + partial residual + symmetric padding (rexnet), lite head
# (rexnet_lite), MBConv+SE (B0), ReLU6 Lite, fused MBConv (V2-B0).
MODELS = ["rexnet_100", "rexnet_lite_100", "tf_efficientnet_b0", "tf_efficientnet_lite0", "tf_efficientnetv2_b0"]


@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])  # ReXNet (PyTorch-born) and EfficientNet (TF-born)
def test_fused_batch_norm_trains_exactly_like_keras(epsilon):
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 9, 9, 16)).astype("float32"))
    ours = BatchNormalization(epsilon=epsilon, momentum=0.9)
    theirs = layers.BatchNormalization(epsilon=epsilon, momentum=0.9)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.set_weights([np.linspace(0.5, 1.5, 16), np.linspace(-1, 1, 16), np.zeros(16), np.ones(16)])
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance])
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # it really ran the fused kernel: Keras' own layer has no FusedBatchNormV3 in its graph
    graph = tf.function(lambda t: ours(t, training=True)).get_concrete_function(x).graph
    assert any(op.type == "FusedBatchNormV3" for op in graph.get_operations())
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_under_mixed_float16():
    """The GPU path (float16 activations, float32 statistics) is correct on the CPU too."""
    x = tf.constant(np.random.default_rng(1).normal(0, 2, (2, 8, 8, 8)).astype("float16"))
    ours = BatchNormalization(dtype="mixed_float16")
    theirs = layers.BatchNormalization(dtype="mixed_float16")
    a, b = ours(x, training=True), theirs(x, training=True)
    assert a.dtype == b.dtype == tf.float16
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=2e-2)
    np.testing.assert_allclose(ours.moving_variance, theirs.moving_variance, rtol=1e-3)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.slow
def test_inference_graph_equals_training_graph(name):
    model = km.create_model(name, input_shape=(64, 64, 3), classifier_activation=None, num_classes=10)
    randomize(model)  # real BN statistics to fold, not the identity ones
    fast = km.inference_model(model, jit_compile="off")
    kinds = {type(layer) for layer in fast.layers}
    assert not any(issubclass(k, layers.BatchNormalization) for k in kinds)
    assert DepthwiseSE in kinds or name.startswith("efficientnetv2")  # V2-B0's first stages are fused MBConv
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    ref = model.predict(x, verbose=0)
    out = fast.predict(x, verbose=0)
    assert np.abs(ref).max() > 1e-2  # a real signal, not all zeros
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.slow
def test_xla_compiled_units_equal_plain_graph():
    """`jit_compile=on` (the GPU policy) compiles each fused unit with XLA; same numbers on CPU."""
    model = km.create_model("rexnet_100", input_shape=(64, 64, 3), classifier_activation=None, num_classes=10)
    randomize(model)
    fast = km.inference_model(model, jit_compile="on")
    assert all(layer.jit for layer in fast.layers if isinstance(layer, DepthwiseSE))
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    ref = model(x, training=False).numpy()
    np.testing.assert_allclose(fast(x).numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.slow
def test_inference_graph_saves_and_loads(tmp_path):
    model = km.create_model("tf_efficientnet_lite0", input_shape=(64, 64, 3), num_classes=5)
    randomize(model)
    fast = km.inference_model(model, jit_compile="off")
    fast.save(tmp_path / "fast.keras")
    import keras

    again = keras.models.load_model(tmp_path / "fast.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), fast.predict(x, verbose=0), atol=1e-6)


def test_inference_model_refuses_foreign_models():
    import keras

    with pytest.raises(ValueError, match="built by keras_models"):
        km.inference_model(keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3)))


@pytest.mark.slow
def test_weights_files_load_across_the_batch_norm_classes(tmp_path):
    """`.weights.h5` keys layers by class name: files written before the fused BatchNorm (with
    Keras' own class) must load unchanged, and ours must load into plain Keras."""
    import keras

    from keras_models.layers import KerasAPI, PartialResidual, keras_api
    from keras_models.models import get_entry
    from keras_models.spec import build

    with keras_api(KerasAPI(keras, PartialResidual, layers.BatchNormalization)):
        plain = build(get_entry("rexnet_100").make_spec(), input_shape=(32, 32, 3), num_classes=4)
    assert not any(isinstance(layer, BatchNormalization) for layer in plain.layers)
    randomize(plain)
    plain.save_weights(tmp_path / "plain.weights.h5")
    ours = km.create_model("rexnet_100", input_shape=(32, 32, 3), num_classes=4)
    ours.load_weights(tmp_path / "plain.weights.h5")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(ours(x).numpy(), plain(x).numpy())
